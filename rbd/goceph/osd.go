//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"context"
	"encoding/json"
	"fmt"
)

// OSDUpIn reports whether OSD id is up and in, from the mon command
// `osd dump` (rados_mon_command). It implements boot.OSDStatus for the
// ceph-osd-up smoke check.
func (c *Cluster) OSDUpIn(ctx context.Context, id int) (up, in bool, err error) {
	out, err := c.monCommand(ctx, "osd dump", []byte(`{"prefix":"osd dump","format":"json"}`))
	if err != nil {
		return false, false, err
	}
	var dump struct {
		OSDs []struct {
			OSD int `json:"osd"`
			Up  int `json:"up"`
			In  int `json:"in"`
		} `json:"osds"`
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		return false, false, fmt.Errorf("osd dump: parse: %w", err)
	}
	for _, o := range dump.OSDs {
		if o.OSD == id {
			return o.Up == 1, o.In == 1, nil
		}
	}
	return false, false, fmt.Errorf("osd dump: osd.%d does not exist", id)
}
