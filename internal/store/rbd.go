package store

import (
	"context"
	"time"
)

// RBDClient is the kernel rbd client a host's boot reported after mapping
// its root image (POST /api/v1/hosts/{name}/root/mapped, read from
// /sys/bus/rbd/devices/N/client_addr and client_id). The next boot of the
// host may hand over exactly this client's lock (rbd/ rule 2).
type RBDClient struct {
	Host       string    `json:"host"`
	BootID     int64     `json:"boot_id,omitempty"`
	Time       time.Time `json:"time"`
	Pool       string    `json:"pool"`
	Image      string    `json:"image"`
	ClientAddr string    `json:"client_addr"` // ip:port/nonce
	ClientID   string    `json:"client_id"`   // client<gid>, e.g. client4130
}

// RBDClients persists the reported clients. Implementations assert to it
// from Store (store.Store does not embed it).
type RBDClients interface {
	// RecordRBDClient stores c as the host's latest reported client.
	RecordRBDClient(ctx context.Context, c RBDClient) error
	// LastRBDClient returns the host's latest reported client for
	// pool/image, or ErrNotFound.
	LastRBDClient(ctx context.Context, host, pool, image string) (RBDClient, error)
	// RBDClientHistory returns the host's reported clients, newest first;
	// limit <= 0 means all.
	RBDClientHistory(ctx context.Context, host string, limit int) ([]RBDClient, error)
}
