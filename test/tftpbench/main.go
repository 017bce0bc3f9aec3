// Command tftpbench measures TFTP throughput and a Raspberry Pi boot storm
// against our server, bare pin/tftp, tftp-hpa and dnsmasq in one run, and
// prints a table with ratios (see pxe/bench). `make bench` runs it; it
// needs root (dnsmasq's TFTP port is always 69, on 127.0.0.1 only) and the
// peers from scripts/packages.txt.
//
//	go run ./test/tftpbench                       # full matrix + 200-Pi storm
//	go run ./test/tftpbench -no-storm -clients 50 -blksize 1468 -reps 3
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"netboot/pxe/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tftpbench:", err)
		os.Exit(1)
	}
}

func run() error {
	if served, err := bench.ServeFromEnv(); served {
		return err
	}
	var (
		servers = flag.String("servers", "netboot,pin,hpa,dnsmasq", "servers to compare")
		clients = flag.String("clients", "1,10,50", "concurrent clients of the throughput runs")
		blksize = flag.String("blksize", "512,1468", "block sizes of the throughput runs")
		size    = flag.Int64("size", 8<<20, "bytes of the throughput file")
		reps    = flag.Int("reps", 1, "repetitions (server order rotated)")
		storm   = flag.Int("storm", 200, "simulated Raspberry Pis in the boot storm")
		scale   = flag.Float64("storm-scale", 0.25, "kernel (8 MiB) and initramfs (20 MiB) size factor in the storm")
		noStorm = flag.Bool("no-storm", false, "skip the Pi boot storm")
		noMat   = flag.Bool("no-matrix", false, "skip the throughput matrix")
		profile = flag.Bool("profile", false, "CPU-profile our server in every run")
	)
	flag.Parse()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cl, err := ints(*clients)
	if err != nil {
		return err
	}
	bs, err := ints(*blksize)
	if err != nil {
		return err
	}
	_, err = bench.Run(bench.Options{Exe: exe, Servers: strings.Split(*servers, ","), Clients: cl, BlockSizes: bs,
		FileSize: *size, Reps: *reps, StormClients: *storm, StormScale: *scale, NoStorm: *noStorm,
		NoMatrix: *noMat, Profile: *profile, Out: os.Stdout, Progress: os.Stderr})
	return err
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("bad number %q: %w", f, err)
		}
		out = append(out, n)
	}
	return out, nil
}
