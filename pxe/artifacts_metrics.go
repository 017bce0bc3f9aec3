package pxe

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// FileMetrics are the transfer metrics that TFTP and HTTP share:
//
//	netboot_file_transfers_total{proto,result}  transfers by protocol and result
//	netboot_file_bytes_total{proto}             bytes served
//
// result is one of ok, early-terminate, not-found, refused, timeout,
// client-error, failed.
type FileMetrics struct {
	Transfers *prometheus.CounterVec
	Bytes     *prometheus.CounterVec
}

// NewFileMetrics registers the shared transfer metrics on reg (nil: not
// registered). Registering twice on one registry returns the collectors
// already registered, so TFTP and HTTP may both call it.
func NewFileMetrics(reg prometheus.Registerer) *FileMetrics {
	m := &FileMetrics{
		Transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netboot_file_transfers_total",
			Help: "File transfers (TFTP and HTTP artifacts) by protocol and result.",
		}, []string{"proto", "result"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netboot_file_bytes_total",
			Help: "Bytes of file content served, by protocol.",
		}, []string{"proto"}),
	}
	m.Transfers = registerOrExisting(reg, m.Transfers)
	m.Bytes = registerOrExisting(reg, m.Bytes)
	return m
}

// registerOrExisting registers c, or returns the equal collector that is
// already registered.
func registerOrExisting[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
