package api

import (
	"context"
	"net/http"
	"os"

	"netboot/internal/config"
)

// InitramfsService is what the initramfs routes need: the path of a host's
// assembled nbinit image (initramfs.HostImages). Owned by the initramfs
// part; the same service answers /boot/{host}/initrd (pxe).
type InitramfsService interface {
	InitrdPath(ctx context.Context, h *config.Host) (string, error)
}

// initramfsInfo is the answer of GET /api/v1/hosts/{name}/initramfs.
type initramfsInfo struct {
	Host string `json:"host"`
	Arch string `json:"arch"`
	URL  string `json:"url"`
	Size int64  `json:"size"`
}

func (s *Server) initramfsRoutes() {
	s.handle("GET /api/v1/hosts/{name}/initramfs", s.getInitramfs)
}

// getInitramfs assembles (or finds cached) the host's image and says where
// it is served and how large it is.
func (s *Server) getInitramfs(w http.ResponseWriter, r *http.Request) {
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	if s.cfg.Deps.Initramfs == nil {
		unavailable(w, "initramfs")
		return
	}
	p, err := s.cfg.Deps.Initramfs.InitrdPath(r.Context(), h)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot assemble the host's initramfs", err.Error())
		return
	}
	st, err := os.Stat(p)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "assembled initramfs is missing", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, initramfsInfo{Host: h.Name, Arch: h.Arch, URL: "/boot/" + h.Name + "/initrd", Size: st.Size()})
}
