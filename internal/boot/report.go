// Package boot is the boot tracker: one state machine per host that turns the
// events every other part emits (DHCP, file fetches, netconsole lines, nbinit
// stages, RBD hand-over, smoke checks) into boot attempts with an honest
// outcome: in-progress, succeeded, failed, stuck or skipped.
//
// The tracker is the event.Sink of the whole service. It persists each
// attempt as a Report (store.Boot.State) and every event, arms per-stage
// deadlines on the injected clock, matches netconsole lines against the
// failure-signature catalogue, runs the host class's smoke checks once a boot
// reaches userspace, compares them with the baseline taken when a reboot was
// announced, sends webhooks and exports Prometheus metrics. Every decision it
// takes is a log line, an event on the boot's timeline and a metric.
package boot

import (
	"time"

	"netboot/internal/event"
	"netboot/internal/store"
)

// Event kinds the tracker itself records on a boot's timeline.
const (
	// KindStuck: the boot made no progress past its stage before the deadline.
	KindStuck event.Kind = "boot.stuck"
	// KindSkipped: an announced reboot started no boot attempt in time.
	KindSkipped event.Kind = "boot.skipped"
	// KindRestarted: a new attempt began while this one was in progress.
	KindRestarted event.Kind = "boot.restarted"
)

// Reasons a boot ended the way it did (Report.Reason).
const (
	ReasonReady      = "ready"      // smoke checks passed or the host said so
	ReasonStage      = "stage"      // a component reported the stage failed
	ReasonSignature  = "signature"  // a fatal failure signature on netconsole
	ReasonSmoke      = "smoke"      // a smoke check failed (it failed before the reboot too, or there was no baseline)
	ReasonRegression = "regression" // a smoke check passed before the reboot and fails now
	ReasonDeadline   = "deadline"   // stuck: no progress before the stage's deadline
	ReasonRestarted  = "restarted"  // the host started over before reaching ready
	ReasonNoBoot     = "no-boot"    // skipped: the announced reboot never started
	ReasonRefused    = "refused"    // the RBD hand-over refused to hand the root over
)

// Report is everything known about one boot attempt. It is what the API
// returns, what webhooks carry and what the store keeps (as Boot.State).
type Report struct {
	Host      string      `json:"host"`
	BootID    int64       `json:"boot_id"`
	Seq       int         `json:"seq,omitempty"`
	Class     string      `json:"class,omitempty"`
	Started   time.Time   `json:"started"`
	Updated   time.Time   `json:"updated"`
	Ended     time.Time   `json:"ended,omitzero"`
	Outcome   string      `json:"outcome"`
	Reason    string      `json:"reason,omitempty"`
	Message   string      `json:"message,omitempty"`
	LastStage event.Stage `json:"last_stage"`
	// Stages lists the stages reached, in order, with the time spent in each
	// (until the next stage was reached, or until the boot ended).
	Stages      []StageMark    `json:"stages"`
	Failure     *Failure       `json:"failure,omitempty"`
	Signatures  []SignatureHit `json:"signatures,omitempty"`
	RBD         []RBDAction    `json:"rbd,omitempty"`
	Fetches     []Fetch        `json:"fetches,omitempty"`
	Smoke       []SmokeResult  `json:"smoke,omitempty"`
	Regressions []string       `json:"regressions,omitempty"`
	// Expected is the announced reboot this attempt answers, with the smoke
	// baseline taken before it.
	Expected *Expectation `json:"expected,omitempty"`
	// Deadlines are the per-stage deadlines this boot is judged by.
	Deadlines map[string]string `json:"deadlines"`
	// Deadline is when the current stage times out (in-progress only).
	Deadline time.Time `json:"deadline,omitzero"`
	// SmokePlanned is how many smoke checks the class declares.
	SmokePlanned int `json:"smoke_planned"`
}

// StageMark is one stage reached.
type StageMark struct {
	Stage      event.Stage `json:"stage"`
	At         time.Time   `json:"at"`
	DurationMS int64       `json:"duration_ms"`
	Via        event.Kind  `json:"via"`
}

// Failure says why a boot failed or where it got stuck.
type Failure struct {
	Stage     event.Stage `json:"stage"`
	Signature string      `json:"signature,omitempty"`
	Message   string      `json:"message"`
	Explain   string      `json:"explain,omitempty"`
	Hint      string      `json:"hint,omitempty"`
	// Line is the netconsole line that matched; Excerpt the lines around it.
	Line    string   `json:"line,omitempty"`
	Excerpt []string `json:"excerpt,omitempty"`
}

// SignatureHit is one netconsole line that matched a signature.
type SignatureHit struct {
	Name    string      `json:"name"`
	Stage   event.Stage `json:"stage"`
	Fatal   bool        `json:"fatal"`
	Time    time.Time   `json:"time"`
	Line    string      `json:"line"`
	Explain string      `json:"explain,omitempty"`
	Hint    string      `json:"hint,omitempty"`
	Excerpt []string    `json:"excerpt,omitempty"`
}

// RBDAction is one root hand-over step taken or refused.
type RBDAction struct {
	Time    time.Time         `json:"time"`
	Kind    event.Kind        `json:"kind"`
	Failed  bool              `json:"failed,omitempty"`
	Message string            `json:"message,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// Fetch is a boot artifact transfer (or failed transfer).
type Fetch struct {
	Time   time.Time `json:"time"`
	Proto  string    `json:"proto,omitempty"`
	File   string    `json:"file"`
	Role   string    `json:"role,omitempty"`
	Bytes  string    `json:"bytes,omitempty"`
	Failed bool      `json:"failed,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// SmokeResult is the outcome of one smoke check.
type SmokeResult struct {
	Name       string    `json:"name"`
	Kind       string    `json:"kind"`
	Target     string    `json:"target,omitempty"`
	OK         bool      `json:"ok"`
	Message    string    `json:"message,omitempty"`
	Attempts   int       `json:"attempts"`
	DurationMS int64     `json:"duration_ms"`
	Time       time.Time `json:"time"`
}

// Expectation is an announced reboot.
type Expectation struct {
	ID        int64         `json:"id,omitempty"`
	Host      string        `json:"host"`
	Announced time.Time     `json:"announced"`
	Deadline  time.Time     `json:"deadline"`
	Baseline  []SmokeResult `json:"baseline"`
}

// Terminal reports whether the outcome can no longer change.
func (r *Report) Terminal() bool { return r.Outcome != store.OutcomeInProgress && r.Outcome != "" }

// Regression reports whether the boot failed because a check regressed.
func (r *Report) Regression() bool { return r.Reason == ReasonRegression }

// MatchTime is the time a report is compared with a wait's "since": the
// start of the attempt, or for a skipped reboot the time it was judged.
func (r *Report) MatchTime() time.Time {
	if r.Outcome == store.OutcomeSkipped {
		return r.Ended
	}
	return r.Started
}
