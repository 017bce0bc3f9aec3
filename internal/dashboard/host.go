package dashboard

import (
	"net/http"
	"time"

	"go.uber.org/zap"

	"netboot/internal/boot"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store"
)

// hostData is the host page.
type hostData struct {
	Name    string
	Host    *config.Host // nil for a host seen but not in the inventory
	Arch    string
	Boots   []bootItem
	Limited bool // more boots exist than shown
	// Latest is the newest boot's detail: RBD actions and smoke results.
	Latest *bootItem
}

func (d hostData) title() string { return d.Name }

// bootItem is one boot in a host's history.
type bootItem struct {
	Report        *boot.Report
	Key           string
	Timeline      timeline
	SinceAgo      string
	RBDRefused    int
	Smoke         []smokeRow
	BaselineLabel string
	Regressions   int
}

func (s *Server) hostPage(r *http.Request) (any, error) {
	name := r.PathValue("name")
	h, known := s.cfg.Inventory.HostByName(name)
	boots, err := s.cfg.Boots.ListBoots(r.Context(), name, s.cfg.History+1)
	if err != nil {
		return nil, err
	}
	if !known && len(boots) == 0 {
		return nil, notFound("unknown host " + quote(name))
	}
	d := hostData{Name: name}
	if known {
		d.Host, d.Arch = h, h.Arch
		if d.Arch == "" {
			d.Arch = s.cfg.Inventory.ClassOf(h).Arch
		}
	}
	if len(boots) > s.cfg.History {
		boots, d.Limited = boots[:s.cfg.History], true
	}
	reports := s.decodeAll(boots)
	now := s.cfg.Clock.Now()
	for i, rep := range reports {
		var prev *boot.Report
		if i+1 < len(reports) {
			prev = reports[i+1]
		}
		d.Boots = append(d.Boots, newBootItem(rep, prev, now))
	}
	if len(d.Boots) > 0 {
		d.Latest = &d.Boots[0]
	}
	return d, nil
}

// decodeAll decodes reports, logging (not failing on) unreadable ones.
func (s *Server) decodeAll(boots []store.Boot) []*boot.Report {
	out := make([]*boot.Report, 0, len(boots))
	for _, b := range boots {
		rep, err := decodeReport(b)
		if err != nil {
			s.log.Warn("dashboard: boot report unreadable; showing its columns only", zap.Int64("boot", b.ID), zap.Error(err))
		}
		out = append(out, rep)
	}
	return out
}

// newBootItem prepares one boot for display; prev is the boot before it
// (nil if none), whose smoke results serve as baseline when no reboot was
// announced.
func newBootItem(rep, prev *boot.Report, now time.Time) bootItem {
	it := bootItem{Report: rep, Key: outcomeKey(rep.Outcome, rep.Reason), Timeline: buildTimeline(rep, now)}
	it.SinceAgo = ago(now, rep.Ended)
	if rep.Ended.IsZero() {
		it.SinceAgo = ago(now, rep.Started)
	}
	for _, a := range rep.RBD {
		if a.Failed || a.Kind == event.RootRefused {
			it.RBDRefused++
		}
	}
	baseline, label := baselineFor(rep, prev)
	it.Smoke, it.BaselineLabel = compareSmoke(rep, baseline), label
	for _, row := range it.Smoke {
		if row.Verdict == "regression" {
			it.Regressions++
		}
	}
	return it
}
