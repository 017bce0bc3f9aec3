package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"netboot/internal/clock"
	"netboot/internal/store/sqlite"
	"netboot/netconsole"
)

func TestMain(m *testing.M) {
	if os.Getenv(senderEnv) != "" {
		os.Exit(runSender())
	}
	os.Exit(m.Run())
}

// defaultNetconsd is where netconsd.sh builds netconsd.
const defaultNetconsd = "/tmp/netconsd-bench/netconsd"

const (
	numHosts = 100
	textLen  = 120 // ~150-byte datagrams, as in the recorded baseline
)

// rcvBuf is both receivers' SO_RCVBUF: 4 MiB as in the recorded baseline,
// or $NCBENCH_RCVBUF bytes.
var rcvBuf = envInt("NCBENCH_RCVBUF", 4<<20)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// stepResult is one receiver at one offered rate.
type stepResult struct {
	Receiver  string
	Target    float64
	Achieved  float64
	Sent      int64
	Received  int64 // datagrams the receiver read
	Stored    int64 // lines in the store afterwards (ours)
	Drops     int64 // kernel receive-buffer drops reported (ours: SO_RXQ_OVFL)
	CPUus     float64
	PeakRSSMB float64
}

func (r stepResult) loss() int64 { return r.Sent - r.Received }

func (r stepResult) String() string {
	return fmt.Sprintf("%-9s target %7.0f/s achieved %7.0f/s sent %8d received %8d loss %6d (%.2f%%) kernel-drops %6d stored %8d cpu %.2f µs/dgram rss %.0f MiB",
		r.Receiver, r.Target, r.Achieved, r.Sent, r.Received, r.loss(), 100*float64(r.loss())/float64(max(r.Sent, 1)),
		r.Drops, r.Stored, r.CPUus, r.PeakRSSMB)
}

// runSenders runs n sender processes against dst and sums their results.
func runSenders(b *testing.B, dst string, rate float64, dur time.Duration, n int) senderResult {
	b.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total senderResult
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each sender plays its own share of the hosts, so that every
			// host's stream stays one monotonic boot.
			per := numHosts / n
			cfg, _ := json.Marshal(senderConfig{Dst: dst, Hosts: per, First: i * per, Rate: rate / float64(n), Dur: dur, Burst: envInt("NCBENCH_BURST", 8), Text: textLen})
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), senderEnv+"="+string(cfg))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, os.Stderr
			if err := cmd.Run(); err != nil {
				b.Errorf("sender: %v", err)
				return
			}
			var r senderResult
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				b.Errorf("sender output %q: %v", out.String(), err)
				return
			}
			mu.Lock()
			total.Sent += r.Sent
			total.Achieved += r.Achieved
			total.Errors += r.Errors
			mu.Unlock()
		}()
	}
	wg.Wait()
	return total
}

func cpuSelf() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssMB reads VmRSS of a process ("self" or a pid) in MiB.
func rssMB(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseFloat(string(m[1]), 64)
	return kb / 1024
}

// peakRSS samples rss() until stop is closed and returns the maximum.
func peakRSS(pid string, stop <-chan struct{}) <-chan float64 {
	out := make(chan float64, 1)
	go func() {
		peak := rssMB(pid)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				out <- max(peak, rssMB(pid))
				return
			case <-t.C:
				peak = max(peak, rssMB(pid))
			}
		}
	}()
	return out
}

func hostResolver() netconsole.Resolver {
	m := map[netip.Addr]string{}
	for i := 0; i < numHosts; i++ {
		a, _ := netip.AddrFromSlice(hostAddr(i).To4())
		m[a] = fmt.Sprintf("host%03d", i)
	}
	return netconsole.ResolverFunc(func(ip netip.Addr) (string, bool) {
		h, ok := m[ip]
		return h, ok
	})
}

// waitQuiet waits until counter stops moving (the receiver drained its
// socket).
func waitQuiet(counter func() int64) {
	last := counter()
	for {
		time.Sleep(300 * time.Millisecond)
		c := counter()
		if c == last {
			return
		}
		last = c
	}
}

// runOurs measures netconsole.Server with SQLite storage at one rate.
func runOurs(b *testing.B, rate float64, dur time.Duration, senders int) stepResult {
	b.Helper()
	dir := b.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "netboot.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	m, err := netconsole.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	s, err := netconsole.New(netconsole.Config{Listen: "127.0.0.1:0", RcvBuf: rcvBuf, Coalesce: envDuration("NCBENCH_COALESCE", 0), Backlog: envInt("NCBENCH_BACKLOG", 0)},
		netconsole.Deps{Log: zap.NewNop(), Clock: clock.Real{}, Resolver: hostResolver(), Store: db, Metrics: m, Broker: netconsole.NewBroker(m)})
	if err != nil {
		b.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background()) }()
	stop := make(chan struct{})
	peak := peakRSS("self", stop)
	cpu0 := cpuSelf()
	sr := runSenders(b, s.Addr().String(), rate, dur, senders)
	waitQuiet(func() int64 { return int64(s.Received()) })
	s.Close()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	cpu := cpuSelf() - cpu0
	close(stop)
	st, err := db.LogStats(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	r := stepResult{Receiver: "netbootd", Target: rate, Achieved: sr.Achieved, Sent: sr.Sent, Received: int64(s.Received()),
		Stored: st.Lines, Drops: int64(s.KernelDrops()), PeakRSSMB: <-peak}
	r.CPUus = float64(cpu.Microseconds()) / float64(max(r.Received, 1))
	return r
}

// runNetconsd measures netconsd (-l 1 -w 2, no output module: ncrx parse
// and drop) at one rate with the same receive buffer (NETCONSD_RCVBUF,
// see netconsd.sh).
func runNetconsd(b *testing.B, bin string, rate float64, dur time.Duration) stepResult {
	b.Helper()
	port := freeUDPPort(b)
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-u", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), "NETCONSD_RCVBUF="+strconv.Itoa(rcvBuf))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer cmd.Process.Kill()
	time.Sleep(300 * time.Millisecond) // let it bind
	cpu0 := procCPU(pid)
	sr := runSenders(b, "127.0.0.1:"+strconv.Itoa(port), rate, dur, envInt("NCBENCH_SENDERS", 1))
	time.Sleep(time.Second) // drain
	cpu := procCPU(pid) - cpu0
	rss := rssMB(strconv.Itoa(pid))
	drops := procUDPDrops(port)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	got := regexp.MustCompile(`Total messages processed by workers: (\d+)`).FindStringSubmatch(logs.String())
	if got == nil {
		b.Fatalf("netconsd printed no totals:\n%s", logs.String())
	}
	n, _ := strconv.ParseInt(got[1], 10, 64)
	r := stepResult{Receiver: "netconsd", Target: rate, Achieved: sr.Achieved, Sent: sr.Sent, Received: n, Drops: drops, PeakRSSMB: rss}
	r.CPUus = float64(cpu.Microseconds()) / float64(max(n, 1))
	return r
}

// procUDPDrops sums the kernel's drop counter of the UDP sockets bound to
// port (/proc/net/udp and udp6, last column), -1 if none is found.
func procUDPDrops(port int) int64 {
	want := fmt.Sprintf(":%04X ", port)
	total, found := int64(0), false
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 13 || !strings.Contains(fields[1]+" ", want) {
				continue
			}
			d, _ := strconv.ParseInt(fields[len(fields)-1], 10, 64)
			total, found = total+d, true
		}
	}
	if !found {
		return -1
	}
	return total
}

func freeUDPPort(b *testing.B) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// procCPU is a process's user+system CPU from /proc/pid/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

// BenchmarkIngest prints, for each offered rate, both receivers' loss and
// CPU per datagram, then the highest loss-free rate of each and the ratio,
// then netbootd's RSS under a flood of ten times the 300k/s target.
// $NCBENCH_RATES (comma separated) and $NCBENCH_DUR change the steps.
func BenchmarkIngest(b *testing.B) {
	if b.N > 1 {
		b.Skip("one measured run is enough")
	}
	rates := []float64{100e3, 200e3, 300e3, 400e3}
	if v := os.Getenv("NCBENCH_RATES"); v != "" {
		rates = nil
		for _, f := range strings.Split(v, ",") {
			r, _ := strconv.ParseFloat(f, 64)
			rates = append(rates, r)
		}
	}
	dur := envDuration("NCBENCH_DUR", 4*time.Second)
	netconsd := os.Getenv("NETCONSD")
	if netconsd == "" {
		if _, err := os.Stat(defaultNetconsd); err == nil {
			netconsd = defaultNetconsd
		} else {
			b.Log("NETCONSD unset and " + defaultNetconsd + " missing: netconsd not measured (build it with netconsole/bench/netconsd.sh)")
		}
	}
	best := map[string]float64{}
	var ours []stepResult
	for _, rate := range rates {
		r := runOurs(b, rate, dur, envInt("NCBENCH_SENDERS", 1))
		b.Log(r)
		ours = append(ours, r)
		// A step counts only when the sender offered (almost) its target:
		// on a busy box it cannot, and the step then tested a lower rate.
		if r.loss() == 0 && r.Stored == r.Received && r.Achieved >= 0.9*rate {
			best["netbootd"] = max(best["netbootd"], r.Achieved)
		}
		if netconsd != "" {
			n := runNetconsd(b, netconsd, rate, dur)
			b.Log(n)
			if n.loss() == 0 && n.Achieved >= 0.9*rate {
				best["netconsd"] = max(best["netconsd"], n.Achieved)
			}
		}
	}
	flood := runOurs(b, 0, dur, 2)
	b.Logf("flood (2 unpaced senders, target 10x300k/s): %v", flood)
	ratio := "n/a"
	if best["netconsd"] > 0 {
		ratio = fmt.Sprintf("%.2f", best["netbootd"]/best["netconsd"])
	}
	b.Logf("highest loss-free rate (steps where the sender reached >= 90%% of its target): netbootd %.0f/s, netconsd %.0f/s (ratio %s)",
		best["netbootd"], best["netconsd"], ratio)
	var cpu float64
	for _, r := range ours {
		cpu = max(cpu, r.CPUus)
	}
	b.ReportMetric(best["netbootd"], "zero-loss-dgram/s")
	b.ReportMetric(best["netconsd"], "netconsd-zero-loss-dgram/s")
	b.ReportMetric(cpu, "max-cpu-µs/dgram")
	b.ReportMetric(flood.PeakRSSMB, "flood-peak-rss-MiB")
	b.ReportMetric(float64(flood.Drops), "flood-kernel-drops")
}
