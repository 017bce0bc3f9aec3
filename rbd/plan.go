package rbd

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"netboot/internal/config"
)

// Policy is the operator's choice for the cases the rules leave open
// (config section rbd).
type Policy struct {
	// BreakUnrecordedSameIP breaks a lock whose owner has the host's IP but
	// not the address its previous boot recorded (rule 3). Default false
	// ("refuse"): the address proves nothing by itself — a reused or
	// shared IP, a diagnostics client run on the host before the reboot, or
	// a boot whose "mapped" report was lost all look the same — and the
	// product promise is never to break a lock we cannot prove dead. With
	// refuse, the boot fails at once with a report naming the holder;
	// operators whose hosts always report "mapped" lose nothing by it.
	BreakUnrecordedSameIP bool `json:"break_unrecorded_same_ip"`
	// RemoveRangeBlocklist removes whole-IP ("ip:0/0") and CIDR entries
	// covering the host (rule 5). When false, such an entry refuses the
	// prepare instead (the new client could not connect anyway).
	RemoveRangeBlocklist bool `json:"remove_range_blocklist"`
	// BlocklistExpiry is how long the dead client stays blocklisted.
	BlocklistExpiry time.Duration `json:"blocklist_expiry"`
}

// PolicyFromConfig converts the config section (defaults already filled).
func PolicyFromConfig(c config.RBD) Policy {
	p := Policy{
		BreakUnrecordedSameIP: c.UnrecordedSameIP == "break",
		RemoveRangeBlocklist:  c.RemoveRangeBlocklist == nil || *c.RemoveRangeBlocklist,
		BlocklistExpiry:       c.BlocklistExpiry.D(),
	}
	if p.BlocklistExpiry == 0 {
		p.BlocklistExpiry = time.Hour
	}
	return p
}

// Observation is what Ceph showed right before planning.
type Observation struct {
	Owners    []LockOwner      `json:"owners"`
	Lockers   Lockers          `json:"lockers"`
	Watchers  []Watcher        `json:"watchers"`
	Blocklist []BlocklistEntry `json:"blocklist"`
}

// Input is everything the decision depends on.
type Input struct {
	Host  string
	Image Image
	// HostIP is the host's address (config or seen lease).
	HostIP netip.Addr
	// Booting: a boot attempt of this host is in progress (rule 1).
	Booting bool
	// CallerIP is the address the request came from (rule 1).
	CallerIP netip.Addr
	// Recorded is the client address the host's previous boot reported
	// after mapping; zero when none was recorded.
	Recorded Addr
	Observed Observation
	Policy   Policy
}

// ActionKind names one step of a plan.
type ActionKind string

// The actions a plan can contain, in the order they are executed.
const (
	// ActBlocklistAdd fences the dead owner exactly (ip:port/nonce): it
	// can no longer write, and the OSD drops its lingering watch.
	ActBlocklistAdd ActionKind = "blocklist-add"
	// ActBreakLock removes the dead owner's exclusive lock.
	ActBreakLock ActionKind = "break-lock"
	// ActBlocklistRemove removes a whole-IP or CIDR entry that would block
	// the host's new client.
	ActBlocklistRemove ActionKind = "blocklist-remove"
)

// Action is one step of a plan.
type Action struct {
	Kind ActionKind `json:"kind"`
	// Addr is the owner for blocklist-add and break-lock.
	Addr Addr `json:"addr,omitzero"`
	// Entry is the entry to remove for blocklist-remove.
	Entry  BlocklistEntry `json:"entry,omitzero"`
	Expiry time.Duration  `json:"expiry,omitempty"`
	Why    string         `json:"why"`
}

func (a Action) String() string {
	switch a.Kind {
	case ActBlocklistAdd:
		return fmt.Sprintf("blocklist-add %s for %s", a.Addr, a.Expiry)
	case ActBreakLock:
		return "break-lock " + a.Addr.String()
	case ActBlocklistRemove:
		return "blocklist-remove " + a.Entry.String()
	}
	return string(a.Kind)
}

// Reason is why a plan was refused; it is a metric label, so the set is
// closed.
type Reason string

// Refusal reasons.
const (
	ReasonNotBooting      Reason = "not-booting"      // rule 1: no boot attempt in progress
	ReasonWrongCaller     Reason = "wrong-caller"     // rule 1: request not from the host's IP
	ReasonNoHostIP        Reason = "no-host-ip"       // the host's IP is unknown
	ReasonForeignOwner    Reason = "foreign-owner"    // rule 4: owner on another IP
	ReasonUnrecordedOwner Reason = "unrecorded-owner" // rule 3 with policy refuse
	ReasonExternalLock    Reason = "external-lock"    // a lock not taken by exclusive-lock
	ReasonSharedLock      Reason = "shared-lock"      // several or non-exclusive owners
	ReasonHostBlocklisted Reason = "host-blocklisted" // rule 5 with removal off
	ReasonCephError       Reason = "ceph-error"       // rule 6 (set by the executor)
)

// Reasons lists every refusal reason (for metrics initialisation).
func Reasons() []Reason {
	return []Reason{ReasonNotBooting, ReasonWrongCaller, ReasonNoHostIP, ReasonForeignOwner,
		ReasonUnrecordedOwner, ReasonExternalLock, ReasonSharedLock, ReasonHostBlocklisted, ReasonCephError}
}

// Refusal says why nothing will be done.
type Refusal struct {
	Reason  Reason `json:"reason"`
	Message string `json:"message"`
	// Holder is the lock owner, when the refusal is about it.
	Holder       Addr   `json:"holder,omitzero"`
	HolderClient string `json:"holder_client,omitempty"`
}

// Plan is the decision: actions to run in order, or a refusal.
type Plan struct {
	Host    string   `json:"host"`
	Image   Image    `json:"image"`
	Actions []Action `json:"actions"`
	Refusal *Refusal `json:"refusal,omitempty"`
	// Notes explain what was seen and deliberately left alone.
	Notes []string `json:"notes,omitempty"`
}

// Refused reports whether the plan is a refusal.
func (p Plan) Refused() bool { return p.Refusal != nil }

// Summary is a one-line description for logs and events.
func (p Plan) Summary() string {
	if p.Refusal != nil {
		return fmt.Sprintf("refused (%s): %s", p.Refusal.Reason, p.Refusal.Message)
	}
	if len(p.Actions) == 0 {
		return "nothing to do"
	}
	parts := make([]string, len(p.Actions))
	for i, a := range p.Actions {
		parts[i] = a.String()
	}
	return strings.Join(parts, "; ")
}

// Decide applies the RBD hand-over rules (README "RBD hand-over", rules
// 1–5) to in. It is pure: it reads only in.
func Decide(in Input) Plan {
	p := Plan{Host: in.Host, Image: in.Image, Actions: []Action{}}
	if r := checkCaller(in); r != nil {
		p.Refusal = r
		return p
	}
	lockActions, r := decideLock(in, &p)
	if r != nil {
		p.Refusal = r
		p.Actions = []Action{}
		return p
	}
	blActions, r := decideBlocklist(in, &p)
	if r != nil {
		p.Refusal = r
		p.Actions = []Action{}
		return p
	}
	// Fence and break first, then unblock: removing a whole-IP entry
	// before the exact one exists could let a hung old client write again.
	p.Actions = append(append(p.Actions, lockActions...), blActions...)
	return p
}

func checkCaller(in Input) *Refusal {
	switch {
	case !in.HostIP.IsValid():
		return &Refusal{Reason: ReasonNoHostIP, Message: fmt.Sprintf("host %s has no known IP address", in.Host)}
	case !in.Booting:
		return &Refusal{Reason: ReasonNotBooting, Message: fmt.Sprintf("host %s has no boot attempt in progress", in.Host)}
	case in.CallerIP.Unmap() != in.HostIP.Unmap():
		return &Refusal{Reason: ReasonWrongCaller, Message: fmt.Sprintf("request from %s, but host %s is %s", in.CallerIP, in.Host, in.HostIP)}
	}
	return nil
}

// decideLock applies rules 2–4 to the observed lock owner.
func decideLock(in Input, p *Plan) ([]Action, *Refusal) {
	obs := in.Observed
	if len(obs.Owners) == 0 {
		if len(obs.Lockers.Lockers) > 0 && obs.Lockers.Tag != "internal" {
			l := obs.Lockers.Lockers[0]
			return nil, &Refusal{Reason: ReasonExternalLock, Holder: l.Addr, HolderClient: l.Client,
				Message: fmt.Sprintf("image %s has a lock not taken by exclusive-lock (tag %q, cookie %q) held by %s %s", in.Image, obs.Lockers.Tag, l.Cookie, l.Client, l.Addr)}
		}
		p.Notes = append(p.Notes, "image is not locked")
		return nil, nil
	}
	if len(obs.Owners) > 1 || !obs.Owners[0].Exclusive {
		o := obs.Owners[0]
		return nil, &Refusal{Reason: ReasonSharedLock, Holder: o.Addr, HolderClient: clientOf(obs, o.Addr),
			Message: fmt.Sprintf("image %s has %d owner(s), first %s, not one exclusive owner", in.Image, len(obs.Owners), o.Addr)}
	}
	owner := obs.Owners[0].Addr
	client := clientOf(obs, owner)
	holder := describeHolder(owner, client)
	if r := checkLocker(in, owner, client); r != nil {
		return nil, r
	}
	if owner.IP != in.HostIP.Unmap() {
		return nil, &Refusal{Reason: ReasonForeignOwner, Holder: owner, HolderClient: client,
			Message: fmt.Sprintf("lock of %s is held by %s on another IP than host %s (%s): never broken", in.Image, holder, in.Host, in.HostIP)}
	}
	why := ""
	switch {
	case owner == in.Recorded:
		why = "owner is the client the host's previous boot recorded"
	case in.Policy.BreakUnrecordedSameIP:
		why = fmt.Sprintf("owner has the host's IP but is not the recorded client (%s); policy unrecorded_same_ip=break", recordedText(in.Recorded))
	default:
		return nil, &Refusal{Reason: ReasonUnrecordedOwner, Holder: owner, HolderClient: client,
			Message: fmt.Sprintf("lock of %s is held by %s on host %s's IP, but the previous boot recorded %s; policy unrecorded_same_ip=refuse", in.Image, holder, in.Host, recordedText(in.Recorded))}
	}
	if watchedBy(obs.Watchers, owner) {
		p.Notes = append(p.Notes, fmt.Sprintf("owner %s still has a watch (stale until blocklisted or 30 s)", owner))
	}
	var acts []Action
	if blocklistedExactly(obs.Blocklist, owner) {
		p.Notes = append(p.Notes, fmt.Sprintf("owner %s is already blocklisted", owner))
	} else {
		acts = append(acts, Action{Kind: ActBlocklistAdd, Addr: owner, Expiry: in.Policy.BlocklistExpiry, Why: "fence the dead owner: " + why})
	}
	acts = append(acts, Action{Kind: ActBreakLock, Addr: owner, Why: why})
	return acts, nil
}

// checkLocker refuses locks whose header entry is not exclusive-lock's.
func checkLocker(in Input, owner Addr, client string) *Refusal {
	l := in.Observed.Lockers
	if len(l.Lockers) == 0 {
		return nil // lockers are informational; owners are authoritative
	}
	for _, lk := range l.Lockers {
		if lk.Addr == owner && (l.Tag != "internal" || !strings.HasPrefix(lk.Cookie, "auto ")) {
			return &Refusal{Reason: ReasonExternalLock, Holder: owner, HolderClient: client,
				Message: fmt.Sprintf("lock of %s held by %s has tag %q cookie %q: not an exclusive-lock lock", in.Image, owner, l.Tag, lk.Cookie)}
		}
	}
	return nil
}

// decideBlocklist applies rule 5.
func decideBlocklist(in Input, p *Plan) ([]Action, *Refusal) {
	var acts []Action
	for _, e := range in.Observed.Blocklist {
		switch {
		case e.Covers(in.HostIP):
			if !in.Policy.RemoveRangeBlocklist {
				return nil, &Refusal{Reason: ReasonHostBlocklisted,
					Message: fmt.Sprintf("blocklist entry %s blocks every client of host %s (%s); policy remove_range_blocklist=false", e, in.Host, in.HostIP)}
			}
			acts = append(acts, Action{Kind: ActBlocklistRemove, Entry: e, Why: fmt.Sprintf("%s blocks every new client of %s", e, in.HostIP)})
		case !e.IsRange() && e.Addr.IP == in.HostIP.Unmap():
			p.Notes = append(p.Notes, fmt.Sprintf("exact entry %s left to expire (harmless to a new client)", e))
		}
	}
	return acts, nil
}

func clientOf(obs Observation, a Addr) string {
	for _, l := range obs.Lockers.Lockers {
		if l.Addr == a {
			return l.Client
		}
	}
	for _, w := range obs.Watchers {
		if w.Addr == a {
			return fmt.Sprintf("client.%d", w.ID)
		}
	}
	return ""
}

func describeHolder(a Addr, client string) string {
	if client == "" {
		return a.String()
	}
	return client + " " + a.String()
}

func recordedText(a Addr) string {
	if a.IsZero() {
		return "no client"
	}
	return a.String()
}

func watchedBy(ws []Watcher, a Addr) bool {
	for _, w := range ws {
		if w.Addr == a {
			return true
		}
	}
	return false
}

func blocklistedExactly(es []BlocklistEntry, a Addr) bool {
	for _, e := range es {
		if !e.IsRange() && e.Addr == a {
			return true
		}
	}
	return false
}
