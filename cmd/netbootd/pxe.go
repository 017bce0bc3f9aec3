package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"go.uber.org/zap"

	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/pxe"
)

// setupPXE wires boot serving (pxe/): the artifact tree, TFTP, the HTTP
// boot handler (/boot/, /files/) and, only when the config names
// interfaces, DHCP or proxyDHCP bound to each of them.
func (d *daemon) setupPXE(ctx context.Context) error {
	inv := pxe.NewInventory(d.cfg)
	leases := pxe.NewLeases(inv)
	d.apiDeps.Leases = leaseNames{leases}
	arts, err := pxe.NewArtifacts(d.cfg, leases, pxe.ArtifactsConfig{Initrd: lateInitrd{d}})
	if err != nil {
		return err
	}
	d.closers = append(d.closers, arts.Close)
	if err := d.setupTFTP(arts); err != nil {
		return err
	}
	base := d.publicURL()
	hc := pxe.HTTPConfig{BaseURL: base}
	if d.cfg.DHCP.Unknown == "boot" {
		hc.DefaultClass = d.cfg.DHCP.DefaultClass
	}
	h, err := pxe.NewHTTP(hc, pxe.HTTPDeps{
		Log: d.log.Named("http-boot"), Clock: d.clock, Sink: d.emit(), Registerer: d.registry,
		Inventory: inv, Artifacts: arts, Hosts: leases, Initrd: lateInitrd{d},
	})
	if err != nil {
		return err
	}
	d.mux.Handle("GET /boot/", h)
	d.mux.Handle("GET /files/", h)
	return d.setupDHCP(inv, leases)
}

// emit forwards to d.events at call time, so that the tracker set up by
// setupBoot (or a later replacement) receives pxe's events.
func (d *daemon) emit() eventForwarder { return eventForwarder{d} }

func (d *daemon) setupTFTP(arts *pxe.Artifacts) error {
	if d.cfg.TFTP.Listen == "off" {
		d.log.Info("tftp: off (tftp.listen: off)")
		return nil
	}
	conn, err := net.ListenPacket("udp4", d.cfg.TFTP.Listen)
	if err != nil {
		return fmt.Errorf("listen tftp on %s: %w", d.cfg.TFTP.Listen, err)
	}
	srv, err := pxe.NewTFTP(pxe.TFTPConfig{
		BlockSizeMax: d.cfg.TFTP.BlockSizeMax, Timeout: d.cfg.TFTP.Timeout.D(), Retries: d.cfg.TFTP.Retries,
	}, conn, arts, d.emit(), d.log, d.clock, d.registry)
	if err != nil {
		conn.Close()
		return err
	}
	d.log.Info("tftp: listening", zap.Stringer("addr", conn.LocalAddr()))
	d.services = append(d.services, service{name: "tftp", serve: srv.Serve, close: srv.Close})
	return nil
}

// setupDHCP binds a DHCP socket (and in proxy mode a port-4011 socket) to
// each configured interface. With mode off or no interface, nothing runs.
func (d *daemon) setupDHCP(inv *pxe.Inventory, leases *pxe.Leases) error {
	dc := d.cfg.DHCP
	if dc.Mode == config.DHCPOff || len(dc.Interfaces) == 0 {
		d.log.Info("dhcp: off", zap.String("mode", dc.Mode), zap.Strings("interfaces", dc.Interfaces))
		return nil
	}
	for _, ifname := range dc.Interfaces {
		ip, err := interfaceAddr(ifname, d.cfg.Server.Address)
		if err != nil {
			return err
		}
		base := d.publicURLFor(ip)
		ports := []struct {
			port  int
			proxy bool
		}{{dc.ServerPort, false}}
		if dc.Mode == config.DHCPProxy {
			ports = append(ports, struct {
				port  int
				proxy bool
			}{dc.ProxyPort, true})
		}
		for _, p := range ports {
			if err := d.addDHCPSocket(ifname, ip, base, p.port, p.proxy, inv, leases); err != nil {
				return err
			}
		}
		if dc.RouterAdvert {
			if err := d.addRouterAdvertiser(ifname); err != nil {
				return err
			}
		}
	}
	return nil
}

// addRouterAdvertiser sends IPv6 router advertisements on ifname
// (dhcp.router_advert) so that iPXE does not wait for IPv6.
func (d *daemon) addRouterAdvertiser(ifname string) error {
	conn, err := pxe.ListenRA()
	if err != nil {
		return fmt.Errorf("router advertisements on %s: %w", ifname, err)
	}
	ra, err := pxe.NewRA(pxe.RAConfig{Interface: ifname}, conn, pxe.RADeps{Log: d.log.Named("ra"), Clock: d.clock, Registerer: d.registry})
	if err != nil {
		conn.Close()
		return err
	}
	d.services = append(d.services, service{name: "ra " + ifname, serve: ra.Serve, close: ra.Close})
	return nil
}

func (d *daemon) addDHCPSocket(ifname string, ip netip.Addr, base string, port int, proxy bool, inv *pxe.Inventory, leases *pxe.Leases) error {
	dc := d.cfg.DHCP
	conn, err := server4.NewIPv4UDPConn(ifname, &net.UDPAddr{Port: port})
	if err != nil {
		return fmt.Errorf("dhcp: bind %s port %d: %w", ifname, port, err)
	}
	cfg := pxe.DHCPConfig{
		Mode: dc.Mode, ProxyPort: proxy, Interface: ifname, ServerIP: ip, HTTPURL: base,
		UnknownBoot: dc.Unknown == "boot", DefaultClass: dc.DefaultClass, LeaseTime: dc.LeaseTime.D(), RechainIPXE: dc.IPXERechain,
		Netmask: parseAddr(dc.Netmask), Router: parseAddr(dc.Router),
	}
	for _, s := range dc.DNS {
		cfg.DNS = append(cfg.DNS, parseAddr(s))
	}
	srv, err := pxe.NewDHCP(cfg, conn, pxe.DHCPDeps{
		Log: d.log.Named("dhcp"), Clock: d.clock, Sink: d.emit(), Registerer: d.registry, Inventory: inv, Leases: leases,
	})
	if err != nil {
		conn.Close()
		return err
	}
	d.services = append(d.services, service{name: fmt.Sprintf("dhcp %s:%d", ifname, port), serve: srv.Serve, close: srv.Close})
	return nil
}

// interfaceAddr picks the IPv4 address DHCP announces on ifname: the
// configured server address if the interface has it, else its first IPv4.
func interfaceAddr(ifname, preferred string) (netip.Addr, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dhcp: interface %s: %w", ifname, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dhcp: addresses of %s: %w", ifname, err)
	}
	var first netip.Addr
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil || !pfx.Addr().Is4() {
			continue
		}
		if pfx.Addr().String() == preferred {
			return pfx.Addr(), nil
		}
		if !first.IsValid() {
			first = pfx.Addr()
		}
	}
	if !first.IsValid() {
		return netip.Addr{}, fmt.Errorf("dhcp: interface %s has no IPv4 address", ifname)
	}
	return first, nil
}

// publicURL is the HTTP base URL hosts use (http.public_url, or the server
// address and the listener's port).
func (d *daemon) publicURL() string {
	return d.publicURLFor(parseAddr(d.cfg.Server.Address))
}

func (d *daemon) publicURLFor(ip netip.Addr) string {
	if d.cfg.HTTP.PublicURL != "" {
		return strings.TrimRight(d.cfg.HTTP.PublicURL, "/")
	}
	_, port, err := net.SplitHostPort(d.cfg.HTTP.Listen)
	if err != nil {
		port = "8080"
	}
	return "http://" + net.JoinHostPort(ip.String(), port)
}

func parseAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

// leaseNames adapts pxe.Leases to the API's LeaseResolver.
type leaseNames struct{ l *pxe.Leases }

func (n leaseNames) HostByIP(ip netip.Addr) (string, bool) {
	h, ok := n.l.HostByIP(ip)
	if !ok {
		return "", false
	}
	return h.Name, true
}

// lateInitrd asks the initramfs part (set up after pxe) for per-host
// images, if it offers them.
type lateInitrd struct{ d *daemon }

func (l lateInitrd) InitrdPath(ctx context.Context, h *config.Host) (string, error) {
	p, ok := l.d.apiDeps.Initramfs.(pxe.InitrdProvider)
	if !ok {
		return "", errors.New("the initramfs service does not provide per-host images")
	}
	return p.InitrdPath(ctx, h)
}

// eventForwarder emits to the daemon's sink as it is when the event
// happens (boot.go may replace d.events after pxe is set up).
type eventForwarder struct{ d *daemon }

func (f eventForwarder) Emit(e event.Event) { f.d.events.Emit(e) }
