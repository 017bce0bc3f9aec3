package boot

import (
	"regexp"
	"time"

	"go.uber.org/zap"

	"netboot/internal/config"
)

// observe handles one netconsole line from the queue: it keeps the line in
// the attempt's ring, completes the excerpt of the last signature hit,
// marks the class's netconsole smoke regexes seen, and records a Signature
// event when the line matches the catalogue.
func (t *Tracker) observe(host string, bootID int64, at time.Time, line string) {
	t.mu.Lock()
	changed := t.observeLocked(host, bootID, at, line)
	t.mu.Unlock()
	if changed {
		t.notify()
	}
}

// observeLocked is observe with t.mu held; it reports whether the report
// changed.
func (t *Tracker) observeLocked(host string, bootID int64, at time.Time, line string) (changed bool) {
	hs := t.state(host)
	r := hs.report
	if r == nil || (bootID != 0 && bootID != r.BootID) {
		t.m.dropped.WithLabelValues("line-of-other-boot").Inc()
		return false
	}
	for _, re := range hs.watch {
		if re.MatchString(line) {
			hs.seen[re.String()] = true
		}
	}
	if hs.afterLeft > 0 {
		hs.afterLeft--
		changed = t.extendExcerpt(r, line)
	}
	hs.ring = append(hs.ring, line)
	if len(hs.ring) > ringSize {
		hs.ring = hs.ring[len(hs.ring)-ringSize:]
	}
	sig, ok := t.cat.Match(line)
	if !ok {
		return changed
	}
	t.m.signatures.WithLabelValues(sig.Name).Inc()
	hs.hitCount[sig.Name]++
	if hs.hitCount[sig.Name] > maxHitsPerName || len(r.Signatures) >= maxHitsPerBoot {
		return changed
	}
	ev := signatureEvent(host, at, sig, line, append([]string(nil), hs.ring...))
	hs.afterLeft = linesAfter
	t.log.Warn("boot: failure signature", zap.String("host", host), zap.Int64("boot", r.BootID),
		zap.String("signature", sig.Name), zap.Bool("fatal", sig.Fatal), zap.String("line", line))
	if _, err := t.recordLocked(t.ctx, hs, ev); err != nil {
		t.log.Error("tracker: record signature", zap.String("host", host), zap.Error(err))
	}
	return true
}

// extendExcerpt appends a line that followed a signature hit to the hit's
// excerpt (and the failure's, when that hit failed the boot).
func (t *Tracker) extendExcerpt(r *Report, line string) bool {
	n := len(r.Signatures)
	if n == 0 {
		return false
	}
	h := &r.Signatures[n-1]
	h.Excerpt = append(h.Excerpt, line)
	if r.Failure != nil && r.Failure.Line == h.Line && r.Failure.Signature == h.Name {
		r.Failure.Excerpt = append(r.Failure.Excerpt, line)
	}
	if err := t.persist(t.ctx, r); err != nil {
		t.log.Error("tracker: persist excerpt", zap.String("host", r.Host), zap.Error(err))
	}
	return true
}

// watchList compiles the class's netconsole smoke regexes for host.
func (t *Tracker) watchList(host string, cl config.Class) []*regexp.Regexp {
	vars := t.hostVars(host)
	var out []*regexp.Regexp
	for _, chk := range cl.Smoke {
		if chk.Kind != "netconsole" || len(out) >= maxSeenPatterns {
			continue
		}
		pat, err := render(chk.Target, vars)
		if err != nil {
			continue
		}
		if re, err := regexp.Compile(pat); err == nil {
			out = append(out, re)
		}
	}
	return out
}

// hostVars returns the template variables of host (empty if unknown).
func (t *Tracker) hostVars(host string) map[string]string {
	h, ok := t.cfg.Inventory.HostByName(host)
	if !ok {
		return map[string]string{"name": host}
	}
	return t.cfg.Inventory.HostVariables(h)
}
