package pxe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/net/ipv6"

	"netboot/internal/clock"
)

// RAConfig configures IPv6 router advertisements on one DHCP interface.
// They exist only so that iPXE, which waits up to ~20 s for IPv6
// autoconfiguration before it uses its DHCPv4 answer, moves on at once:
// the advertisement carries a ULA prefix for SLAAC and a router lifetime
// of 0 (netbootd is not a router; hosts never route through it).
type RAConfig struct {
	// Interface is the link to advertise on. Required.
	Interface string
	// Prefix is the /64 announced for autoconfiguration. Default: the
	// interface's own ULA /64, else fd6e:6574:626f::/64.
	Prefix netip.Prefix
	// Interval between unsolicited advertisements. Default 30s. Router
	// solicitations are answered at once.
	Interval time.Duration
}

// RADeps are the advertiser's collaborators.
type RADeps struct {
	Log        *zap.Logger           // default zap.NewNop()
	Clock      clock.Clock           // default clock.Real{}
	Registerer prometheus.Registerer // default: a private registry
}

// RouterAdvertiser sends ICMPv6 router advertisements on one interface.
type RouterAdvertiser struct {
	cfg   RAConfig
	ifi   *net.Interface
	conn  *ipv6.PacketConn
	raw   net.PacketConn
	log   *zap.Logger
	clock clock.Clock
	sent  *prometheus.CounterVec

	mu        sync.Mutex
	timer     clock.Timer
	closeOnce sync.Once
	closed    chan struct{}
}

// defaultULA is the prefix used when the interface has no ULA of its own.
var defaultULA = netip.MustParsePrefix("fd6e:6574:626f::/64")

// ListenRA opens the raw ICMPv6 socket a RouterAdvertiser needs (root or
// CAP_NET_RAW).
func ListenRA() (net.PacketConn, error) {
	c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("listen icmpv6: %w", err)
	}
	return c, nil
}

// NewRA returns an advertiser writing to conn, a raw ICMPv6 socket from
// ListenRA. Call both in the interface's network namespace (the interface
// is looked up by name); Serve may then run anywhere.
func NewRA(cfg RAConfig, conn net.PacketConn, deps RADeps) (*RouterAdvertiser, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("new router advertiser: %w", err)
	}
	if !cfg.Prefix.IsValid() {
		cfg.Prefix = interfaceULA(ifi)
	}
	if cfg.Interval == 0 {
		cfg.Interval = 30 * time.Second
	}
	if deps.Log == nil {
		deps.Log = zap.NewNop()
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real{}
	}
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	sent, err := registerCounterVec(deps.Registerer, prometheus.CounterOpts{
		Name: "netboot_ipv6_router_adverts_total",
		Help: "IPv6 router advertisements sent (so that iPXE skips its IPv6 wait), by trigger and result.",
	}, "trigger", "result")
	if err != nil {
		return nil, fmt.Errorf("new router advertiser: %w", err)
	}
	nc, ok := conn.(interface {
		net.Conn
		net.PacketConn
	})
	if !ok {
		return nil, fmt.Errorf("new router advertiser: %T is not a raw IP socket (use ListenRA)", conn)
	}
	pc := ipv6.NewPacketConn(nc)
	if err := setupRAConn(pc, ifi); err != nil {
		return nil, fmt.Errorf("new router advertiser on %s: %w", ifi.Name, err)
	}
	return &RouterAdvertiser{cfg: cfg, ifi: ifi, conn: pc, raw: conn, log: deps.Log.With(zap.String("interface", ifi.Name)),
		clock: deps.Clock, sent: sent, closed: make(chan struct{})}, nil
}

func setupRAConn(pc *ipv6.PacketConn, ifi *net.Interface) error {
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	steps := []func() error{
		func() error { return pc.SetICMPFilter(&f) },
		func() error { return pc.SetMulticastHopLimit(255) },
		func() error { return pc.SetHopLimit(255) },
		func() error { return pc.SetMulticastInterface(ifi) },
		func() error { return pc.SetControlMessage(ipv6.FlagInterface, true) },
		func() error { return pc.JoinGroup(ifi, &net.IPAddr{IP: net.ParseIP("ff02::2")}) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// interfaceULA returns the /64 of the interface's first ULA address.
func interfaceULA(ifi *net.Interface) netip.Prefix {
	addrs, _ := ifi.Addrs()
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err == nil && p.Addr().Is6() && netip.MustParsePrefix("fc00::/7").Contains(p.Addr()) {
			pp, _ := p.Addr().Prefix(64)
			return pp
		}
	}
	return defaultULA
}

// Serve advertises now and every Interval, and answers solicitations on
// the interface, until ctx is cancelled or Close is called (then nil).
func (r *RouterAdvertiser) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = r.Close() })
	defer stop()
	r.log.Info("ra: advertising", zap.Stringer("prefix", r.cfg.Prefix), zap.Duration("interval", r.cfg.Interval))
	r.tick()
	buf := make([]byte, 1500)
	for {
		n, cm, _, err := r.conn.ReadFrom(buf)
		if err != nil {
			select {
			case <-r.closed:
				return nil
			default:
			}
			return fmt.Errorf("ra: read: %w", err)
		}
		if n > 0 && buf[0] == byte(ipv6.ICMPTypeRouterSolicitation) && (cm == nil || cm.IfIndex == r.ifi.Index) {
			r.advertise("solicited")
		}
	}
}

// raRetry is how soon a failed unsolicited advertisement is tried again
// (the first ones fail until the link has its link-local address).
const raRetry = 2 * time.Second

// tick sends an unsolicited advertisement and schedules the next.
func (r *RouterAdvertiser) tick() {
	select {
	case <-r.closed:
		return
	default:
	}
	next := r.cfg.Interval
	if !r.advertise("periodic") {
		next = min(next, raRetry)
	}
	r.mu.Lock()
	r.timer = r.clock.AfterFunc(next, r.tick)
	r.mu.Unlock()
}

// advertise sends one advertisement and reports whether it went out.
func (r *RouterAdvertiser) advertise(trigger string) bool {
	// A numeric zone: the name may only resolve in another namespace.
	dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: strconv.Itoa(r.ifi.Index)}
	_, err := r.conn.WriteTo(RouterAdvertisement(r.cfg.Prefix, r.ifi.HardwareAddr), &ipv6.ControlMessage{HopLimit: 255, IfIndex: r.ifi.Index}, dst)
	if err != nil {
		r.sent.WithLabelValues(trigger, "failed").Inc()
		r.log.Warn("ra: send failed", zap.String("trigger", trigger), zap.Error(err))
		return false
	}
	r.sent.WithLabelValues(trigger, "sent").Inc()
	r.log.Debug("ra: sent", zap.String("trigger", trigger))
	return true
}

// Close stops Serve and closes the socket.
func (r *RouterAdvertiser) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.closed)
		r.mu.Lock()
		if r.timer != nil {
			r.timer.Stop()
		}
		r.mu.Unlock()
		err = r.raw.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	})
	return err
}

// RouterAdvertisement builds the ICMPv6 message (RFC 4861 4.2): hop limit
// 64, no flags, router lifetime 0 (not a default router), a prefix
// information option (on-link, autonomous; valid 1 h, preferred 30 min)
// and the source link-layer address. The kernel fills in the checksum.
func RouterAdvertisement(prefix netip.Prefix, mac net.HardwareAddr) []byte {
	b := []byte{134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	pio := make([]byte, 32)
	pio[0], pio[1], pio[2], pio[3] = 3, 4, byte(prefix.Bits()), 0xc0
	binary.BigEndian.PutUint32(pio[4:], 3600)
	binary.BigEndian.PutUint32(pio[8:], 1800)
	a := prefix.Masked().Addr().As16()
	copy(pio[16:], a[:])
	b = append(b, pio...)
	if len(mac) == 6 {
		b = append(b, 1, 1)
		b = append(b, mac...)
	}
	return b
}
