package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
)

// realNetwork is Network on the running kernel (netlink + u-root dhclient).
type realNetwork struct {
	// ARPTable is /proc/net/arp.
	ARPTable string
}

func (realNetwork) LinkUp(ifname string) error {
	_, err := dhclient.IfUp(ifname, 2*time.Second)
	return err
}

func (realNetwork) DHCP(ctx context.Context, ifname string) (Lease, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return Lease{}, fmt.Errorf("find link %s: %w", ifname, err)
	}
	log.SetOutput(io.Discard) // dhclient logs through the std logger
	cfg := dhclient.Config{Timeout: 4 * time.Second, Retries: 4, V4ClientIdentifier: true}
	var last error = errors.New("no answer")
	for r := range dhclient.SendRequests(ctx, []netlink.Link{link}, true, false, cfg, 10*time.Second) {
		if r.Err != nil {
			last = r.Err
			continue
		}
		if err := r.Lease.Configure(); err != nil {
			return Lease{}, fmt.Errorf("apply lease: %w", err)
		}
		return leaseFrom(ifname, r.Lease), nil
	}
	return Lease{}, last
}

func leaseFrom(ifname string, l dhclient.Lease) Lease {
	out := Lease{Interface: ifname}
	m, _ := l.Message()
	if m == nil {
		return out
	}
	mask := m.SubnetMask()
	if mask == nil {
		mask = m.YourIPAddr.DefaultMask()
	}
	out.IP = (&net.IPNet{IP: m.YourIPAddr, Mask: mask}).String()
	if r := m.Router(); len(r) > 0 {
		out.Router = r[0].String()
	}
	if s := m.ServerIdentifier(); s != nil {
		out.ServerID = s.String()
	}
	out.Hostname = m.HostName()
	return out
}

func (n realNetwork) NeighborMAC(ctx context.Context, ifname, ip string) (string, error) {
	// Any datagram makes the kernel ARP for the address; port 9 is discard.
	if c, err := net.Dial("udp4", net.JoinHostPort(ip, "9")); err == nil {
		_, _ = c.Write([]byte{0})
		c.Close()
	}
	for {
		if mac, ok := arpLookup(n.ARPTable, ifname, ip); ok {
			return mac, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no ARP answer from %s: %w", ip, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// arpLookup finds a complete entry in /proc/net/arp:
// "IP address  HW type  Flags  HW address  Mask  Device".
func arpLookup(table, ifname, ip string) (string, bool) {
	f, err := os.Open(table)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 6 && fs[0] == ip && fs[5] == ifname && fs[2] != "0x0" && fs[3] != "00:00:00:00:00:00" {
			return fs[3], true
		}
	}
	return "", false
}
