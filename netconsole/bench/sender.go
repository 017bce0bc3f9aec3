// Package bench measures the netconsole collector end to end: a paced
// sender process (this test binary re-executed) plays 100 hosts, each on
// its own loopback address 127.0.0.2…127.0.0.101, against netconsole.Server
// with parsing, attribution and SQLite storage on, and, when $NETCONSD
// names a netconsd binary (see netconsd.sh), against Meta's netconsd in
// the same run with the same sender.
package bench

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/net/ipv4"
)

// senderConfig is passed to the sender process in its environment.
type senderConfig struct {
	Dst   string        `json:"dst"`
	Hosts int           `json:"hosts"`
	First int           `json:"first"` // index of the first simulated host
	Rate  float64       `json:"rate"`  // datagrams/s over all hosts; 0: as fast as possible
	Dur   time.Duration `json:"dur"`
	Burst int           `json:"burst"`
	Text  int           `json:"text"`
}

// senderResult is what the sender prints on stdout.
type senderResult struct {
	Sent     int64   `json:"sent"`
	Achieved float64 `json:"achieved"`
	Errors   int64   `json:"errors"`
}

const senderEnv = "NCBENCH_SENDER"

// hostAddr is the loopback source address of simulated host i.
func hostAddr(i int) net.IP { return net.IPv4(127, 0, byte((i+2)>>8), byte(i+2)) }

// runSender is the sender process's main.
func runSender() int {
	var cfg senderConfig
	if err := json.Unmarshal([]byte(os.Getenv(senderEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "sender: bad config:", err)
		return 2
	}
	res, err := send(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

type simHost struct {
	pc  *ipv4.PacketConn
	seq uint64
	id  int
}

func send(cfg senderConfig) (senderResult, error) {
	raddr, err := net.ResolveUDPAddr("udp4", cfg.Dst)
	if err != nil || !raddr.IP.IsLoopback() {
		return senderResult{}, fmt.Errorf("destination %q must be a loopback address: %v", cfg.Dst, err)
	}
	hosts := make([]simHost, cfg.Hosts)
	for i := range hosts {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: hostAddr(cfg.First + i)}, raddr)
		if err != nil {
			return senderResult{}, fmt.Errorf("socket for host %d: %w", i, err)
		}
		defer c.Close()
		c.SetWriteBuffer(1 << 20)
		hosts[i] = simHost{pc: ipv4.NewPacketConn(c), id: cfg.First + i}
	}
	pad := make([]byte, cfg.Text)
	for i := range pad {
		pad[i] = 'a' + byte(i%26)
	}
	msgs := make([]ipv4.Message, cfg.Burst)
	bufs := make([][]byte, cfg.Burst)
	for i := range msgs {
		bufs[i] = make([]byte, 0, cfg.Text+64)
		msgs[i].Buffers = [][]byte{nil}
	}
	var sent, errs int64
	start := time.Now()
	end := start.Add(cfg.Dur)
	hi := 0
	for now := start; now.Before(end); now = time.Now() {
		target := int64(now.Sub(start).Seconds() * cfg.Rate)
		if cfg.Rate <= 0 {
			target = sent + int64(cfg.Burst)*int64(cfg.Hosts)
		}
		if sent >= target {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		for sent < target {
			h := &hosts[hi]
			k := int(min(int64(cfg.Burst), target-sent))
			ts := uint64(time.Since(start).Microseconds()) + 1
			for j := 0; j < k; j++ {
				b := append(bufs[j][:0], "6,"...)
				b = strconv.AppendUint(b, h.seq+uint64(j), 10)
				b = append(b, ',')
				b = strconv.AppendUint(b, ts, 10)
				b = append(b, ",-;host"...)
				b = strconv.AppendInt(b, int64(h.id), 10)
				b = append(b, ' ')
				b = append(b, pad[:cfg.Text-8]...)
				b = append(b, '\n')
				bufs[j] = b
				msgs[j].Buffers[0] = b
			}
			n, err := h.pc.WriteBatch(msgs[:k], 0)
			if err != nil {
				errs++
			}
			h.seq += uint64(n)
			sent += int64(n)
			hi = (hi + 1) % len(hosts)
		}
	}
	el := time.Since(start).Seconds()
	return senderResult{Sent: sent, Achieved: float64(sent) / el, Errors: errs}, nil
}
