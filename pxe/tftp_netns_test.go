package pxe

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"netboot/internal/clock"
	"netboot/internal/testenv"
)

const netnsHelperEnv = "NBPXE_TFTP_NETNS_HELPER"

// TestTFTPNetnsHelper is not a test: it is the server process that
// TestTFTPWildcardAnswersFromDestination runs inside its network
// namespace (sockets belong to the namespace of the thread that creates
// them, so the whole server must live there). It serves on 0.0.0.0:6969
// until its stdin closes.
func TestTFTPNetnsHelper(t *testing.T) {
	if os.Getenv(netnsHelperEnv) != "1" {
		t.Skip("helper process of TestTFTPWildcardAnswersFromDestination")
	}
	_, arts := newArtTree(t)
	conn, err := net.ListenPacket("udp4", "0.0.0.0:6969")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewTFTP(TFTPConfig{}, conn, arts, nil, zaptest.NewLogger(t), clock.Real{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	fmt.Println("READY")
	if err := srv.Serve(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTFTPWildcardAnswersFromDestination: a server bound to 0.0.0.0 on a
// host with two addresses answers each client from the address the client
// sent its request to (IP_PKTINFO), as boot ROMs that check the server's
// address require. Runs in a network namespace of its own.
func TestTFTPWildcardAnswersFromDestination(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip")
	ns := fmt.Sprintf("nbpxe-tftp-%d", os.Getpid())
	mustRun(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
	for _, a := range []string{"10.199.0.1/32", "10.199.0.2/32"} {
		mustRun(t, "ip", "-n", ns, "addr", "add", a, "dev", "lo")
	}
	startNetnsHelper(t, ns)
	for _, dst := range []string{"10.199.0.1", "10.199.0.2"} {
		from, data, err := fetchInNetns(ns, dst+":6969", "rpi4/fixup4.dat")
		if err != nil {
			t.Fatalf("fetch from %s: %v", dst, err)
		}
		if from != dst || data != "fixup" {
			t.Fatalf("request to %s answered from %s with %q; want from %s with \"fixup\"", dst, from, data, dst)
		}
	}
}

func mustRun(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
}

// startNetnsHelper runs this test binary's TestTFTPNetnsHelper inside ns
// and waits until it serves; cleanup closes its stdin and, if needed,
// kills it by PID.
func startNetnsHelper(t *testing.T, ns string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestTFTPNetnsHelper$", "-test.v")
	cmd.Env = append(os.Environ(), netnsHelperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var lines []string
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- nil
				io.Copy(io.Discard, stdout)
				return
			}
			lines = append(lines, sc.Text())
		}
		ready <- fmt.Errorf("helper exited: %s", strings.Join(lines, "\n"))
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("helper did not start")
	}
}

// fetchInNetns fetches a small file from server inside ns, returning the
// address the answer came from. It creates its socket on a thread that
// joined ns; the thread is not returned to the scheduler.
func fetchInNetns(ns, server, file string) (from, data string, err error) {
	type result struct {
		from, data string
		err        error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		var r result
		r.from, r.data, r.err = fetchHere(ns, server, file)
		ch <- r
	}()
	r := <-ch
	return r.from, r.data, r.err
}

func fetchHere(ns, server, file string) (string, string, error) {
	fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", "", fmt.Errorf("open netns: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return "", "", fmt.Errorf("setns: %w", err)
	}
	srv, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		return "", "", err
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 199, 0, 1)})
	if err != nil {
		return "", "", fmt.Errorf("client socket: %w", err)
	}
	defer conn.Close()
	if _, err := conn.WriteToUDP(tftpRRQ(opRRQ, file, "octet"), srv); err != nil {
		return "", "", err
	}
	buf := make([]byte, 1024)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := conn.ReadFromUDP(buf)
	if err != nil {
		return "", "", fmt.Errorf("read: %w", err)
	}
	if n < 4 || buf[1] != opDATA {
		return from.IP.String(), "", fmt.Errorf("got %q, want DATA", buf[:n])
	}
	conn.WriteToUDP(tftpAck(1), from)
	return from.IP.String(), string(buf[4:n]), nil
}
