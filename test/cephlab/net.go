package cephlab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"netboot/internal/testenv"
)

// Net is a private network for clusters whose clients must come from
// different IPs (a loopback client always connects from 127.0.0.1): a lab
// namespace with a bridge (.1, where Ceph binds), one namespace per
// simulated host (veth into the bridge), and a veth from the test's own
// namespace (.254) so the code under test reaches Ceph. Everything is
// created by the test, named with a unique "nbrbd" prefix, and deleted in
// t.Cleanup. Needs root and iproute2.
type Net struct {
	prefix string // e.g. nbrbd3f2a
	subnet string // e.g. 10.213.42
	LabNS  string

	mu    sync.Mutex
	hosts map[string]string // ip -> netns
}

// NewNet creates the lab namespace, its bridge and the root-side veth.
func NewNet(t testing.TB) *Net {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip")
	n := &Net{prefix: fmt.Sprintf("nbrbd%04x", rand.IntN(0x10000)), hosts: map[string]string{}}
	n.subnet = freeSubnet(t)
	n.LabNS = n.prefix + "-lab"
	t.Cleanup(n.cleanup)
	br, rootIf, peer := n.prefix+"b", n.prefix+"r", n.prefix+"p"
	n.must(t,
		[]string{"netns", "add", n.LabNS},
		[]string{"-n", n.LabNS, "link", "set", "lo", "up"},
		[]string{"-n", n.LabNS, "link", "add", br, "type", "bridge"},
		// A fixed MAC: otherwise the bridge takes the lowest port MAC and
		// changes it whenever a host joins, and the test namespace's ARP
		// entry for Ceph goes stale (traffic stalled 20-50 s).
		[]string{"-n", n.LabNS, "link", "set", br, "address", "02:6e:62:72:62:64"},
		[]string{"-n", n.LabNS, "addr", "add", n.subnet + ".1/24", "dev", br},
		[]string{"-n", n.LabNS, "link", "set", br, "up"},
		[]string{"link", "add", rootIf, "type", "veth", "peer", "name", peer, "netns", n.LabNS},
		[]string{"-n", n.LabNS, "link", "set", peer, "master", br, "up"},
		[]string{"addr", "add", n.subnet + ".254/24", "dev", rootIf},
		[]string{"link", "set", rootIf, "up"},
	)
	return n
}

// freeSubnet picks a 10.213.x.0/24 that no route of this machine uses.
func freeSubnet(t testing.TB) string {
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("cephlab net: ip route: %v", err)
	}
	for {
		s := fmt.Sprintf("10.213.%d", rand.IntN(250)+1)
		if !strings.Contains(string(out), s+".") {
			return s
		}
	}
}

func (n *Net) must(t testing.TB, cmds ...[]string) {
	t.Helper()
	for _, c := range cmds {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("cephlab net: ip %s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
}

// LabIP is the bridge address Ceph binds to.
func (n *Net) LabIP() string { return n.subnet + ".1" }

// ServerIP is the address the test's own namespace reaches Ceph from.
func (n *Net) ServerIP() string { return n.subnet + ".254" }

// Host creates (once) the namespace of a simulated host with address
// subnet.octet and returns its netns name and IP.
func (n *Net) Host(t testing.TB, octet int) (netns, ip string) {
	t.Helper()
	ip = fmt.Sprintf("%s.%d", n.subnet, octet)
	n.mu.Lock()
	defer n.mu.Unlock()
	if ns, ok := n.hosts[ip]; ok {
		return ns, ip
	}
	ns := fmt.Sprintf("%s-h%d", n.prefix, octet)
	hostIf, brIf := fmt.Sprintf("%sh%d", n.prefix, octet), fmt.Sprintf("%sx%d", n.prefix, octet)
	n.must(t,
		[]string{"netns", "add", ns},
		[]string{"-n", ns, "link", "set", "lo", "up"},
		[]string{"-n", ns, "link", "add", hostIf, "type", "veth", "peer", "name", brIf, "netns", n.LabNS},
		[]string{"-n", ns, "addr", "add", ip + "/24", "dev", hostIf},
		[]string{"-n", ns, "link", "set", hostIf, "up"},
		[]string{"-n", n.LabNS, "link", "set", brIf, "master", n.prefix + "b", "up"},
	)
	n.hosts[ip] = ns
	return ns, ip
}

func (n *Net) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ns := range n.hosts {
		_ = exec.CommandContext(ctx, "ip", "netns", "del", ns).Run()
	}
	_ = exec.CommandContext(ctx, "ip", "link", "del", n.prefix+"r").Run()
	_ = exec.CommandContext(ctx, "ip", "netns", "del", n.LabNS).Run()
}

// StartInNet starts a cluster inside n's lab namespace, bound to its
// bridge IP.
func StartInNet(t testing.TB, n *Net) *Cluster {
	t.Helper()
	return Start(t, Config{NetNS: n.LabNS, IP: n.LabIP()})
}
