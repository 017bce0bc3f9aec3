package dashboard

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"netboot/internal/store"
)

// overviewData is the hosts overview.
type overviewData struct {
	Rows    []hostRow
	Summary []summaryItem
	Filter  string // outcome key filtered on, "" for all
	Sort    string // "attention" (default) or "name"
	Total   int
	// Refresh is the opt-in reload period in seconds (?refresh=N, for wall
	// displays; works without JavaScript); 0 means none.
	Refresh int
}

func (overviewData) title() string { return "Hosts" }

// refreshSeconds is the page's <meta refresh> period (layout.html).
func (d overviewData) refreshSeconds() int { return d.Refresh }

// Bounds of ?refresh=N.
const (
	minRefresh = 5
	maxRefresh = 3600
)

// parseRefresh validates ?refresh=N ("" or "0": none).
func parseRefresh(v string) (int, error) {
	if v == "" || v == "0" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < minRefresh || n > maxRefresh {
		return 0, badRequest(fmt.Sprintf("refresh must be a number of seconds from %d to %d, not %s", minRefresh, maxRefresh, quote(v)))
	}
	return n, nil
}

// hostRow is one host in the overview.
type hostRow struct {
	Name, Class, Arch string
	Known             bool // in the inventory
	State             string
	Stage             string
	Key               string // outcome key
	Reason            string
	Signature         string
	Since             time.Time
	SinceAgo          string
	BootID            int64
	Seq               int
	Attention         bool
}

type summaryItem struct {
	Key    string
	Count  int
	Active bool
}

// overview reads the newest boot of every host in one query and joins it
// with the inventory; hosts seen but not in the inventory are listed too.
func (s *Server) overview(r *http.Request) (any, error) {
	filter, sortBy, err := parseOverviewQuery(r.URL.Query().Get("outcome"), r.URL.Query().Get("sort"))
	if err != nil {
		return nil, err
	}
	refresh, err := parseRefresh(r.URL.Query().Get("refresh"))
	if err != nil {
		return nil, err
	}
	latest, err := s.cfg.Boots.LatestBoots(r.Context())
	if err != nil {
		return nil, err
	}
	now := s.cfg.Clock.Now()
	rows := s.hostRows(latest, now)
	sortRows(rows, sortBy)
	d := overviewData{Filter: filter, Sort: sortBy, Total: len(rows), Refresh: refresh}
	counts := map[string]int{}
	for _, row := range rows {
		counts[row.Key]++
		if filter == "" || row.Key == filter {
			d.Rows = append(d.Rows, row)
		}
	}
	for _, k := range outcomeKeys {
		d.Summary = append(d.Summary, summaryItem{Key: k, Count: counts[k], Active: k == filter})
	}
	return d, nil
}

// parseOverviewQuery validates the overview's filter and sort parameters.
func parseOverviewQuery(outcome, sortBy string) (string, string, error) {
	outcome = strings.TrimSpace(outcome)
	if outcome != "" && !slices.Contains(outcomeKeys, outcome) {
		return "", "", badRequest("unknown outcome filter " + quote(outcome) + "; use one of " + strings.Join(outcomeKeys, ", "))
	}
	switch sortBy {
	case "":
		sortBy = "attention"
	case "attention", "name":
	default:
		return "", "", badRequest("unknown sort " + quote(sortBy) + "; use attention or name")
	}
	return outcome, sortBy, nil
}

func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return `"` + s + `"`
}

func (s *Server) hostRows(latest map[string]store.Boot, now time.Time) []hostRow {
	inv := s.cfg.Inventory
	rows := make([]hostRow, 0, len(inv.Hosts)+4)
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		arch := h.Arch
		if arch == "" {
			arch = inv.ClassOf(h).Arch
		}
		row := hostRow{Name: h.Name, Class: h.Class, Arch: arch, Known: true}
		b, ok := latest[h.Name]
		fillRow(&row, b, ok, now)
		rows = append(rows, row)
	}
	for name, b := range latest {
		if _, known := inv.HostByName(name); !known {
			row := hostRow{Name: name, Class: "–", Arch: "–"}
			fillRow(&row, b, true, now)
			rows = append(rows, row)
		}
	}
	return rows
}

// fillRow sets a row's state from the host's newest boot.
func fillRow(row *hostRow, b store.Boot, ok bool, now time.Time) {
	if !ok {
		row.Key, row.State, row.Stage = keyNone, "never seen", "–"
		return
	}
	row.Key = outcomeKey(b.Outcome, b.Reason)
	row.State = stateOf(row.Key)
	row.Stage = stageName(b.Stage)
	row.Reason, row.BootID, row.Seq = b.Reason, b.ID, b.Seq
	row.Since = since(b)
	row.SinceAgo = ago(now, row.Since)
	row.Attention = needsAttention(row.Key)
	if row.Attention {
		if r, err := decodeReport(b); err == nil && r.Failure != nil {
			row.Signature = r.Failure.Signature
		}
	}
}

// stateOf is the host's coarse state given its newest boot's outcome.
func stateOf(key string) string {
	switch key {
	case store.OutcomeInProgress:
		return "booting"
	case store.OutcomeSucceeded:
		return "up"
	case keyRegression:
		return "up, degraded"
	case store.OutcomeSkipped:
		return "did not reboot"
	}
	return "down"
}

func sortRows(rows []hostRow, by string) {
	slices.SortFunc(rows, func(a, b hostRow) int {
		if by == "attention" && outcomeOrder[a.Key] != outcomeOrder[b.Key] {
			return outcomeOrder[a.Key] - outcomeOrder[b.Key]
		}
		return strings.Compare(a.Name, b.Name)
	})
}
