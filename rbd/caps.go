package rbd

import (
	"fmt"
	"regexp"
)

// HostEntity returns the cephx entity of host's own user.
func HostEntity(host string) string { return "client.netboot-" + host }

var safeName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// HostCaps returns the caps of a host's user: only its own image, whose
// internal id is imageID.
func HostCaps(img Image, imageID string) (Caps, error) {
	for _, s := range []string{img.Pool, img.Name, imageID} {
		if !safeName.MatchString(s) {
			return nil, fmt.Errorf("host caps: unsafe name %q in pool/image/id", s)
		}
	}
	p := "pool=" + img.Pool
	osd := fmt.Sprintf("allow rx %[1]s object_prefix rbd_info, allow rx %[1]s object_prefix rbd_id.%[2]s, allow rwx %[1]s object_prefix rbd_header.%[3]s, "+
		"allow rwx %[1]s object_prefix rbd_data.%[3]s, allow rwx %[1]s object_prefix rbd_object_map.%[3]s", p, img.Name, imageID)
	return Caps{"mon": "profile rbd", "osd": osd}, nil
}
