package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"
)

// QMP is a client of QEMU's machine protocol on a unix socket.
type QMP struct {
	mu   sync.Mutex
	conn net.Conn
	rd   *bufio.Reader
}

// qmpMessage is any message QEMU sends: a greeting, an event, or a reply.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP,omitempty"`
	Event  string          `json:"event,omitempty"`
	Return json.RawMessage `json:"return,omitempty"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error,omitempty"`
}

// parseQMPMessage decodes one line of QMP output.
func parseQMPMessage(line []byte) (qmpMessage, error) {
	var m qmpMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return m, fmt.Errorf("parse qmp message %.80q: %w", line, err)
	}
	return m, nil
}

// DialQMP connects to sock, retrying until timeout (QEMU creates it shortly
// after start), and negotiates capabilities.
func DialQMP(sock string, timeout time.Duration) (*QMP, error) {
	deadline := time.Now().Add(timeout)
	var conn net.Conn
	var err error
	for {
		conn, err = net.Dial("unix", sock)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("dial qmp %s: %w", sock, err)
	}
	q := &QMP{conn: conn, rd: bufio.NewReader(conn)}
	if _, err := q.read(); err != nil { // greeting
		conn.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if _, err := q.Execute("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *QMP) read() (qmpMessage, error) {
	q.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := q.rd.ReadBytes('\n')
	if err != nil {
		return qmpMessage{}, fmt.Errorf("read qmp: %w", err)
	}
	return parseQMPMessage(line)
}

// Execute runs a QMP command and returns its "return" value, skipping events.
func (q *QMP) Execute(cmd string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: encode: %w", cmd, err)
	}
	q.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: write: %w", cmd, err)
	}
	for {
		m, err := q.read()
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case m.Event != "":
			continue
		case m.Error != nil:
			return nil, fmt.Errorf("qmp %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		default:
			return m.Return, nil
		}
	}
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }
