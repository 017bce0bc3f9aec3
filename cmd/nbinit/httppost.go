package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// maxAnswer bounds a response body.
const maxAnswer = 1 << 20

// httpPost sends one HTTP/1.0 POST (so the server answers with a length or
// closes the connection; never chunked) and returns status and body.
func httpPost(ctx context.Context, rawURL, contentType string, body []byte) (int, []byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return 0, nil, fmt.Errorf("url %q is not http://host:port/...", rawURL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req := fmt.Sprintf("POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nUser-Agent: nbinit\r\n\r\n",
		u.RequestURI(), u.Host, contentType, len(body))
	if _, err := conn.Write(append([]byte(req), body...)); err != nil {
		return 0, nil, fmt.Errorf("send request: %w", err)
	}
	return readResponse(bufio.NewReader(conn))
}

// readResponse parses an HTTP/1.x response (status line, headers, body by
// Content-Length or until EOF).
func readResponse(r *bufio.Reader) (int, []byte, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, nil, fmt.Errorf("read status line: %w", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return 0, nil, fmt.Errorf("bad status line %q", cut(line, 80))
	}
	status, err := strconv.Atoi(f[1])
	if err != nil || status < 100 || status > 999 {
		return 0, nil, fmt.Errorf("bad status code in %q", cut(line, 80))
	}
	length := -1
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("read headers: %w", err)
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		k, v, _ := strings.Cut(h, ":")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "content-length":
			if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil || length < 0 {
				return 0, nil, fmt.Errorf("bad Content-Length %q", cut(v, 40))
			}
		case "transfer-encoding":
			return 0, nil, errors.New("chunked answer to an HTTP/1.0 request")
		}
	}
	if length > maxAnswer {
		return 0, nil, fmt.Errorf("answer of %d bytes is too large", length)
	}
	var data []byte
	if length >= 0 {
		data = make([]byte, length)
		_, err = io.ReadFull(r, data)
	} else {
		data, err = io.ReadAll(io.LimitReader(r, maxAnswer))
	}
	if err != nil {
		return 0, nil, fmt.Errorf("read body: %w", err)
	}
	return status, data, nil
}
