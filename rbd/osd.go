package rbd

import (
	"encoding/json"
	"fmt"
)

// ParseOSDDump reads osd id's up and in flags from `ceph osd dump -f json`.
func ParseOSDDump(data []byte, id int) (up, in bool, err error) {
	var dump struct {
		OSDs []struct {
			OSD int `json:"osd"`
			Up  int `json:"up"`
			In  int `json:"in"`
		} `json:"osds"`
	}
	if err := json.Unmarshal(data, &dump); err != nil {
		return false, false, fmt.Errorf("parse osd dump: %w", err)
	}
	for _, o := range dump.OSDs {
		if o.OSD == id {
			return o.Up == 1, o.In == 1, nil
		}
	}
	return false, false, fmt.Errorf("parse osd dump: osd.%d does not exist", id)
}
