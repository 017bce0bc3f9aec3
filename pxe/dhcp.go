package pxe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
)

// BootFiles are the artifact-tree paths of the iPXE binaries that PXE and
// UEFI firmware chainload (served over TFTP, or HTTP for UEFI HTTP boot).
type BootFiles struct {
	BIOS      string // default ipxe/undionly.kpxe
	UEFIX64   string // default ipxe/ipxe.efi
	UEFIARM64 string // default ipxe/ipxe-arm64.efi
	UEFIIA32  string // default ipxe/ipxe-ia32.efi
}

// DHCPConfig configures one DHCP socket: one interface, one port. Zero
// values mean the documented defaults.
type DHCPConfig struct {
	// Mode is config.DHCPProxy (default) or config.DHCPFull.
	Mode string
	// ProxyPort marks the proxyDHCP socket (port 4011): it answers
	// REQUESTs unicast with boot information only.
	ProxyPort bool
	// Interface names the interface the socket is bound to (logs, events).
	Interface string
	// ServerIP is this server's address on that interface: option 54,
	// siaddr, option 66. Required.
	ServerIP netip.Addr
	// HTTPURL is the base URL of the HTTP listener as hosts reach it.
	// Default http://<ServerIP>:8080.
	HTTPURL string
	// UnknownBoot answers unknown MACs with DefaultClass (proxy mode only).
	// Default false: unknown MACs are logged, counted and ignored.
	UnknownBoot  bool
	DefaultClass string
	// Full mode subnet settings.
	Netmask   netip.Addr
	Router    netip.Addr
	DNS       []netip.Addr
	LeaseTime time.Duration // default 1h
	// ClientPort is where broadcast and unicast replies go. Default 68.
	ClientPort int
	// RelayPort is where replies to relay agents (giaddr) go. Default 67.
	RelayPort int
	Files     BootFiles
	// RechainIPXE gives iPXE clients that we did not chainload ourselves
	// (a NIC's iPXE ROM) our iPXE binary first, once per boot: an iPXE
	// request from a MAC that got the binary in another DHCP exchange
	// (another xid) within RechainWindow gets its script. Default off.
	RechainIPXE bool
	// RechainWindow, default 2 minutes.
	RechainWindow time.Duration
}

func (c *DHCPConfig) setDefaults() {
	if c.Mode == "" {
		c.Mode = config.DHCPProxy
	}
	if c.HTTPURL == "" {
		c.HTTPURL = "http://" + c.ServerIP.String() + ":8080"
	}
	if c.LeaseTime == 0 {
		c.LeaseTime = time.Hour
	}
	if c.RechainWindow == 0 {
		c.RechainWindow = 2 * time.Minute
	}
	if c.ClientPort == 0 {
		c.ClientPort = dhcpv4.ClientPort
	}
	if c.RelayPort == 0 {
		c.RelayPort = dhcpv4.ServerPort
	}
	f := &c.Files
	for _, d := range []struct {
		p   *string
		def string
	}{{&f.BIOS, "ipxe/undionly.kpxe"}, {&f.UEFIX64, "ipxe/ipxe.efi"}, {&f.UEFIARM64, "ipxe/ipxe-arm64.efi"}, {&f.UEFIIA32, "ipxe/ipxe-ia32.efi"}} {
		if *d.p == "" {
			*d.p = d.def
		}
	}
}

// DHCPDeps are the DHCP server's collaborators.
type DHCPDeps struct {
	Log        *zap.Logger           // default zap.NewNop()
	Clock      clock.Clock           // default clock.Real{}
	Sink       event.Sink            // default event.Discard
	Registerer prometheus.Registerer // default: a private registry
	Inventory  *Inventory            // required
	Leases     *Leases               // default: NewLeases(Inventory)
}

// DHCPServer answers DHCP or proxyDHCP requests on one socket.
type DHCPServer struct {
	cfg     DHCPConfig
	conn    net.PacketConn
	log     *zap.Logger
	clock   clock.Clock
	sink    event.Sink
	inv     *Inventory
	leases  *Leases
	metrics *dhcpMetrics
	// rechained remembers, per MAC, the exchange in which an iPXE ROM got
	// our iPXE binary (RechainIPXE); only Serve's goroutine touches it.
	rechained map[string]ipxeRechain

	closeOnce sync.Once
	closed    chan struct{}
}

// NewDHCP returns a server that reads requests from conn (already bound,
// e.g. with server4.NewIPv4UDPConn(iface, :67), or 127.0.0.1:0 in tests).
func NewDHCP(cfg DHCPConfig, conn net.PacketConn, deps DHCPDeps) (*DHCPServer, error) {
	if !cfg.ServerIP.Is4() {
		return nil, fmt.Errorf("new dhcp server: server ip %v is not IPv4", cfg.ServerIP)
	}
	if cfg.Mode != "" && cfg.Mode != config.DHCPProxy && cfg.Mode != config.DHCPFull {
		return nil, fmt.Errorf("new dhcp server: mode %q is not proxy or full", cfg.Mode)
	}
	if deps.Inventory == nil {
		return nil, errors.New("new dhcp server: no inventory")
	}
	cfg.setDefaults()
	if deps.Log == nil {
		deps.Log = zap.NewNop()
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real{}
	}
	if deps.Sink == nil {
		deps.Sink = event.Discard
	}
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	if deps.Leases == nil {
		deps.Leases = NewLeases(deps.Inventory)
	}
	m, err := newDHCPMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new dhcp server: %w", err)
	}
	return &DHCPServer{
		cfg: cfg, conn: conn, log: deps.Log.With(zap.String("interface", cfg.Interface), zap.Bool("proxy_port", cfg.ProxyPort)),
		clock: deps.Clock, sink: deps.Sink, inv: deps.Inventory, leases: deps.Leases, metrics: m,
		closed: make(chan struct{}), rechained: map[string]ipxeRechain{},
	}, nil
}

// Serve answers requests until ctx is cancelled or Close is called; it
// returns nil then, and the read error otherwise.
func (s *DHCPServer) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	s.log.Info("dhcp: serving", zap.String("mode", s.cfg.Mode), zap.Stringer("addr", s.conn.LocalAddr()))
	buf := make([]byte, 65536)
	for {
		n, peer, err := s.conn.ReadFrom(buf)
		if err != nil {
			select {
			case <-s.closed:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dhcp: read: %w", err)
		}
		s.handle(buf[:n], peer)
	}
}

// Close stops Serve and closes the socket.
func (s *DHCPServer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		err = s.conn.Close()
	})
	return err
}

// handle parses, decides, answers and reports one datagram.
func (s *DHCPServer) handle(pkt []byte, peer net.Addr) {
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		s.metrics.packets.WithLabelValues("malformed", "", "ignored").Inc()
		s.log.Debug("dhcp: malformed packet ignored", zap.Stringer("peer", peer), zap.Int("bytes", len(pkt)), zap.Error(err))
		return
	}
	d := s.decide(req, s.cfg.ProxyPort)
	if d.reply != nil {
		if err := s.send(req, d.reply, peer); err != nil {
			d.result, d.reason = "failed", "send: "+err.Error()
		}
	}
	s.record(req, d)
}

// send writes reply to the destination RFC 2131 4.1 prescribes.
func (s *DHCPServer) send(req, reply *dhcpv4.DHCPv4, peer net.Addr) error {
	dst := s.destination(req, reply, peer)
	if _, err := s.conn.WriteTo(reply.ToBytes(), dst); err != nil {
		return fmt.Errorf("send %s to %s: %w", reply.MessageType(), dst, err)
	}
	return nil
}

// destination: the proxyDHCP port answers the sender; a relayed request
// goes back to the relay (giaddr); a NAK is broadcast; a client with an
// address (ciaddr) gets unicast; everything else is broadcast on the
// interface the socket is bound to (the client has no address yet).
func (s *DHCPServer) destination(req, reply *dhcpv4.DHCPv4, peer net.Addr) net.Addr {
	switch {
	case s.cfg.ProxyPort:
		return peer
	case !req.GatewayIPAddr.IsUnspecified() && req.GatewayIPAddr != nil:
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: s.cfg.RelayPort}
	case reply.MessageType() == dhcpv4.MessageTypeNak:
		return &net.UDPAddr{IP: net.IPv4bcast, Port: s.cfg.ClientPort}
	case !req.ClientIPAddr.IsUnspecified() && req.ClientIPAddr != nil:
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: s.cfg.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: s.cfg.ClientPort}
}

// record makes the dhcpDecision visible: metric, log line, event, lease map.
func (s *DHCPServer) record(req *dhcpv4.DHCPv4, d dhcpDecision) {
	mt := strings.ToLower(req.MessageType().String())
	s.metrics.packets.WithLabelValues(mt, string(d.client.Kind), d.result).Inc()
	if d.result != "replied" {
		s.metrics.ignored.WithLabelValues(reasonCode(d.reason)).Inc()
	}
	if d.known && d.ip.IsValid() && (d.result == "replied" || d.quiet) {
		s.leases.Record(d.ip, d.host)
	}
	fields := []zap.Field{
		zap.String("host", d.host), zap.String("mac", req.ClientHWAddr.String()), zap.String("msg", mt),
		zap.String("client", string(d.client.Kind)), zap.Uint16("arch", uint16(d.client.Arch)),
		zap.String("result", d.result), zap.String("reason", d.reason),
	}
	if d.quiet {
		s.log.Debug("dhcp: request not answered", fields...)
		return
	}
	if d.result == "replied" {
		fields = append(fields, zap.String("file", d.file), zap.String("ip", addrString(d.ip)))
		s.log.Info("dhcp: answered", fields...)
	} else {
		s.log.Info("dhcp: request refused", fields...)
	}
	s.sink.Emit(s.eventOf(req, d, mt))
}

func (s *DHCPServer) eventOf(req *dhcpv4.DHCPv4, d dhcpDecision, mt string) event.Event {
	ev := event.Event{
		Time: s.clock.Now(), Host: d.host, Kind: event.DHCPRequest, Message: d.reason,
		Attrs: map[string]string{
			"client": d.client.EventClient(), "kind": string(d.client.Kind), "mac": req.ClientHWAddr.String(),
			"ip": addrString(d.ip), "interface": s.cfg.Interface, "mode": s.mode(), "msg": mt,
			"arch": fmt.Sprint(uint16(d.client.Arch)), "result": d.result,
		},
	}
	if d.client.Serial != "" {
		ev.Attrs["serial"] = d.client.Serial
	}
	if d.reason == "rechain" {
		// The iPXE that asks here is the machine's firmware (its NIC ROM).
		ev.Attrs["client"] = "firmware"
	}
	switch {
	case d.result != "replied":
		// Only a refused or failed boot of a known host is a failed dhcp
		// stage; other ignores (unknown MACs, DECLINEs) name no stage, so
		// that they never open a boot attempt.
		ev.Kind = event.DHCPIgnored
		if d.known && (d.result == "failed" || strings.Contains(d.reason, "mismatch")) {
			ev.Stage, ev.Failed = event.StageDHCP, true
		}
	case d.boot:
		ev.Stage = event.StageDHCP
		ev.Attrs["file"] = d.file
		ev.Attrs["reply"] = strings.ToLower(d.reply.MessageType().String())
	default:
		ev.Attrs["reply"] = strings.ToLower(d.reply.MessageType().String())
	}
	return ev
}

func (s *DHCPServer) mode() string {
	if s.cfg.ProxyPort {
		return "proxy-4011"
	}
	return s.cfg.Mode
}

// reasonCode is the bounded metric label of a reason: its text up to ':'.
func reasonCode(reason string) string {
	if i := strings.IndexByte(reason, ':'); i >= 0 {
		reason = reason[:i]
	}
	return reason
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// dhcpMetrics are shared by every DHCP socket of one registry.
type dhcpMetrics struct {
	packets *prometheus.CounterVec
	ignored *prometheus.CounterVec
}

func newDHCPMetrics(reg prometheus.Registerer) (*dhcpMetrics, error) {
	packets, err := registerCounterVec(reg, prometheus.CounterOpts{
		Name: "netboot_dhcp_packets_total",
		Help: "DHCP requests received, by message type, client kind and result (replied, ignored, failed).",
	}, "type", "client", "result")
	if err != nil {
		return nil, err
	}
	ignored, err := registerCounterVec(reg, prometheus.CounterOpts{
		Name: "netboot_dhcp_ignored_total",
		Help: "DHCP requests not answered (or whose answer could not be sent), by reason.",
	}, "reason")
	if err != nil {
		return nil, err
	}
	return &dhcpMetrics{packets: packets, ignored: ignored}, nil
}

// registerCounterVec registers a counter vector, or returns the one
// already registered under the same name (several sockets, one registry).
func registerCounterVec(reg prometheus.Registerer, opts prometheus.CounterOpts, labels ...string) (*prometheus.CounterVec, error) {
	cv := prometheus.NewCounterVec(opts, labels)
	if err := reg.Register(cv); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("register metric %s: %w", opts.Name, err)
	}
	return cv, nil
}
