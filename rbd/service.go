package rbd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store"
)

// Boots is what the service needs from the boot tracker (internal/boot).
type Boots interface {
	Current(host string) (bootID int64, ok bool)
	InProgress(host string) bool
	Record(ctx context.Context, ev event.Event) (event.Event, error)
}

// LeaseResolver maps an address to the host holding it (DHCP leases).
type LeaseResolver interface {
	HostByIP(ip netip.Addr) (host string, ok bool)
}

// ServiceConfig wires a Service.
type ServiceConfig struct {
	Inventory *config.Config
	Cluster   Cluster
	Executor  *Executor
	Clients   store.RBDClients
	// Events (optional) lets Status show the host's recent hand-over events.
	Events store.Events
	Boots  Boots
	Leases LeaseResolver // optional
	Log    *zap.Logger
	Clock  clock.Clock
}

// Service is the root hand-over as the API uses it: it resolves the host,
// asks the tracker whether it is booting, runs the executor, hands out the
// host's own key and records what happened on the boot timeline.
type Service struct {
	cfg ServiceConfig
}

// NewService returns the service.
func NewService(cfg ServiceConfig) *Service { return &Service{cfg: cfg} }

// Errors the API maps to status codes.
var (
	ErrUnknownHost = errors.New("unknown host")
	ErrNoImage     = errors.New("host has no rbd pool/image configured")
	ErrBadReport   = errors.New("bad mapped report")
)

// RefusedError is a prepare refused by the rules; the API answers 409
// (403 for ReasonWrongCaller).
type RefusedError struct{ Refusal Refusal }

func (e *RefusedError) Error() string {
	return fmt.Sprintf("root prepare refused (%s): %s", e.Refusal.Reason, e.Refusal.Message)
}

// MapInfo is what nbinit needs to map the root image with the kernel
// client: "<monitors> name=<user>,secret=<key>[,<options>] <pool> <image>"
// written to /sys/bus/rbd/add_single_major.
type MapInfo struct {
	Monitors []string `json:"monitors"`
	Pool     string   `json:"pool"`
	Image    string   `json:"image"`
	// User is the host's own cephx user without "client."; Key its secret.
	User    string   `json:"user"`
	Key     string   `json:"key"`
	Options []string `json:"options"`
}

// PrepareAnswer is root/prepare's answer.
type PrepareAnswer struct {
	Host   string  `json:"host"`
	BootID int64   `json:"boot_id"`
	Map    MapInfo `json:"map"`
	Result Result  `json:"result"`
}

type hostInfo struct {
	host *config.Host
	img  Image
	ip   netip.Addr
}

func (s *Service) resolve(name string, caller netip.Addr) (hostInfo, error) {
	h, ok := s.cfg.Inventory.HostByName(name)
	if !ok {
		return hostInfo{}, fmt.Errorf("%w: %s", ErrUnknownHost, name)
	}
	if h.RBD.Pool == "" || h.RBD.Image == "" {
		return hostInfo{}, fmt.Errorf("%w: %s", ErrNoImage, name)
	}
	hi := hostInfo{host: h, img: Image{Pool: h.RBD.Pool, Name: h.RBD.Image}}
	if a, ok := h.Addr(); ok {
		hi.ip = a
	} else if s.cfg.Leases != nil && caller.IsValid() {
		if owner, ok := s.cfg.Leases.HostByIP(caller.Unmap()); ok && owner == name {
			hi.ip = caller.Unmap()
		}
	}
	return hi, nil
}

func (s *Service) request(ctx context.Context, hi hostInfo, caller netip.Addr, dryRun bool) Request {
	boot, _ := s.cfg.Boots.Current(hi.host.Name)
	req := Request{Host: hi.host.Name, Image: hi.img, HostIP: hi.ip, CallerIP: caller.Unmap(),
		Booting: s.cfg.Boots.InProgress(hi.host.Name), BootID: boot, Policy: PolicyFromConfig(s.cfg.Inventory.RBD), DryRun: dryRun}
	if s.cfg.Clients != nil {
		if c, err := s.cfg.Clients.LastRBDClient(ctx, hi.host.Name, hi.img.Pool, hi.img.Name); err == nil {
			req.Recorded, _ = ParseAddr(c.ClientAddr)
		} else if !errors.Is(err, store.ErrNotFound) {
			s.cfg.Log.Warn("rbd: reading the recorded client failed; treating as none", zap.String("host", hi.host.Name), zap.Error(err))
		}
	}
	return req
}

// Prepare runs the hand-over for host, called from caller (the request's
// source address), and returns what the kernel needs to map the image.
func (s *Service) Prepare(ctx context.Context, host string, caller netip.Addr) (PrepareAnswer, error) {
	hi, err := s.resolve(host, caller)
	if err != nil {
		return PrepareAnswer{}, err
	}
	req := s.request(ctx, hi, caller, false)
	res, err := s.cfg.Executor.Prepare(ctx, req)
	ans := PrepareAnswer{Host: host, BootID: req.BootID, Result: res}
	switch {
	case errors.Is(err, ErrNotFound):
		s.emit(ctx, host, event.RootRefused, true, fmt.Sprintf("root image %s does not exist: %v", hi.img, err), res,
			map[string]string{"reason": "image-missing"})
		return ans, err
	case err != nil:
		s.emit(ctx, host, event.RootRefused, false, "root prepare failed, retry: "+err.Error(), res,
			map[string]string{"reason": string(ReasonCephError), "retryable": "true"})
		return ans, err
	case res.Plan.Refused():
		r := res.Plan.Refusal
		attrs := map[string]string{"reason": string(r.Reason)}
		if !r.Holder.IsZero() {
			attrs["holder"], attrs["holder_client"] = r.Holder.String(), r.HolderClient
		}
		// Refusals that concern a boot fail it; a prepare that was never
		// allowed (not booting, wrong caller) is logged and counted but
		// does not touch the timeline of a boot it does not belong to.
		if r.Reason != ReasonNotBooting && r.Reason != ReasonWrongCaller {
			s.emit(ctx, host, event.RootRefused, true, r.Message, res, attrs)
		}
		return ans, &RefusedError{Refusal: *r}
	}
	ans.Map, err = s.mapInfo(ctx, hi)
	if err != nil {
		s.emit(ctx, host, event.RootRefused, false, "root prepared but the host key failed, retry: "+err.Error(), res,
			map[string]string{"reason": string(ReasonCephError), "retryable": "true"})
		return ans, fmt.Errorf("%w %s: host key: %w", ErrPrepare, host, err)
	}
	s.emit(ctx, host, event.RootPrepared, false, res.Plan.Summary(), res, nil)
	return ans, nil
}

// mapInfo creates or fetches the host's own cephx user, limited to its
// image, with the admin connection; the admin key never leaves the server.
func (s *Service) mapInfo(ctx context.Context, hi hostInfo) (MapInfo, error) {
	timeout := s.cfg.Inventory.Ceph.Timeout.D()
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	c, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id, err := s.cfg.Cluster.ImageID(c, hi.img)
	if err != nil {
		return MapInfo{}, err
	}
	caps, err := HostCaps(hi.img, id)
	if err != nil {
		return MapInfo{}, err
	}
	entity := HostEntity(hi.host.Name)
	key, err := s.cfg.Cluster.HostKey(c, entity, caps)
	if err != nil {
		return MapInfo{}, err
	}
	return MapInfo{Monitors: s.cfg.Inventory.Ceph.Monitors, Pool: hi.img.Pool, Image: hi.img.Name,
		User: strings.TrimPrefix(entity, "client."), Key: key, Options: []string{}}, nil
}

func (s *Service) emit(ctx context.Context, host string, kind event.Kind, failed bool, msg string, res Result, extra map[string]string) {
	attrs := map[string]string{
		"image":       res.Plan.Image.String(),
		"plan":        res.Plan.Summary(),
		"duration_ms": strconv.FormatInt(res.Duration.Milliseconds(), 10),
	}
	if res.Reused {
		attrs["reused"] = "true"
	}
	if len(res.Plan.Notes) > 0 {
		attrs["notes"] = strings.Join(res.Plan.Notes, "; ")
	}
	for i, st := range res.Steps {
		v := st.Action.String() + ": ok, " + st.Detail
		if !st.OK {
			v = st.Action.String() + ": FAILED: " + st.Error
		}
		attrs[fmt.Sprintf("step%d", i+1)] = v
	}
	for k, v := range extra {
		attrs[k] = v
	}
	ev := event.Event{Time: s.cfg.Clock.Now(), Host: host, Kind: kind, Stage: event.StageRootPrepare, Failed: failed, Message: msg, Attrs: attrs}
	if _, err := s.cfg.Boots.Record(ctx, ev); err != nil {
		s.cfg.Log.Error("rbd: recording the event failed", zap.String("host", host), zap.String("kind", string(kind)), zap.Error(err))
	}
}

// MappedReport is what nbinit reads from /sys/bus/rbd/devices/N/.
type MappedReport struct {
	ClientAddr string `json:"client_addr"`
	ClientID   string `json:"client_id"`
	Device     string `json:"device,omitempty"`
}

// Mapped records the client a host's boot mapped its root with: the exact
// owner the next boot may hand over.
func (s *Service) Mapped(ctx context.Context, host string, caller netip.Addr, rep MappedReport) (store.RBDClient, error) {
	hi, err := s.resolve(host, caller)
	if err != nil {
		return store.RBDClient{}, err
	}
	a, err := ParseAddr(rep.ClientAddr)
	if err != nil {
		return store.RBDClient{}, fmt.Errorf("%w: client_addr: %w", ErrBadReport, err)
	}
	if !hi.ip.IsValid() || a.IP != hi.ip.Unmap() {
		return store.RBDClient{}, fmt.Errorf("%w: client_addr %s is not on host %s's IP %s", ErrBadReport, a, host, hi.ip)
	}
	if rep.ClientID != "" && !strings.HasPrefix(rep.ClientID, "client") {
		return store.RBDClient{}, fmt.Errorf("%w: client_id %q is not client<N>", ErrBadReport, rep.ClientID)
	}
	boot, _ := s.cfg.Boots.Current(host)
	c := store.RBDClient{Host: host, BootID: boot, Time: s.cfg.Clock.Now(), Pool: hi.img.Pool, Image: hi.img.Name,
		ClientAddr: a.String(), ClientID: rep.ClientID}
	if err := s.cfg.Clients.RecordRBDClient(ctx, c); err != nil {
		return c, err
	}
	s.cfg.Executor.Forget(hi.img)
	s.cfg.Log.Info("rbd: host mapped its root", zap.String("host", host), zap.String("client_addr", c.ClientAddr), zap.String("client_id", c.ClientID))
	ev := event.Event{Time: c.Time, Host: host, Kind: event.RootMapped, Stage: event.StageRootMap,
		Message: fmt.Sprintf("mapped %s as %s %s", hi.img, c.ClientID, c.ClientAddr),
		Attrs:   map[string]string{"client_addr": c.ClientAddr, "client_id": c.ClientID, "device": rep.Device, "image": hi.img.String()}}
	if _, err := s.cfg.Boots.Record(ctx, ev); err != nil {
		s.cfg.Log.Error("rbd: recording the mapped event failed", zap.String("host", host), zap.Error(err))
	}
	return c, nil
}

// Status is `netbootctl rbd status`: the image's lock, watchers, the
// blocklist entries that concern the host and the recorded client.
type Status struct {
	Host      string           `json:"host"`
	Image     Image            `json:"image"`
	HostIP    string           `json:"host_ip"`
	Booting   bool             `json:"booting"`
	BootID    int64            `json:"boot_id,omitempty"`
	Recorded  *store.RBDClient `json:"recorded,omitempty"`
	Observed  Observation      `json:"observed"`
	Blocklist []BlocklistEntry `json:"blocklist"` // entries on or covering the host's IP
	// Recent are the host's last hand-over events (prepared, refused,
	// mapped), newest last.
	Recent []event.Event `json:"recent,omitempty"`
}

// recentEvents is how many hand-over events Status shows.
const recentEvents = 10

func (s *Service) recent(ctx context.Context, host string) []event.Event {
	if s.cfg.Events == nil {
		return nil
	}
	since := s.cfg.Clock.Now().Add(-30 * 24 * time.Hour)
	evs, err := s.cfg.Events.HostEvents(ctx, host, since, 0)
	if err != nil {
		s.cfg.Log.Warn("rbd: reading recent events failed", zap.String("host", host), zap.Error(err))
		return nil
	}
	var out []event.Event
	for _, e := range evs {
		if e.Kind == event.RootPrepared || e.Kind == event.RootRefused || e.Kind == event.RootMapped {
			out = append(out, e)
		}
	}
	if len(out) > recentEvents {
		out = out[len(out)-recentEvents:]
	}
	return out
}

// Status reads the host's image state without changing anything.
func (s *Service) Status(ctx context.Context, host string) (Status, error) {
	hi, err := s.resolve(host, netip.Addr{})
	if err != nil {
		return Status{}, err
	}
	st := Status{Host: host, Image: hi.img, Booting: s.cfg.Boots.InProgress(host), Blocklist: []BlocklistEntry{}}
	if hi.ip.IsValid() {
		st.HostIP = hi.ip.String()
	}
	st.BootID, _ = s.cfg.Boots.Current(host)
	if c, err := s.cfg.Clients.LastRBDClient(ctx, host, hi.img.Pool, hi.img.Name); err == nil {
		st.Recorded = &c
	}
	st.Recent = s.recent(ctx, host)
	st.Observed, err = s.cfg.Executor.Observe(ctx, hi.img)
	if err != nil {
		return st, fmt.Errorf("rbd status of %s: %w", host, err)
	}
	for _, e := range st.Observed.Blocklist {
		if hi.ip.IsValid() && (e.Covers(hi.ip) || (!e.IsRange() && e.Addr.IP == hi.ip.Unmap())) {
			st.Blocklist = append(st.Blocklist, e)
		}
	}
	return st, nil
}

// PlanView is `netbootctl rbd plan`: what a prepare would do now (from
// the host, with the boot state as it is) and what it would do if the host
// were booting now.
type PlanView struct {
	Host      string `json:"host"`
	Booting   bool   `json:"booting"`
	Now       Result `json:"now"`
	IfBooting Result `json:"if_booting"`
}

// Plan is the dry run: it observes and decides, changing nothing.
func (s *Service) Plan(ctx context.Context, host string) (PlanView, error) {
	hi, err := s.resolve(host, netip.Addr{})
	if err != nil {
		return PlanView{}, err
	}
	req := s.request(ctx, hi, hi.ip, true)
	booting := req.Booting
	now, err := s.cfg.Executor.Prepare(ctx, req)
	if err != nil {
		return PlanView{}, err
	}
	req.Booting = true
	ifBooting := now
	ifBooting.Plan = Decide(req.input(now.Observed))
	return PlanView{Host: host, Booting: booting, Now: now, IfBooting: ifBooting}, nil
}
