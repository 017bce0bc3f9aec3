package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// client calls netbootd's JSON API.
type client struct {
	base  string
	token string
	http  *http.Client
}

func newClient() *client {
	return &client{base: strings.TrimRight(global.server, "/"), token: global.token, http: &http.Client{Timeout: 0}}
}

// apiError is a non-2xx answer from netbootd.
type apiError struct {
	Status int
	Msg    string `json:"error"`
	Reason string `json:"reason"`
}

func (e *apiError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("server answered %d: %s (%s)", e.Status, e.Msg, e.Reason)
	}
	return fmt.Sprintf("server answered %d: %s", e.Status, e.Msg)
}

// do sends a request and decodes a JSON answer into out (if non-nil).
func (c *client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	resp, err := c.send(ctx, method, path, query, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// send performs the request and returns the open response of a 2xx answer;
// any other status becomes an *apiError.
func (c *client) send(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask netbootd at %s: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		ae := &apiError{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, ae) != nil || ae.Msg == "" {
			ae.Msg = strings.TrimSpace(string(b))
		}
		return nil, ae
	}
	return resp, nil
}

// isAPIError reports whether err is an answer from netbootd (as opposed to
// not reaching it).
func isAPIError(err error) bool {
	var ae *apiError
	return errors.As(err, &ae)
}

// parseSince accepts a duration back from now ("10m") or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want a duration like 10m or an RFC 3339 time", s)
	}
	return t, nil
}
