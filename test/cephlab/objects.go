package cephlab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Pool is the pool created at bootstrap.
func (c *Cluster) Pool() string { return c.cfg.Pool }

// CreateImage creates pool/name (size like "64M") with layering and
// exclusive-lock, as root images have.
func (c *Cluster) CreateImage(t testing.TB, pool, name, size string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Rbd(ctx, "create", pool+"/"+name, "--size", size, "--image-feature", "layering,exclusive-lock"); err != nil {
		t.Fatalf("cephlab: create image: %v", err)
	}
}

// CreateUser creates (or fetches) a cephx user with caps (service, cap
// pairs) and writes its keyring and a ceph.conf for it into the cluster
// directory. It returns the key and the conf path.
func (c *Cluster) CreateUser(t testing.TB, entity string, caps ...string) (key, conf string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"auth", "get-or-create", entity}, caps...)
	if _, err := c.Ceph(ctx, args...); err != nil {
		t.Fatalf("cephlab: create user: %v", err)
	}
	key, err := c.Key(ctx, entity)
	if err != nil {
		t.Fatalf("cephlab: %v", err)
	}
	conf, err = c.ClientConf(entity, key)
	if err != nil {
		t.Fatalf("cephlab: %v", err)
	}
	return key, conf
}

// Key returns entity's cephx key.
func (c *Cluster) Key(ctx context.Context, entity string) (string, error) {
	out, err := c.Ceph(ctx, "auth", "get-key", entity, "--format", "json")
	if err != nil {
		return "", fmt.Errorf("get key of %s: %w", entity, err)
	}
	var v struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return "", fmt.Errorf("get key of %s: %w", entity, err)
	}
	return v.Key, nil
}

// ClientConf writes a minimal ceph.conf + keyring for entity with key and
// returns the conf path.
func (c *Cluster) ClientConf(entity, key string) (string, error) {
	kr := filepath.Join(c.cfg.Dir, entity+".keyring")
	if err := os.WriteFile(kr, fmt.Appendf(nil, "[%s]\n\tkey = %s\n", entity, key), 0o600); err != nil {
		return "", fmt.Errorf("client conf: %w", err)
	}
	conf := filepath.Join(c.cfg.Dir, entity+".conf")
	body := fmt.Sprintf("[global]\nmon host = %s\nauth client required = cephx\nms bind ipv6 = false\n[client]\nkeyring = %s\nlog file = %s/log/$name.$pid.log\nadmin socket =\n",
		c.MonHost(), kr, c.cfg.Dir)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return "", fmt.Errorf("client conf: %w", err)
	}
	return conf, nil
}

// AdminKey returns client.admin's key.
func (c *Cluster) AdminKey(ctx context.Context) (string, error) { return c.Key(ctx, "client.admin") }
