package pxe

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"netboot/internal/clock"
	"netboot/internal/event"
	"netboot/internal/testenv"
)

// tftpClientCase is one real TFTP client fetching one file.
type tftpClientCase struct {
	name    string
	tool    string
	blksize int
	argv    func(host string, port int, remote, local string, blksize int) []string
}

var tftpClientCases = []tftpClientCase{
	// tftp-hpa's client speaks plain RFC 1350: no options, so blksize 512
	// and no tsize; both modes (netascii is its default).
	{"tftp-hpa octet", "tftp", 512, func(h string, p int, r, l string, _ int) []string {
		return []string{"tftp", "-m", "binary", h, strconv.Itoa(p), "-c", "get", r, l}
	}},
	{"tftp-hpa netascii", "tftp", 512, func(h string, p int, r, l string, _ int) []string {
		return []string{"tftp", "-m", "ascii", h, strconv.Itoa(p), "-c", "get", r, l}
	}},
	{"atftp 512 tsize", "atftp", 512, atftpArgs},
	{"atftp 1468 tsize", "atftp", 1468, atftpArgs},
	{"curl 512", "curl", 512, curlArgs},
	{"curl 1468", "curl", 1468, curlArgs},
}

func atftpArgs(h string, p int, r, l string, b int) []string {
	return []string{"atftp", "--option", "blksize " + strconv.Itoa(b), "--option", "tsize 0",
		"-g", "-r", r, "-l", l, h, strconv.Itoa(p)}
}

func curlArgs(h string, p int, r, l string, b int) []string {
	// curl always asks for tsize.
	return []string{"curl", "-sS", "--fail", "--max-time", "60", "--tftp-blksize", strconv.Itoa(b),
		"-o", l, fmt.Sprintf("tftp://%s:%d/%s", h, p, r)}
}

// TestTFTPRealClients fetches files with tftp-hpa, atftp and curl and
// compares them byte for byte: a file with CR/LF bytes, one that is an
// exact multiple of the block size, and one that wraps the 16-bit block
// counter at blksize 512.
func TestTFTPRealClients(t *testing.T) {
	fx := startTFTP(t, TFTPConfig{}, clock.Real{})
	files := map[string][]byte{
		"small.bin": fx.writeArtifact(t, "small.bin", 100),
		"exact.bin": fx.writeArtifact(t, "exact.bin", 512*1468),
		"big.bin":   fx.writeArtifact(t, "dir/big.bin", 33*1024*1024+7),
	}
	names := map[string]string{"small.bin": "small.bin", "exact.bin": "exact.bin", "big.bin": "dir/big.bin"}
	n := 0
	for _, cc := range tftpClientCases {
		for _, f := range []string{"small.bin", "exact.bin", "big.bin"} {
			if f == "big.bin" && (cc.tool == "tftp") {
				continue // 65k+ blocks through tftp-hpa's client take long; atftp and curl cover the wrap
			}
			t.Run(cc.name+"/"+f, func(t *testing.T) {
				testenv.RequireTools(t, cc.tool)
				local := filepath.Join(t.TempDir(), "out")
				runClient(t, cc.argv("127.0.0.1", fx.addr.Port, names[f], local, cc.blksize))
				got, err := os.ReadFile(local)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, files[f]) {
					t.Fatalf("%s fetched %d bytes, want %d identical bytes", cc.name, len(got), len(files[f]))
				}
			})
			n++
		}
	}
	evs := fx.events.waitFor(t, n)
	for _, e := range evs {
		if e.Kind != event.FileFetched || e.Attr("outcome") != "ok" {
			t.Errorf("event %+v", e)
		}
	}
}

func runClient(t *testing.T, argv []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
}

// TestTFTPRealClientsRefused checks that real clients see errors for
// traversal attempts and writes, and get nothing written locally.
func TestTFTPRealClientsRefused(t *testing.T) {
	fx := startTFTP(t, TFTPConfig{}, clock.Real{})
	for _, cc := range tftpClientCases {
		if cc.tool == "tftp" && cc.name != "tftp-hpa octet" {
			continue
		}
		for _, name := range []string{"../secret", "/etc/passwd", "escape", "rpi4/up/secret", `..\secret`} {
			t.Run(cc.name+"/"+name, func(t *testing.T) {
				testenv.RequireTools(t, cc.tool)
				local := filepath.Join(t.TempDir(), "out")
				argv := cc.argv("127.0.0.1", fx.addr.Port, name, local, cc.blksize)
				out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
				got, _ := os.ReadFile(local)
				if bytes.Contains(got, []byte("secret")) || bytes.Contains(got, []byte("root:")) {
					t.Fatalf("%s got the file: %q", cc.name, got)
				}
				// tftp-hpa's client exits 0 even on errors; its output says it.
				if err == nil && !bytes.Contains(out, []byte("Error code")) {
					t.Fatalf("%s: no error reported: %s", cc.name, out)
				}
			})
		}
	}
	t.Run("atftp put", func(t *testing.T) {
		testenv.RequireTools(t, "atftp")
		local := filepath.Join(t.TempDir(), "upload")
		os.WriteFile(local, []byte("overwrite"), 0o644)
		out, err := exec.Command("atftp", "-p", "-l", local, "-r", "rpi4/start4.elf", "127.0.0.1", strconv.Itoa(fx.addr.Port)).CombinedOutput()
		if err == nil {
			t.Fatalf("write accepted: %s", out)
		}
		b, _ := os.ReadFile(filepath.Join(fx.cfg.Server.ArtifactRoot, "rpi4/start4.elf"))
		if bytes.Contains(b, []byte("overwrite")) {
			t.Fatal("artifact overwritten")
		}
	})
}

// TestTFTPPinClient uses github.com/pin/tftp/v3's client as one more
// independent implementation (it checks tsize against the bytes received).
func TestTFTPPinClient(t *testing.T) {
	fx := startTFTP(t, TFTPConfig{}, clock.Real{})
	want := fx.writeArtifact(t, "pin.bin", 1<<20+3)
	for _, b := range []int{512, 1468} {
		t.Run(strconv.Itoa(b), func(t *testing.T) {
			c, err := tftp.NewClient(fx.addr.String())
			if err != nil {
				t.Fatal(err)
			}
			c.SetBlockSize(b)
			c.RequestTSize(true)
			wt, err := c.Receive("pin.bin", "octet")
			if err != nil {
				t.Fatal(err)
			}
			if n, ok := wt.(tftp.IncomingTransfer).Size(); !ok || n != int64(len(want)) {
				t.Fatalf("tsize %d %v, want %d", n, ok, len(want))
			}
			var buf bytes.Buffer
			if _, err := wt.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("got %d bytes, want %d identical", buf.Len(), len(want))
			}
		})
	}
}
