package pxetest

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"netboot/internal/config"
	"netboot/internal/testenv"
	"netboot/pxe"
	"netboot/test/harness"
)

// BenchmarkHTTPArtifacts serves one 8 MiB kernel to 8 concurrent clients
// (5 rounds, loopback) from our handler, Go's http.FileServer, busybox
// httpd and python3 http.server (what the QEMU research used), one after
// the other in the same run, and reports each throughput and our ratio to
// each peer. It checks every body's length.
func BenchmarkHTTPArtifacts(b *testing.B) {
	testenv.RequireTools(b, "busybox", "python3")
	dir := b.TempDir()
	root := filepath.Join(dir, "root")
	const size = 8 << 20
	data := make([]byte, size)
	rand.Read(data)
	if err := os.MkdirAll(filepath.Join(root, "x86"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "x86", "vmlinuz"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	servers := []struct{ name, url string }{
		{"netboot", serveOurs(b, dir) + "/files/x86/vmlinuz"},
		{"go-fileserver", serveFileServer(b, root) + "/x86/vmlinuz"},
		{"busybox-httpd", servePeer(b, root, "busybox", "httpd", "-f", "-h", root, "-p", "127.0.0.1:%d") + "/x86/vmlinuz"},
		{"python3-http.server", servePeer(b, root, "python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", root, "%d") + "/x86/vmlinuz"},
	}
	const clients, rounds = 8, 5
	for i := 0; i < b.N; i++ {
		mbps := map[string]float64{}
		for _, s := range servers {
			mbps[s.name] = fetchAll(b, s.url, size, clients, rounds)
			b.ReportMetric(mbps[s.name], s.name+"-MB/s")
		}
		for _, s := range servers[1:] {
			b.ReportMetric(mbps["netboot"]/mbps[s.name], "x-"+s.name)
			b.Logf("netboot %.0f MB/s = %.2f× %s (%.0f MB/s)", mbps["netboot"], mbps["netboot"]/mbps[s.name], s.name, mbps[s.name])
		}
	}
}

// fetchAll downloads url clients×rounds times and returns MB/s.
func fetchAll(b *testing.B, url string, size, clients, rounds int) float64 {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}}
	defer client.CloseIdleConnections()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				resp, err := client.Get(url)
				if err != nil {
					errs <- err
					return
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != int64(size) {
					errs <- fmt.Errorf("GET %s: %d bytes, %v", url, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return float64(size*clients*rounds) / time.Since(start).Seconds() / 1e6
}

func serveOurs(b *testing.B, dir string) string {
	cfg, err := config.Parse("bench.yaml", dir, []byte("server: {address: 127.0.0.1, artifact_root: root}\n"))
	if err != nil {
		b.Fatal(err)
	}
	arts, err := pxe.NewArtifacts(cfg, nil, pxe.ArtifactsConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { arts.Close() })
	h, err := pxe.NewHTTP(pxe.HTTPConfig{}, pxe.HTTPDeps{Inventory: pxe.NewInventory(cfg), Artifacts: arts})
	if err != nil {
		b.Fatal(err)
	}
	return serveHandler(b, h)
}

func serveFileServer(b *testing.B, root string) string {
	return serveHandler(b, http.FileServer(http.Dir(root)))
}

func serveHandler(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// servePeer starts a peer HTTP server on a free loopback port ("%d" in
// args) and waits until it answers.
func servePeer(b *testing.B, root, name string, args ...string) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	for i, a := range args {
		if a == "%d" || a == "127.0.0.1:%d" {
			args[i] = fmt.Sprintf(a, port)
		}
	}
	harness.StartProc(b, name, exec.Command(name, args...), filepath.Join(b.TempDir(), name+".log"))
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + "/x86/vmlinuz"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("%s did not serve on port %d", name, port)
	return ""
}
