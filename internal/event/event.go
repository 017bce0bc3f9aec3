// Package event defines the typed events that every part of netboot emits and
// the boot-stage vocabulary they are expressed in.
//
// Events are the only input of the boot tracker (internal/boot): pxe/ emits
// DHCP and file-fetch events, netconsole/ emits kernel-log events, rbd/ and the
// API emit root hand-over and nbinit stage events. An event names the stage it
// proves reached, if any; outcomes are derived from the sequence, never set
// directly.
package event

import (
	"fmt"
	"time"
)

// Stage is one step of the boot chain, in the order a healthy boot passes them.
type Stage int

// The boot chain (see README "Boot stages"). The zero value means "no stage".
const (
	StageNone Stage = iota
	StageDHCP
	StageFirmware
	StageKernel
	StageInitramfs
	StageKernelUp
	StageInit
	StageNetwork
	StageRootPrepare
	StageRootMap
	StageRootMount
	StageSwitchRoot
	StageUserspace
	StageReady
)

var stageNames = [...]string{
	StageNone:        "",
	StageDHCP:        "dhcp",
	StageFirmware:    "firmware",
	StageKernel:      "kernel",
	StageInitramfs:   "initramfs",
	StageKernelUp:    "kernel-up",
	StageInit:        "init",
	StageNetwork:     "network",
	StageRootPrepare: "root-prepare",
	StageRootMap:     "root-map",
	StageRootMount:   "root-mount",
	StageSwitchRoot:  "switch-root",
	StageUserspace:   "userspace",
	StageReady:       "ready",
}

// Stages lists every stage of the chain in order, without StageNone.
func Stages() []Stage {
	out := make([]Stage, 0, len(stageNames)-1)
	for s := StageDHCP; s <= StageReady; s++ {
		out = append(out, s)
	}
	return out
}

// String returns the stage's name as used in the API, CLI, metrics and logs.
func (s Stage) String() string {
	if s < 0 || int(s) >= len(stageNames) {
		return fmt.Sprintf("stage(%d)", int(s))
	}
	return stageNames[s]
}

// ParseStage returns the stage with the given name.
func ParseStage(name string) (Stage, error) {
	for s, n := range stageNames {
		if n == name && name != "" {
			return Stage(s), nil
		}
	}
	return StageNone, fmt.Errorf("parse stage: unknown stage %q", name)
}

// MarshalText implements encoding.TextMarshaler.
func (s Stage) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; "" is StageNone.
func (s *Stage) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*s = StageNone
		return nil
	}
	v, err := ParseStage(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Kind says what happened. Kinds are dotted, source first.
type Kind string

// Event kinds emitted by the parts of netboot.
const (
	DHCPRequest    Kind = "dhcp.request"     // a DHCP/proxyDHCP request was answered
	DHCPIgnored    Kind = "dhcp.ignored"     // a DHCP request was seen and deliberately not answered
	FileFetched    Kind = "file.fetched"     // a TFTP or HTTP transfer completed
	FileFailed     Kind = "file.failed"      // a TFTP or HTTP transfer failed
	KernelLine     Kind = "netconsole.first" // first netconsole line of a boot (kernel-up)
	KernelBanner   Kind = "netconsole.banner"
	Signature      Kind = "netconsole.signature" // a netconsole line matched a failure signature
	StageReport    Kind = "nbinit.stage"         // nbinit reported a stage (ok or failed)
	RootPrepared   Kind = "rbd.prepared"         // the root hand-over ran; Attrs list the actions
	RootRefused    Kind = "rbd.refused"          // the root hand-over was refused; Message says why
	RootMapped     Kind = "rbd.mapped"           // nbinit mapped the image and reported its client
	SmokeResult    Kind = "smoke.result"         // one smoke check finished
	RebootExpected Kind = "reboot.expected"      // an orchestrator announced a reboot
	HostReady      Kind = "host.ready"           // the host (or its smoke tests) declared it ready
)

// Event is one fact about one host. It is immutable once recorded.
type Event struct {
	ID     int64     `json:"id,omitempty"`      // assigned by the store
	BootID int64     `json:"boot_id,omitempty"` // assigned by the tracker
	Time   time.Time `json:"time"`
	// Host is the inventory name, or "unknown:<mac-or-ip>" for clients the
	// inventory does not know.
	Host string `json:"host"`
	Kind Kind   `json:"kind"`
	// Stage is the stage this event proves reached (StageNone if none). For a
	// failed event (Failed true) it is the stage that failed.
	Stage   Stage             `json:"stage,omitempty"`
	Failed  bool              `json:"failed,omitempty"`
	Message string            `json:"message,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// Attr returns the value of attribute k, or "".
func (e Event) Attr(k string) string { return e.Attrs[k] }

// Sink receives events. Implementations must be safe for concurrent use and
// must not block for long: they are called from packet handlers.
type Sink interface {
	Emit(Event)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(Event)

// Emit calls f(e).
func (f SinkFunc) Emit(e Event) { f(e) }

// Discard is a Sink that drops every event.
var Discard Sink = SinkFunc(func(Event) {})
