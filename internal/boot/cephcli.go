package boot

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"netboot/rbd"
)

// CephCLI implements OSDStatus with the ceph command-line tool
// (`ceph osd dump -f json`), for deployments and tests without the go-ceph
// connection of the rbd part.
type CephCLI struct {
	Conf     string   // ceph.conf; "" uses the CLI's default
	Monitors []string // monitor addresses (-m); empty: from the conf
	User     string   // client name without "client."; "" uses the CLI's default
	Keyring  string
	Binary   string // default "ceph"
}

// OSDUpIn implements OSDStatus.
func (c CephCLI) OSDUpIn(ctx context.Context, id int) (up, in bool, err error) {
	bin := c.Binary
	if bin == "" {
		bin = "ceph"
	}
	args := []string{"--connect-timeout", "10"}
	if c.Conf != "" {
		args = append(args, "-c", c.Conf)
	}
	if len(c.Monitors) > 0 {
		args = append(args, "-m", strings.Join(c.Monitors, ","))
	}
	if c.User != "" {
		args = append(args, "--id", c.User)
	}
	if c.Keyring != "" {
		args = append(args, "--keyring", c.Keyring)
	}
	cmd := exec.CommandContext(ctx, bin, append(args, "osd", "dump", "-f", "json")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return false, false, fmt.Errorf("ceph osd dump: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return rbd.ParseOSDDump(stdout.Bytes(), id)
}
