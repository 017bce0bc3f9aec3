package api

import (
	"net/http"
	"sort"
	"time"

	"netboot/internal/config"
	"netboot/internal/store"
)

// HostView is one host as the API shows it: inventory plus its latest boot.
type HostView struct {
	Name   string `json:"name"`
	Class  string `json:"class"`
	Arch   string `json:"arch"`
	MAC    string `json:"mac,omitempty"`
	Serial string `json:"serial,omitempty"`
	IP     string `json:"ip,omitempty"`
	Pool   string `json:"pool,omitempty"`
	Image  string `json:"image,omitempty"`
	// LastBoot is the newest boot attempt, if any.
	LastBoot *BootSummary `json:"last_boot,omitempty"`
}

// BootSummary is the short form of a boot attempt used in lists.
type BootSummary struct {
	ID      int64     `json:"id"`
	Seq     int       `json:"seq"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	Ended   time.Time `json:"ended,omitzero"`
	Stage   string    `json:"stage"`
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
}

// Summarize converts a stored boot into its list form.
func Summarize(b store.Boot) BootSummary {
	return BootSummary{ID: b.ID, Seq: b.Seq, Started: b.Started, Updated: b.Updated, Ended: b.Ended,
		Stage: b.Stage.String(), Outcome: b.Outcome, Reason: b.Reason}
}

func (s *Server) hostRoutes() {
	s.handle("GET /api/v1/hosts", s.listHosts)
	s.handle("GET /api/v1/hosts/{name}", s.getHost)
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	latest, err := s.cfg.Store.LatestBoots(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading boots failed", err.Error())
		return
	}
	inv := s.cfg.Inventory
	out := make([]HostView, 0, len(inv.Hosts))
	for i := range inv.Hosts {
		out = append(out, hostView(&inv.Hosts[i], latest))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	boots, err := s.cfg.Store.ListBoots(r.Context(), h.Name, 1)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading boots failed", err.Error())
		return
	}
	latest := map[string]store.Boot{}
	if len(boots) > 0 {
		latest[h.Name] = boots[0]
	}
	writeJSON(w, http.StatusOK, hostView(h, latest))
}

func hostView(h *config.Host, latest map[string]store.Boot) HostView {
	v := HostView{Name: h.Name, Class: h.Class, Arch: h.Arch, MAC: h.MAC, Serial: h.Serial, IP: h.IP,
		Pool: h.RBD.Pool, Image: h.RBD.Image}
	if b, ok := latest[h.Name]; ok {
		sum := Summarize(b)
		v.LastBoot = &sum
	}
	return v
}
