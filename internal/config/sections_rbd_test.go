package config

import (
	"strings"
	"testing"
)

func TestCephSectionValidation(t *testing.T) {
	tests := []struct {
		yaml string
		want string // substring of the error; "" = valid
	}{
		{"ceph:\n  monitors: [\"10.0.0.1:6789\"]\n  keyring: /etc/ceph/admin.keyring\n", ""},
		{"ceph:\n  monitors: [\"[v2:10.0.0.1:3300/0,v1:10.0.0.1:6789/0]\"]\n  keyring: k\n", ""},
		{"ceph:\n  conf_file: /etc/ceph/ceph.conf\n", ""},
		{"ceph:\n  monitors: [\"10.0.0.1\"]\n  keyring: k\n", "monitors[0]"},
		{"ceph:\n  monitors: [\"10.0.0.1:6789\"]\n", "keyring"},
		{"rbd:\n  unrecorded_same_ip: maybe\n", "unrecorded_same_ip"},
	}
	for _, tt := range tests {
		_, err := Parse("test.yaml", t.TempDir(), []byte("server:\n  artifact_root: /srv\n"+tt.yaml))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: unexpected error %v", tt.yaml, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: error %v, want one about %s", tt.yaml, err, tt.want)
		}
	}
}
