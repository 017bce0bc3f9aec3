package main

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"netboot/internal/boot"
	"netboot/rbd"
	"netboot/rbd/goceph"
)

// setupRBD wires the RBD root hand-over (rbd/): a goceph connection (made
// lazily, so netbootd starts while Ceph is down), the executor with the
// configured per-call bound, the service behind root/prepare, root/mapped,
// rbd status and plan, and its metrics. Owned by the rbd part.
func (d *daemon) setupRBD(context.Context) error {
	log := d.log.Named("rbd")
	c := d.cfg.Ceph
	if len(c.Monitors) == 0 && c.ConfFile == "" {
		log.Info("rbd: root hand-over off: no ceph monitors or conf_file configured (root/prepare answers 503)")
		return nil
	}
	boots, ok := d.events.(rbd.Boots)
	if !ok {
		return fmt.Errorf("rbd: the event sink (%T) is not the boot tracker", d.events)
	}
	if !goceph.Available {
		log.Warn("rbd: this netbootd was built without Ceph support; every prepare will fail", zap.Error(goceph.ErrNoCephOrNil()))
	}
	cluster := goceph.New(goceph.Config{
		Monitors: c.Monitors, ConfFile: d.cfg.Resolve(c.ConfFile), User: c.User, Keyring: d.cfg.Resolve(c.Keyring), Timeout: c.Timeout.D(),
	}, log)
	d.closers = append(d.closers, cluster.Close)
	if tracker, ok := d.events.(interface{ SetOSD(boot.OSDStatus) }); ok {
		tracker.SetOSD(d.osdStatus(cluster))
	}
	ex := rbd.NewExecutor(cluster, rbd.ExecutorConfig{CallTimeout: c.Timeout.D()}, log, d.clock, rbd.NewMetrics(d.registry))
	var leases rbd.LeaseResolver
	if d.apiDeps.Leases != nil {
		leases = d.apiDeps.Leases
	}
	d.apiDeps.Root = rbd.NewService(rbd.ServiceConfig{
		Inventory: d.cfg, Cluster: cluster, Executor: ex, Clients: d.store, Events: d.store, Boots: boots, Leases: leases, Log: log, Clock: d.clock,
	})
	log.Info("rbd: root hand-over on", zap.Strings("monitors", c.Monitors), zap.String("user", c.User),
		zap.Duration("call_timeout", c.Timeout.D()), zap.String("unrecorded_same_ip", d.cfg.RBD.UnrecordedSameIP))
	return nil
}

// osdStatus is what ceph-osd-up smoke checks ask: this go-ceph connection,
// or, in a netbootd built without Ceph support, the ceph CLI.
func (d *daemon) osdStatus(cluster *goceph.Cluster) boot.OSDStatus {
	if goceph.Available {
		return cluster
	}
	c := d.cfg.Ceph
	return boot.CephCLI{Conf: d.cfg.Resolve(c.ConfFile), Monitors: c.Monitors, User: c.User, Keyring: d.cfg.Resolve(c.Keyring)}
}
