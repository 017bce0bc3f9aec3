package boot

import (
	"strconv"
	"strings"
	"time"

	"netboot/internal/event"
	"netboot/internal/store"
)

// This file is the pure state machine: which event opens an attempt and how
// an event changes a report. It has no clock, store or locks, so that table
// tests can feed it event sequences and compare the reports with golden
// files.

// opensAttempt reports whether ev starts a new boot attempt, given the
// host's current attempt cur (nil: none yet).
//
//   - A firmware DHCP (client firmware or rpi; not iPXE, not the
//     initramfs's own lease) opens one, unless the current attempt is still
//     at the dhcp stage (the firmware retrying).
//   - A kernel banner opens one when the current attempt already passed
//     kernel-up (the host rebooted without a DHCP we saw); so does
//     netconsole's first line of a boot detected by a sequence reset or the
//     kernel clock going back, once the attempt reached kernel-up.
//   - With no attempt yet, any event that proves a stage reached opens one
//     (the host was already booting when netbootd first heard of it).
//   - After a finished attempt, an early-stage event (dhcp … kernel-up) or
//     nbinit reporting init opens one; later events are attached to the
//     finished attempt without changing its outcome.
func opensAttempt(cur *Report, ev event.Event) bool {
	if ev.Kind == KindSkipped {
		return true
	}
	if isFirmwareDHCP(ev) {
		return cur == nil || cur.Terminal() || cur.LastStage > event.StageDHCP
	}
	if isRefusedDHCP(ev) {
		return refusedDHCPOpens(cur, ev)
	}
	if ev.Kind == event.KernelBanner && cur != nil {
		if cur.LastStage > event.StageKernelUp || (cur.Terminal() && cur.LastStage >= event.StageKernelUp) {
			return true
		}
	}
	if kernelRestarted(ev) && cur != nil && cur.LastStage >= event.StageKernelUp {
		return true
	}
	switch {
	case ev.Failed || ev.Stage == event.StageNone || ev.Kind == event.Signature:
		return false
	case cur == nil:
		return true
	case !cur.Terminal():
		return false
	}
	return ev.Stage <= event.StageKernelUp || (ev.Kind == event.StageReport && ev.Stage == event.StageInit)
}

// kernelRestarted is netconsole's first line of a boot it detected from
// the stream itself: the extended sequence number reset or the kernel clock
// went back. A second kernel-up in one attempt means the host rebooted
// without a DHCP request that netbootd saw.
func kernelRestarted(ev event.Event) bool {
	if ev.Kind != event.KernelLine {
		return false
	}
	r := ev.Attr("reason")
	return r == "seq-reset" || r == "time-backwards"
}

// isRefusedDHCP is pxe/'s refused or failed DHCP boot of a known host: a
// failed dhcp stage.
func isRefusedDHCP(ev event.Event) bool {
	return ev.Kind == event.DHCPIgnored && ev.Failed && ev.Stage == event.StageDHCP
}

// refusedDHCPRepeat is how long after an attempt died at dhcp further
// refusals are taken as the same firmware retrying (PXE ROMs retry DHCP a
// few times) rather than a new boot.
const refusedDHCPRepeat = 10 * time.Minute

// refusedDHCPOpens decides whether a refused DHCP starts an attempt (to
// fail it): not while the current one is still at dhcp, and not for the
// firmware's retries right after an attempt that already died at dhcp.
func refusedDHCPOpens(cur *Report, ev event.Event) bool {
	switch {
	case cur == nil || cur.LastStage > event.StageDHCP:
		return true
	case !cur.Terminal():
		return false
	}
	return ev.Time.Sub(cur.Ended) > refusedDHCPRepeat
}

func isFirmwareDHCP(ev event.Event) bool {
	if ev.Kind != event.DHCPRequest {
		return false
	}
	switch ev.Attr("client") {
	case "firmware", "rpi":
		return true
	}
	return false
}

// newReport starts an attempt at ev.Time judged by deadlines.
func newReport(host, class string, at time.Time, deadlines map[string]time.Duration, smokePlanned int) *Report {
	r := &Report{Host: host, Class: class, Started: at, Updated: at, Outcome: store.OutcomeInProgress,
		Stages: []StageMark{}, Deadlines: map[string]string{}, SmokePlanned: smokePlanned}
	for stage, d := range deadlines {
		r.Deadlines[stage] = d.String()
	}
	return r
}

// deadlineFor returns the time allowed to reach stage (0: none).
func (r *Report) deadlineFor(stage event.Stage) time.Duration {
	d, err := time.ParseDuration(r.Deadlines[stage.String()])
	if err != nil {
		return 0
	}
	return d
}

// apply changes the report by one event and reports whether the stage
// advanced.
func (r *Report) apply(ev event.Event) (advanced bool) {
	if ev.Time.After(r.Updated) {
		r.Updated = ev.Time
	}
	r.collect(ev)
	if r.Terminal() {
		return false
	}
	if ev.Stage > r.LastStage && provesStage(ev) {
		r.advance(ev)
		advanced = true
	}
	switch {
	case ev.Kind == KindStuck:
		r.end(ev.Time, store.OutcomeStuck, ReasonDeadline, ev.Message)
		r.Failure = r.probableCause(ev)
	case ev.Kind == KindSkipped:
		r.end(ev.Time, store.OutcomeSkipped, ReasonNoBoot, ev.Message)
	case ev.Failed && failsBoot(ev):
		r.fail(ev)
	case ev.Kind == event.HostReady && (ev.Attr("by") == "smoke" || r.SmokePlanned == 0):
		if r.LastStage < event.StageReady {
			r.advance(event.Event{Time: ev.Time, Stage: event.StageReady, Kind: ev.Kind})
			advanced = true
		}
		msg := ev.Message
		if msg == "" {
			msg = "the host reported ready"
		}
		r.end(ev.Time, store.OutcomeSucceeded, ReasonReady, msg)
	case r.LastStage >= event.StageUserspace && r.SmokePlanned == 0:
		if r.LastStage < event.StageReady {
			r.advance(event.Event{Time: ev.Time, Stage: event.StageReady, Kind: ev.Kind})
		}
		r.end(ev.Time, store.OutcomeSucceeded, ReasonReady, "userspace reached; the class declares no smoke checks")
	}
	return advanced
}

// provesStage reports whether ev shows its stage was reached. A failure,
// a signature (its stage says where it belongs), a refused hand-over, an
// ignored DHCP request or a failed transfer does not.
func provesStage(ev event.Event) bool {
	if ev.Failed {
		return false
	}
	switch ev.Kind {
	case event.Signature, event.RootRefused, event.DHCPIgnored, event.FileFailed:
		return false
	}
	return true
}

// failsBoot tells failure events that end the attempt from those that are
// only recorded: failed transfers that name no stage (the Pi firmware probes
// many files; pxe/ names the stage of a known host's boot file), ignored DHCP,
// and components that say they are retrying (attrs retrying=true,
// retryable=true as rbd/ sets, transient=true, or nbinit's retry_in).
func failsBoot(ev event.Event) bool {
	switch ev.Kind {
	case event.FileFailed:
		// pxe/ names a stage only for a known host's boot file (kernel,
		// initramfs, bootloader); probes and unknown files name none. A
		// broken TFTP transfer is transient: the firmware retries it.
		return ev.Stage != event.StageNone && !retrying(ev)
	case event.DHCPIgnored:
		return isRefusedDHCP(ev)
	case event.SmokeResult:
		return false
	}
	return !retrying(ev)
}

// retrying reports whether the component says it will try again (nbinit
// sets retry_in on a failed try it will retry).
func retrying(ev event.Event) bool {
	return ev.Attr("retrying") == "true" || ev.Attr("retryable") == "true" || ev.Attr("transient") == "true" ||
		ev.Attr("retry_in") != ""
}

// collect keeps the details an event carries for the report, whatever the
// attempt's state.
func (r *Report) collect(ev event.Event) {
	switch ev.Kind {
	case event.FileFetched, event.FileFailed:
		r.Fetches = append(r.Fetches, Fetch{Time: ev.Time, Proto: ev.Attr("proto"), File: ev.Attr("file"),
			Role: ev.Attr("role"), Bytes: ev.Attr("bytes"), Failed: ev.Failed, Error: errorText(ev)})
	case event.RootPrepared, event.RootRefused, event.RootMapped:
		r.RBD = append(r.RBD, RBDAction{Time: ev.Time, Kind: ev.Kind, Failed: ev.Failed, Message: ev.Message, Attrs: ev.Attrs})
	case event.SmokeResult:
		r.addSmoke(smokeFromEvent(ev))
	case event.Signature:
		r.Signatures = append(r.Signatures, hitFromEvent(ev))
	}
}

func errorText(ev event.Event) string {
	if ev.Failed {
		return ev.Message
	}
	return ""
}

func (r *Report) addSmoke(res SmokeResult) {
	for i := range r.Smoke {
		if r.Smoke[i].Name == res.Name {
			r.Smoke[i] = res
			return
		}
	}
	r.Smoke = append(r.Smoke, res)
}

// advance records that ev's stage was reached.
func (r *Report) advance(ev event.Event) {
	if n := len(r.Stages); n > 0 {
		r.Stages[n-1].DurationMS = ev.Time.Sub(r.Stages[n-1].At).Milliseconds()
	}
	r.Stages = append(r.Stages, StageMark{Stage: ev.Stage, At: ev.Time, Via: ev.Kind})
	r.LastStage = ev.Stage
	r.Deadline = time.Time{}
	if d := r.deadlineFor(ev.Stage + 1); d > 0 && ev.Stage < event.StageReady {
		r.Deadline = ev.Time.Add(d)
	}
}

// end sets a final outcome.
func (r *Report) end(at time.Time, outcome, reason, msg string) {
	r.Outcome, r.Reason, r.Message, r.Ended, r.Deadline = outcome, reason, msg, at, time.Time{}
	if n := len(r.Stages); n > 0 {
		r.Stages[n-1].DurationMS = at.Sub(r.Stages[n-1].At).Milliseconds()
	}
}

// fail ends the attempt as failed because of ev.
func (r *Report) fail(ev event.Event) {
	stage := ev.Stage
	if stage == event.StageNone {
		stage = r.LastStage
	}
	f := &Failure{Stage: stage, Message: ev.Message}
	reason := ReasonStage
	switch ev.Kind {
	case event.Signature:
		reason = ReasonSignature
		h := hitFromEvent(ev)
		f.Signature, f.Explain, f.Hint, f.Line, f.Excerpt = h.Name, h.Explain, h.Hint, h.Line, h.Excerpt
	case event.RootRefused:
		reason = ReasonRefused
	case event.HostReady:
		reason = ev.Attr("reason")
		if reason == "" {
			reason = ReasonSmoke
		}
		if list := ev.Attr("regressions"); list != "" {
			r.Regressions = strings.Split(list, ",")
		}
	case KindRestarted:
		reason = ReasonRestarted
	}
	r.Failure = f
	r.end(ev.Time, store.OutcomeFailed, reason, ev.Message)
}

// probableCause names, for a stuck boot, the last signature or failed
// fetch seen: the best guess of what held it up.
func (r *Report) probableCause(ev event.Event) *Failure {
	f := &Failure{Stage: r.LastStage, Message: ev.Message}
	if n := len(r.Signatures); n > 0 {
		h := r.Signatures[n-1]
		f.Signature, f.Explain, f.Hint, f.Line, f.Excerpt = h.Name, h.Explain, h.Hint, h.Line, h.Excerpt
		return f
	}
	if n := len(r.RBD); n > 0 && (r.RBD[n-1].Failed || r.RBD[n-1].Kind == event.RootRefused) {
		f.Explain = "last root hand-over answer: " + r.RBD[n-1].Message
		return f
	}
	for i := len(r.Fetches) - 1; i >= 0; i-- {
		if r.Fetches[i].Failed {
			f.Explain = "last failed transfer: " + r.Fetches[i].File + ": " + r.Fetches[i].Error
			break
		}
	}
	return f
}

// signatureEvent builds the event recorded when a netconsole line matches.
func signatureEvent(host string, at time.Time, sig Signature, line string, excerpt []string) event.Event {
	return event.Event{Time: at, Host: host, Kind: event.Signature, Stage: sig.Stage, Failed: sig.Fatal,
		Message: sig.Name + ": " + sig.Explain,
		Attrs: map[string]string{"signature": sig.Name, "line": line, "explain": sig.Explain, "hint": sig.Hint,
			"fatal": strconv.FormatBool(sig.Fatal), "excerpt": strings.Join(excerpt, "\n")}}
}

func hitFromEvent(ev event.Event) SignatureHit {
	h := SignatureHit{Name: ev.Attr("signature"), Stage: ev.Stage, Fatal: ev.Attr("fatal") == "true", Time: ev.Time,
		Line: ev.Attr("line"), Explain: ev.Attr("explain"), Hint: ev.Attr("hint")}
	if ex := ev.Attr("excerpt"); ex != "" {
		h.Excerpt = strings.Split(ex, "\n")
	}
	return h
}

// smokeEvent is the event recorded for one finished smoke check.
func smokeEvent(host string, res SmokeResult) event.Event {
	return event.Event{Time: res.Time, Host: host, Kind: event.SmokeResult, Failed: !res.OK, Message: res.Message,
		Attrs: map[string]string{"check": res.Name, "check_kind": res.Kind, "target": res.Target,
			"ok": strconv.FormatBool(res.OK), "attempts": strconv.Itoa(res.Attempts),
			"duration_ms": strconv.FormatInt(res.DurationMS, 10)}}
}

func smokeFromEvent(ev event.Event) SmokeResult {
	attempts, _ := strconv.Atoi(ev.Attr("attempts"))
	dur, _ := strconv.ParseInt(ev.Attr("duration_ms"), 10, 64)
	return SmokeResult{Name: ev.Attr("check"), Kind: ev.Attr("check_kind"), Target: ev.Attr("target"),
		OK: ev.Attr("ok") == "true", Message: ev.Message, Attempts: attempts, DurationMS: dur, Time: ev.Time}
}
