//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"netboot/internal/api"
	"netboot/internal/boot"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store/sqlite"
	"netboot/internal/testenv"
	"netboot/rbd"
	"netboot/test/cephlab"
)

// TestAPIHandover is the whole chain over HTTP, with real addresses: a host
// (its own network namespace) maps its root and reports its client, is
// hard-reset, boots again and calls root/prepare from its own IP; another
// host calling for it is refused; the host's new client maps at once with
// the key the answer carried.
func TestAPIHandover(t *testing.T) {
	testenv.RequireTools(t, "curl")
	e := newEnv(t, callTimeout)
	img := newImage(t, e.lab)
	ns40, ip40 := e.net.Host(t, 40)
	ns41, ip41 := e.net.Host(t, 41)
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	inv := &config.Config{
		Ceph:    config.Ceph{Monitors: []string{e.lab.MonV1}, Timeout: config.Duration(callTimeout)},
		Classes: map[string]config.Class{"pi": {Arch: "arm64"}},
		Hosts: []config.Host{
			{Name: "h40", MAC: "02:00:00:00:00:40", IP: ip40, Class: "pi", Arch: "arm64"},
			{Name: "h41", MAC: "02:00:00:00:00:41", IP: ip41, Class: "pi", Arch: "arm64"},
		},
	}
	inv.Hosts[0].RBD.Pool, inv.Hosts[0].RBD.Image = img.Pool, img.Name
	log := zaptest.NewLogger(t)
	tr, err := boot.New(ctx, boot.Config{Inventory: inv, Store: db, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	ex := rbd.NewExecutor(e.cl, rbd.ExecutorConfig{CallTimeout: callTimeout}, log, clock.Real{}, nil)
	svc := rbd.NewService(rbd.ServiceConfig{Inventory: inv, Cluster: e.cl, Executor: ex, Clients: db, Boots: tr, Log: log, Clock: clock.Real{}})
	ln, err := net.Listen("tcp", e.net.ServerIP()+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: api.New(api.Config{Inventory: inv, Store: db, Deps: api.Deps{Boots: tr, Root: svc}, Log: log})}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	base := "http://" + ln.Addr().String() + "/api/v1/hosts/h40"

	dhcp := func() {
		if _, err := tr.Record(ctx, event.Event{Host: "h40", Kind: event.DHCPRequest, Stage: event.StageDHCP, Attrs: map[string]string{"client": "rpi"}}); err != nil {
			t.Fatal(err)
		}
	}
	// Boot 1 maps (the holder plays its kernel client) and reports.
	dhcp()
	first, err := e.lab.StartHolder(t, cephlab.HolderConfig{Pool: img.Pool, Image: img.Name, NetNS: ns40}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	client := "client" + strings.TrimPrefix(first.Client, "client.")
	if code, body := curlIn(t, ns40, base+"/root/mapped", fmt.Sprintf(`{"client_addr":%q,"client_id":%q,"device":"rbd0"}`, first.Addr, client)); code != 200 {
		t.Fatalf("mapped: %d %s", code, body)
	}
	first.Kill() // hard reset
	dhcp()       // boot 2

	if code, body := curlIn(t, ns41, base+"/root/prepare", ""); code != http.StatusForbidden {
		t.Fatalf("prepare for h40 from h41's address: %d %s, want 403", code, body)
	}
	if o := e.owner(t, img); o != first.Addr {
		t.Fatalf("lock owner %q after a refused call, want untouched %s", o, first.Addr)
	}
	code, body := curlIn(t, ns40, base+"/root/prepare", "")
	if code != http.StatusOK {
		t.Fatalf("prepare: %d %s", code, body)
	}
	var ans rbd.PrepareAnswer
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatal(err)
	}
	if len(ans.Result.Steps) != 2 || ans.Map.User != "netboot-h40" || ans.Map.Key == "" || ans.Map.Monitors[0] != e.lab.MonV1 {
		t.Fatalf("answer %s", body)
	}
	conf, err := e.lab.ClientConf("client."+ans.Map.User, ans.Map.Key)
	if err != nil {
		t.Fatal(err)
	}
	// 10 s: far below the ~30 s the stale lock costs unaided.
	next, err := e.lab.StartHolder(t, cephlab.HolderConfig{Pool: img.Pool, Image: img.Name, NetNS: ns40, Conf: conf, User: ans.Map.User}, 10*time.Second)
	if err != nil {
		t.Fatalf("the host's new client with its own key: %v", err)
	}
	if o := e.owner(t, img); o != next.Addr {
		t.Fatalf("owner %q, want the new client %s", o, next.Addr)
	}
	evs, err := db.HostEvents(ctx, "h40", time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[event.Kind]int{}
	for _, ev := range evs {
		kinds[ev.Kind]++
	}
	if kinds[event.RootMapped] != 1 || kinds[event.RootPrepared] != 1 {
		t.Fatalf("timeline kinds %v, want one rbd.mapped and one rbd.prepared", kinds)
	}
}

// curlIn POSTs body to url from inside netns and returns status and body.
func curlIn(t *testing.T, netns, url, body string) (int, string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", netns, "curl", "-s", "-m", "60", "-X", "POST",
		"-H", "Content-Type: application/json", "--data", body, "-w", "\n%{http_code}", url).Output()
	if err != nil {
		t.Fatalf("curl in %s: %v", netns, err)
	}
	s := strings.TrimSpace(string(out))
	i := strings.LastIndexByte(s, '\n')
	var code int
	fmt.Sscanf(s[i+1:], "%d", &code)
	return code, s[:max(i, 0)]
}
