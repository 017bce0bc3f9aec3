package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// APIClient calls the host-bound netbootd endpoints nbinit uses. It speaks
// plain HTTP through httpPost (not net/http, which would pull TLS and
// x509 into the initramfs and cost ~1 MiB).
type APIClient struct {
	Base    string // http://ip:port
	Host    string
	Timeout time.Duration
}

// NewAPIClient returns a client with a bounded per-request timeout.
func NewAPIClient(base, host string) *APIClient {
	return &APIClient{Base: strings.TrimRight(base, "/"), Host: host, Timeout: 30 * time.Second}
}

// StageReport is the body of POST /api/v1/hosts/{name}/stages.
type StageReport struct {
	Stage   string            `json:"stage"`
	OK      bool              `json:"ok"`
	Message string            `json:"message,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// PrepareResponse is the 200 answer of root/prepare. Two shapes are
// accepted: the flat one of the original contract, and netbootd's
// (rbd.PrepareAnswer) with the map parameters under "map" and the actions
// as "result"."steps"; normalize folds the latter into the former.
type PrepareResponse struct {
	Monitors   []string          `json:"monitors"`
	Pool       string            `json:"pool"`
	Image      string            `json:"image"`
	User       string            `json:"user"`
	Key        string            `json:"key"`
	MapOptions string            `json:"map_options"`
	Actions    []json.RawMessage `json:"actions"`

	Map *struct {
		Monitors []string `json:"monitors"`
		Pool     string   `json:"pool"`
		Image    string   `json:"image"`
		User     string   `json:"user"`
		Key      string   `json:"key"`
		Options  []string `json:"options"`
	} `json:"map,omitempty"`
	Result *struct {
		Steps []json.RawMessage `json:"steps"`
	} `json:"result,omitempty"`
}

func (p *PrepareResponse) normalize() {
	if m := p.Map; m != nil {
		if len(p.Monitors) == 0 {
			p.Monitors = m.Monitors
		}
		p.Pool, p.Image, p.User, p.Key = or(p.Pool, m.Pool), or(p.Image, m.Image), or(p.User, m.User), or(p.Key, m.Key)
		if p.MapOptions == "" {
			p.MapOptions = strings.Join(m.Options, ",")
		}
	}
	if p.Result != nil && p.Actions == nil {
		p.Actions = p.Result.Steps
	}
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (p *PrepareResponse) validate() error {
	var missing []string
	for name, v := range map[string]string{"pool": p.Pool, "image": p.Image, "user": p.User, "key": p.Key} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(p.Monitors) == 0 {
		missing = append(missing, "monitors")
	}
	if len(missing) > 0 {
		return fmt.Errorf("root/prepare answer lacks %s", strings.Join(missing, ", "))
	}
	for _, s := range append([]string{p.Pool, p.Image, p.User, p.Key, p.MapOptions}, p.Monitors...) {
		if strings.ContainsAny(s, " \t\n") {
			return fmt.Errorf("root/prepare answer has whitespace in a field: %q", s)
		}
	}
	return nil
}

// MapSpec is the string written to /sys/bus/rbd/add_single_major:
// "<mons> name=<user>,secret=<key>[,<opts>] <pool> <image> -".
func (p *PrepareResponse) MapSpec() string {
	opts := "name=" + p.User + ",secret=" + p.Key
	if p.MapOptions != "" {
		opts += "," + p.MapOptions
	}
	return strings.Join(p.Monitors, ",") + " " + opts + " " + p.Pool + " " + p.Image + " -"
}

// Mapped is the body of POST root/mapped.
type Mapped struct {
	ClientAddr string `json:"client_addr"`
	ClientID   string `json:"client_id"`
	Device     string `json:"device"`
}

// RefusedError is a 4xx/5xx answer with the server's reason.
type RefusedError struct {
	Status int
	Err    string `json:"error"`
	Reason string `json:"reason"`
}

func (e *RefusedError) Error() string {
	s := fmt.Sprintf("refused (%d): %s", e.Status, e.Err)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// PostStage reports one stage.
func (c *APIClient) PostStage(ctx context.Context, r StageReport) error {
	return c.post(ctx, "stages", r, nil)
}

// Prepare asks for the root hand-over.
func (c *APIClient) Prepare(ctx context.Context) (*PrepareResponse, error) {
	var p PrepareResponse
	if err := c.post(ctx, "root/prepare", struct{}{}, &p); err != nil {
		return nil, err
	}
	p.normalize()
	return &p, nil
}

// Mapped reports the kernel client that now holds the image.
func (c *APIClient) Mapped(ctx context.Context, m Mapped) error {
	return c.post(ctx, "root/mapped", m, nil)
}

func (c *APIClient) post(ctx context.Context, path string, body, out any) error {
	u := c.Base + "/api/v1/hosts/" + url.PathEscape(c.Host) + "/" + path
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	status, data, err := httpPost(ctx, u, "application/json", b)
	if err != nil {
		return fmt.Errorf("post %s: %w", path, err)
	}
	if status/100 != 2 {
		re := &RefusedError{Status: status}
		if json.Unmarshal(data, re) != nil || re.Err == "" {
			re.Err = strings.TrimSpace(cut(string(data), 200))
		}
		return fmt.Errorf("post %s: %w", path, re)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("post %s: decode answer: %w", path, err)
	}
	return nil
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
