package bench

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options selects what Run measures.
type Options struct {
	Exe          string   // this program (re-run with -serve)
	Servers      []string // default: netboot pin hpa dnsmasq
	Clients      []int    // default 1 10 50
	BlockSizes   []int    // default 512 1468
	FileSize     int64    // throughput file; default 8 MiB
	Reps         int      // repetitions, server order rotated; default 1
	StormClients int      // default 200; 0 with NoStorm skips
	StormScale   float64  // kernel/initramfs scale; default 0.25
	NoMatrix     bool
	NoStorm      bool
	Profile      bool // CPU-profile our server (profiles kept in the work dir)
	Out          io.Writer
	Progress     io.Writer
}

func (o *Options) defaults() {
	if len(o.Servers) == 0 {
		o.Servers = []string{Netboot, Pin, HPA, Dnsmasq}
	}
	if len(o.Clients) == 0 {
		o.Clients = []int{1, 10, 50}
	}
	if len(o.BlockSizes) == 0 {
		o.BlockSizes = []int{512, 1468}
	}
	if o.FileSize == 0 {
		o.FileSize = 8 << 20
	}
	if o.Reps == 0 {
		o.Reps = 1
	}
	if o.StormClients == 0 {
		o.StormClients = 200
	}
	if o.StormScale == 0 {
		o.StormScale = 0.25
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Result is one run of one scenario against one server.
type Result struct {
	Scenario  string
	Server    string
	Wall      time.Duration
	Bytes     int64
	Blocks    int64
	P50, P99  time.Duration
	Failed    int // failed transfers (throughput) or clients (storm)
	Resends   int
	ServerCPU time.Duration
	Errors    map[string]int
}

// MBps is the aggregate throughput.
func (r Result) MBps() float64 { return float64(r.Bytes) / r.Wall.Seconds() / 1e6 }

// Run starts the tree and the servers, runs every scenario with the server
// order rotated per repetition, prints the table and returns every run.
func Run(o Options) ([]Result, error) {
	o.defaults()
	storm := o.StormClients
	if o.NoStorm {
		storm = 0
	}
	tree, err := MakeTree(o.FileSize, storm, o.StormScale)
	if err != nil {
		return nil, err
	}
	defer func() {
		if o.Profile {
			os.RemoveAll(tree.Root) // keep the profiles and logs
		} else {
			tree.Remove()
		}
	}()
	fmt.Fprintf(o.Progress, "tree %s ready\n", tree.Root)
	stopOnSignal(tree)
	defer signal.Reset(os.Interrupt, syscall.SIGTERM)
	var results []Result
	scenarios := o.scenarios(storm)
	loadStart := loadAverage()
	for rep := 0; rep < o.Reps; rep++ {
		for si, sc := range scenarios {
			order := rotate(o.Servers, rep+si)
			for _, name := range order {
				r, err := runOne(o, tree, name, sc, storm)
				if err != nil {
					return results, err
				}
				fmt.Fprintf(o.Progress, "%-28s %-8s %8.1f MB/s wall %6.2fs failed %d cpu %.2fs\n",
					sc.name, name, r.MBps(), r.Wall.Seconds(), r.Failed, r.ServerCPU.Seconds())
				results = append(results, r)
			}
		}
	}
	fmt.Fprintf(o.Out, "load average (1 5 15 min) at start %s, at end %s; %d CPUs\n\n", loadStart, loadAverage(), runtime.NumCPU())
	PrintTable(o.Out, results, o.Servers)
	if o.Profile {
		fmt.Fprintf(o.Out, "\nCPU profiles of the Go servers: %s/profile-*.pprof (kept)\n", tree.Dir)
	}
	return results, nil
}

// loadAverage reads /proc/loadavg: how busy the shared machine was.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// Ratio returns our server's median advantage over peer in scenario:
// throughput ratio, or for the storm completion-time ratio (>1: we are
// faster). ok is false when either was not measured.
func Ratio(results []Result, scenarioPrefix, peer string) (float64, bool) {
	var ours, theirs []Result
	for _, r := range results {
		if !strings.HasPrefix(r.Scenario, scenarioPrefix) {
			continue
		}
		switch r.Server {
		case Netboot:
			ours = append(ours, r)
		case peer:
			theirs = append(theirs, r)
		}
	}
	o, ok1 := median(ours)
	t, ok2 := median(theirs)
	if !ok1 || !ok2 {
		return 0, false
	}
	return o.MBps() / t.MBps(), true
}

var (
	runningMu sync.Mutex
	running   *Peer
)

func setRunning(p *Peer) {
	runningMu.Lock()
	running = p
	runningMu.Unlock()
}

// stopOnSignal stops the server under test (by its PID) and removes the
// tree when the benchmark is interrupted, then exits.
func stopOnSignal(tree *Tree) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-ch; !ok {
			return
		}
		runningMu.Lock()
		if running != nil {
			running.Stop()
		}
		tree.Remove()
		os.Exit(130)
	}()
}

type scenario struct {
	name    string
	clients int
	blksize int
	storm   bool
}

func (o *Options) scenarios(storm int) []scenario {
	var out []scenario
	if !o.NoMatrix {
		for _, b := range o.BlockSizes {
			for _, n := range o.Clients {
				out = append(out, scenario{name: fmt.Sprintf("throughput N=%d blksize=%d", n, b), clients: n, blksize: b})
			}
		}
	}
	if storm > 0 {
		out = append(out, scenario{name: fmt.Sprintf("pi-storm N=%d blksize=1024", storm), clients: storm, blksize: 1024, storm: true})
	}
	return out
}

func rotate(s []string, k int) []string {
	k %= len(s)
	return append(slices.Clone(s[k:]), s[:k]...)
}

// runOne starts a fresh server process, runs the scenario, stops it.
func runOne(o Options, tree *Tree, name string, sc scenario, storm int) (Result, error) {
	profile := ""
	if o.Profile && (name == Netboot || name == Pin) {
		profile = filepath.Join(tree.Dir, fmt.Sprintf("profile-%s-%s.pprof", name, strings.NewReplacer(" ", "_", "=", "").Replace(sc.name)))
	}
	peer, err := StartPeer(name, o.Exe, tree.Root, tree.Dir, storm, profile)
	if err != nil {
		return Result{}, err
	}
	setRunning(peer)
	defer func() { setRunning(nil); peer.Stop() }()
	cpu0 := peer.CPU()
	var r Result
	if sc.storm {
		r = runStorm(peer.Addr, sc, o.StormScale)
	} else {
		r = runThroughput(peer.Addr, sc, o.FileSize)
	}
	r.ServerCPU = peer.CPU() - cpu0
	r.Scenario, r.Server = sc.name, name
	return r, nil
}

// runThroughput: sc.clients clients fetch the same file at once.
func runThroughput(addr netip.AddrPort, sc scenario, size int64) Result {
	file := ThroughputFile(size)
	res := make([]Transfer, sc.clients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res[i] = Fetch(addr, file, ClientConfig{BlockSize: sc.blksize})
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	r := Result{Wall: time.Since(t0), Errors: map[string]int{}}
	var durs []time.Duration
	for _, t := range res {
		r.Bytes += t.Bytes
		r.Blocks += t.Bytes/int64(sc.blksize) + 1
		r.Resends += t.Resends
		durs = append(durs, t.Duration)
		if t.Err != nil {
			r.Failed++
			r.Errors[t.Err.Error()]++
		}
	}
	r.P50, r.P99 = percentiles(durs)
	return r
}

// runStorm: every simulated Pi probes SERIAL/start4.elf (early terminate),
// then fetches its files under its SERIAL/ prefix, all Pis at once.
func runStorm(addr netip.AddrPort, sc scenario, scale float64) Result {
	files := PiFiles(scale)
	type client struct {
		dur   time.Duration
		bytes int64
		res   int
		err   error
	}
	res := make([]client, sc.clients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	cc := ClientConfig{BlockSize: sc.blksize}
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			prefix := PiSerial(i) + "/"
			c := &res[i]
			p := Probe(addr, prefix+"start4.elf", cc)
			c.res += p.Resends
			if c.err = p.Err; c.err == nil {
				for _, f := range files {
					t := Fetch(addr, prefix+f.Name, cc)
					c.bytes += t.Bytes
					c.res += t.Resends
					if t.Err != nil {
						c.err = t.Err
						break
					}
				}
			}
			c.dur = time.Since(t0)
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	r := Result{Wall: time.Since(t0), Errors: map[string]int{}}
	var durs []time.Duration
	for _, c := range res {
		r.Bytes += c.bytes
		r.Blocks += c.bytes / int64(sc.blksize)
		r.Resends += c.res
		durs = append(durs, c.dur)
		if c.err != nil {
			r.Failed++
			msg := c.err.Error()
			if i := strings.IndexByte(msg, '/'); i > 0 {
				msg = msg[i+1:] // drop the serial
			}
			r.Errors[msg]++
		}
	}
	r.P50, r.P99 = percentiles(durs)
	return r
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[min(len(d)-1, len(d)*99/100)]
}

// PrintTable prints medians per scenario and server, with ratios of our
// server's throughput (storm: completion time) to each peer's.
func PrintTable(w io.Writer, results []Result, servers []string) {
	byKey := map[[2]string][]Result{}
	var scenarios []string
	for _, r := range results {
		k := [2]string{r.Scenario, r.Server}
		if _, seen := byKey[k]; !seen && !slices.Contains(scenarios, r.Scenario) {
			scenarios = append(scenarios, r.Scenario)
		}
		byKey[k] = append(byKey[k], r)
	}
	fmt.Fprintf(w, "| scenario | server | runs | MB/s | wall s | p50 s | p99 s | failed | resends | server CPU s | CPU µs/block | netboot ÷ this |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, sc := range scenarios {
		ours, haveOurs := median(byKey[[2]string{sc, Netboot}])
		for _, s := range servers {
			rs := byKey[[2]string{sc, s}]
			if len(rs) == 0 {
				continue
			}
			m, _ := median(rs)
			ratio := "-"
			if haveOurs && s != Netboot {
				if strings.HasPrefix(sc, "pi-storm") {
					ratio = fmt.Sprintf("%.2f× faster", m.Wall.Seconds()/ours.Wall.Seconds())
				} else {
					ratio = fmt.Sprintf("%.2f×", ours.MBps()/m.MBps())
				}
			}
			fails := 0
			for _, r := range rs {
				fails += r.Failed
			}
			fmt.Fprintf(w, "| %s | %s | %d | %.1f | %.2f | %.2f | %.2f | %d | %d | %.2f | %.1f | %s |\n",
				sc, s, len(rs), m.MBps(), m.Wall.Seconds(), m.P50.Seconds(), m.P99.Seconds(), fails, m.Resends,
				m.ServerCPU.Seconds(), float64(m.ServerCPU.Microseconds())/float64(max(m.Blocks, 1)), ratio)
		}
	}
	for _, r := range results {
		if len(r.Errors) > 0 {
			fmt.Fprintf(w, "errors %s / %s: %v\n", r.Scenario, r.Server, r.Errors)
		}
	}
}

// median returns the run with the median throughput.
func median(rs []Result) (Result, bool) {
	if len(rs) == 0 {
		return Result{}, false
	}
	s := slices.Clone(rs)
	sort.Slice(s, func(i, j int) bool { return s[i].MBps() < s[j].MBps() })
	return s[len(s)/2], true
}
