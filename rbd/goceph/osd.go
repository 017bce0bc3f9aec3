//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"context"

	"netboot/rbd"
)

// OSDUpIn reports whether OSD id is up and in, from the mon command
// `osd dump` (rados_mon_command). It implements boot.OSDStatus for the
// ceph-osd-up smoke check.
func (c *Cluster) OSDUpIn(ctx context.Context, id int) (up, in bool, err error) {
	out, err := c.monCommand(ctx, "osd dump", []byte(`{"prefix":"osd dump","format":"json"}`))
	if err != nil {
		return false, false, err
	}
	return rbd.ParseOSDDump(out, id)
}
