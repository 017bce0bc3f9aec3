package initramfs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"netboot/internal/testenv"
	"netboot/test/harness"
)

const kernelArgs = "loglevel=7 printk.devkmsg=on panic=1"

// TestAmd64RefusedPrepare boots the amd64 image under qemu-system-x86_64.
func TestAmd64RefusedPrepare(t *testing.T) {
	testenv.Short(t)
	harness.RequireQEMU(t)
	vmlinuz, modules := debianKernel(t, "amd64")
	ns := newNetns(t)
	img := buildImage(t, "amd64", modules, hostConfig(ns))
	c := startCollector(t, ns)
	dir := harness.ArtifactDir(t)
	api := startPeers(t, ns, dir)
	vm := harness.StartVM(t, harness.VMConfig{Name: "nbinit-amd64", Netns: ns, Dir: dir, MAC: guestMAC, NoReboot: true,
		Kernel: vmlinuz, Initrd: img, Append: "console=ttyS0 " + kernelArgs})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	checkModules(t, vm.Expect(t, ctx, `nbinit: stage=init status=ok`).Text)
	checkRefusalFlow(t, ctx, c, api)
	stillAlive(t, vm.Proc, vm.Serial, 3*time.Second)
}

// TestArm64ReachesNetwork boots the arm64 image under qemu-system-aarch64
// -M virt (software emulation) with Debian's arm64 kernel and modules.
func TestArm64ReachesNetwork(t *testing.T) {
	testenv.Short(t)
	testenv.RequireTools(t, "qemu-system-aarch64")
	vmlinuz, modules := debianKernel(t, "arm64")
	ns := newNetns(t)
	img := buildImage(t, "arm64", modules, hostConfig(ns))
	c := startCollector(t, ns)
	dir := harness.ArtifactDir(t)
	api := startPeers(t, ns, dir)
	proc, serial := startAarch64(t, ns, dir, vmlinuz, img)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	l, err := serial.Expect(ctx, regexpMust(`nbinit: stage=init status=ok`))
	if err != nil {
		t.Fatalf("%v\n%s", err, serial.Tail(40))
	}
	checkModules(t, l.Text)
	checkRefusalFlow(t, ctx, c, api)
	stillAlive(t, proc, serial, 3*time.Second)
}

// startAarch64 runs qemu-system-aarch64 -M virt inside ns on a new tap.
func startAarch64(t *testing.T, ns *harness.Netns, dir, vmlinuz, initrd string) (*harness.Proc, *harness.Serial) {
	t.Helper()
	tap := ns.AddTap(t)
	args := []string{"-M", "virt", "-cpu", "cortex-a72", "-m", "1024", "-smp", "2",
		"-nographic", "-serial", "stdio", "-monitor", "none", "-no-reboot",
		"-kernel", vmlinuz, "-initrd", initrd, "-append", "console=ttyAMA0 " + kernelArgs,
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=" + guestMAC + ",romfile=",
		"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0"}
	cmd := ns.Command(context.Background(), "qemu-system-aarch64", args...)
	logPath := filepath.Join(dir, "nbinit-arm64-serial.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(dir, "nbinit-arm64-qemu.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	serial := harness.NewSerial(time.Now(), logFile)
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	proc := harness.StartProc(t, "qemu-aarch64", cmd, "")
	go func() {
		defer close(done)
		serial.ReadFrom(stdout)
		logFile.Close()
		stderr.Close()
	}()
	t.Logf("arm64 vm: pid %d, serial log %s (%s)", proc.PID(), logPath, strings.Join(cmd.Args, " "))
	return proc, serial
}
