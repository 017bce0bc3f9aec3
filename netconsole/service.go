package netconsole

import (
	"context"
	"errors"

	"netboot/internal/store"
)

// Service is what the API's log routes use (internal/api.LogService):
// stored lines from the log store and live lines from the broker.
type Service struct {
	Store  store.LogStore
	Broker *Broker
}

// QueryLogs returns stored lines.
func (s *Service) QueryLogs(ctx context.Context, q store.LogQuery) ([]store.LogLine, error) {
	if s.Store == nil {
		return nil, errors.New("query logs: no log store")
	}
	return s.Store.QueryLogs(ctx, q)
}

// LogBoots lists the boots with stored lines for host, oldest first.
func (s *Service) LogBoots(ctx context.Context, host string) ([]store.LogBoot, error) {
	if s.Store == nil {
		return nil, errors.New("list log boots: no log store")
	}
	return s.Store.LogBoots(ctx, host)
}

// FollowLogs delivers host's lines as they arrive until stop is called.
// dropped reports how many lines the follower missed by being slow.
func (s *Service) FollowLogs(host string) (lines <-chan store.LogLine, dropped func() int64, stop func()) {
	sub := s.Broker.Subscribe(host, 4096)
	return sub.C, sub.Dropped, func() { s.Broker.Unsubscribe(sub) }
}
