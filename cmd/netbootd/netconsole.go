package main

import (
	"context"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"netboot/netconsole"
)

// setupNetconsole wires the netconsole collector (netconsole/): the UDP
// receiver on netconsole.listen, attributing sources through the
// inventory's IPs and the addresses pxe and the API learned, telling the
// boot tracker about each boot's first kernel line and feeding it every
// line, storing lines in the store and serving them to the API. Owned by
// the netconsole part.
func (d *daemon) setupNetconsole(context.Context) error {
	nc := d.cfg.Netconsole
	if nc.Listen == "off" {
		d.log.Info("netconsole: disabled (netconsole.listen: off)")
		return nil
	}
	m, err := netconsole.NewMetrics(d.registry)
	if err != nil {
		return err
	}
	broker := netconsole.NewBroker(m)
	deps := netconsole.Deps{
		Log: d.log.Named("netconsole"), Clock: d.clock, Resolver: d.netconsoleResolver(),
		Events: eventForwarder{d}, Store: d.store, Broker: broker, Metrics: m,
	}
	if tr, ok := d.events.(netconsole.Tracker); ok {
		deps.Tracker = tr
	}
	if obs, ok := d.events.(netconsole.LineObserver); ok {
		deps.Observer = obs
	}
	srv, err := netconsole.New(netconsole.Config{
		Listen: nc.Listen, Sockets: nc.Sockets, RcvBuf: nc.RcvBuf,
		Retention: time.Duration(nc.Retention), MaxBytes: nc.MaxBytes,
	}, deps)
	if err != nil {
		return err
	}
	d.apiDeps.Logs = &netconsole.Service{Store: d.store, Broker: broker}
	d.services = append(d.services, service{name: "netconsole", serve: srv.Serve, close: srv.Close})
	d.log.Info("netconsole: collector ready", zap.Stringer("addr", srv.Addr()), zap.Bool("tracker", deps.Tracker != nil))
	return nil
}

// netconsoleResolver names the host behind a source address: the
// inventory's IPs first, then the leases and API callers the API's lease
// resolver knows (set up by pxe).
func (d *daemon) netconsoleResolver() netconsole.Resolver {
	byIP := map[netip.Addr]string{}
	for i := range d.cfg.Hosts {
		if a, ok := d.cfg.Hosts[i].Addr(); ok {
			byIP[a.Unmap()] = d.cfg.Hosts[i].Name
		}
	}
	return netconsole.ResolverFunc(func(ip netip.Addr) (string, bool) {
		if h, ok := byIP[ip]; ok {
			return h, true
		}
		if l := d.apiDeps.Leases; l != nil {
			return l.HostByIP(ip)
		}
		return "", false
	})
}
