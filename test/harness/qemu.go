package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"netboot/internal/testenv"
)

// AccelEnv overrides QEMU's accelerator (default "tcg", the software
// emulation CI has; "kvm" where /dev/kvm works).
const AccelEnv = "NETBOOT_QEMU_ACCEL"

// OVMFPath is Debian's (ovmf package) x86-64 UEFI firmware.
const OVMFPath = "/usr/share/ovmf/OVMF.fd"

// VMConfig describes an x86-64 QEMU VM. Zero values mean the documented defaults.
type VMConfig struct {
	// Name names the artifact files (<Name>-serial.log, <Name>-qemu.log); default "vm".
	Name string
	// Netns runs QEMU inside this namespace; nil means no network device.
	Netns *Netns
	// Tap is the tap device in Netns; empty means a new one (Netns.AddTap).
	Tap string
	// MAC of the NIC; default 52:54:00:12:34:56.
	MAC string
	// NIC is the QEMU network device; default virtio-net-pci (its ROM is iPXE
	// from Debian's ipxe-qemu).
	NIC string
	// MemoryMiB defaults to 1024, SMP to 1.
	MemoryMiB int
	SMP       int
	// Accel defaults to $NETBOOT_QEMU_ACCEL or "tcg".
	Accel string
	// BootNet boots from the NIC's option ROM (-boot n): real iPXE.
	BootNet bool
	// Kernel, Initrd, Append: direct kernel boot (-kernel/-initrd/-append).
	Kernel, Initrd, Append string
	// UEFI uses OVMF instead of SeaBIOS.
	UEFI bool
	// NoRNG leaves out the virtio-rng device (present by default: without it
	// the guest waits ~1 s for entropy before its first Ceph connection).
	NoRNG bool
	// NoReboot makes QEMU exit when the guest reboots or powers off
	// (-no-reboot). QMP system_reset then also ends QEMU, so leave it off for
	// reset tests.
	NoReboot bool
	// Dir keeps the serial log and QEMU's stderr; default ArtifactDir(t).
	Dir string
	// ExtraArgs are appended to QEMU's command line.
	ExtraArgs []string
}

func (c VMConfig) withDefaults(t testing.TB) VMConfig {
	if c.Name == "" {
		c.Name = "vm"
	}
	if c.MAC == "" {
		c.MAC = "52:54:00:12:34:56"
	}
	if c.NIC == "" {
		c.NIC = "virtio-net-pci"
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 1024
	}
	if c.SMP == 0 {
		c.SMP = 1
	}
	if c.Accel == "" {
		c.Accel = os.Getenv(AccelEnv)
	}
	if c.Accel == "" {
		c.Accel = "tcg"
	}
	if c.Dir == "" {
		c.Dir = ArtifactDir(t)
	}
	return c
}

// VM is a running QEMU x86-64 machine.
type VM struct {
	Config    VMConfig
	Proc      *Proc
	Serial    *Serial
	QMP       *QMP
	SerialLog string // path of the timestamped serial log
	Started   time.Time
}

// RequireQEMU skips (or fails under NETBOOT_REQUIRE_ALL=1) unless QEMU x86-64
// and Debian's iPXE ROMs are installed.
func RequireQEMU(t testing.TB) {
	t.Helper()
	testenv.RequireTools(t, "qemu-system-x86_64")
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-virtio.rom"); err != nil {
		testenv.Unavailable(t, "ipxe-qemu ROMs are not installed")
	}
}

// Args returns QEMU's command line (without the program name) for cfg, whose
// defaults must be applied, with qmpSock as the control socket.
func (c VMConfig) Args(tap, qmpSock string) []string {
	args := []string{
		"-machine", "pc,accel=" + c.Accel,
		"-m", strconv.Itoa(c.MemoryMiB), "-smp", strconv.Itoa(c.SMP),
		"-nographic", "-serial", "stdio", "-monitor", "none",
		"-qmp", "unix:" + qmpSock + ",server=on,wait=off",
	}
	if c.Accel == "kvm" {
		args = append(args, "-cpu", "host")
	}
	if !c.NoRNG {
		args = append(args, "-object", "rng-random,id=rng0,filename=/dev/urandom",
			"-device", "virtio-rng-pci,rng=rng0")
	}
	if c.NoReboot {
		args = append(args, "-no-reboot")
	}
	if c.UEFI {
		args = append(args, "-bios", OVMFPath)
	}
	if tap != "" {
		args = append(args,
			"-netdev", "tap,id=n0,ifname="+tap+",script=no,downscript=no",
			"-device", c.NIC+",netdev=n0,mac="+c.MAC+c.romOption())
	} else {
		args = append(args, "-nic", "none")
	}
	if c.BootNet {
		args = append(args, "-boot", "n")
	}
	if c.Kernel != "" {
		args = append(args, "-kernel", c.Kernel)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			args = append(args, "-append", c.Append)
		}
	}
	return append(args, c.ExtraArgs...)
}

// StartVM starts QEMU (inside cfg.Netns when set), streams its serial console
// into vm.Serial and <Dir>/<Name>-serial.log, connects QMP, and stops the VM
// by PID in t.Cleanup.
func StartVM(t testing.TB, cfg VMConfig) *VM {
	t.Helper()
	RequireQEMU(t)
	cfg = cfg.withDefaults(t)
	if cfg.UEFI {
		if _, err := os.Stat(OVMFPath); err != nil {
			testenv.Unavailable(t, "ovmf is not installed")
		}
	}
	tap := cfg.Tap
	if tap == "" && cfg.Netns != nil {
		tap = cfg.Netns.AddTap(t)
	}
	// unix socket paths are limited to 108 bytes: keep QMP's out of Dir.
	sockDir, err := os.MkdirTemp("", "nbqmp")
	if err != nil {
		t.Fatalf("start vm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	qmpSock := filepath.Join(sockDir, "qmp.sock")

	var cmd *exec.Cmd
	if cfg.Netns != nil {
		cmd = cfg.Netns.Command(context.Background(), "qemu-system-x86_64", cfg.Args(tap, qmpSock)...)
	} else {
		cmd = exec.Command("qemu-system-x86_64", cfg.Args(tap, qmpSock)...)
	}
	vm := &VM{Config: cfg, SerialLog: filepath.Join(cfg.Dir, cfg.Name+"-serial.log")}
	logFile, err := openLog(vm.SerialLog)
	if err != nil {
		t.Fatalf("start vm: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("start vm: stdout pipe: %v", err)
	}
	stderr, err := os.Create(filepath.Join(cfg.Dir, cfg.Name+"-qemu.log"))
	if err != nil {
		t.Fatalf("start vm: %v", err)
	}
	fmt.Fprintf(stderr, "# %s\n", cmd.String())
	cmd.Stderr = stderr
	vm.Started = time.Now()
	vm.Serial = NewSerial(vm.Started, logFile)
	// Cleanups run last-in first-out: close QMP, stop QEMU by PID (StartProc),
	// then wait for the console reader to drain.
	serialDone := make(chan struct{})
	t.Cleanup(func() {
		if vm.Proc != nil {
			<-serialDone
		}
	})
	vm.Proc = StartProc(t, cfg.Name, cmd, "")
	go func() {
		defer close(serialDone)
		vm.Serial.ReadFrom(stdout)
		logFile.Close()
		stderr.Close()
	}()
	t.Cleanup(func() {
		if vm.QMP != nil {
			vm.QMP.Close()
		}
	})
	vm.QMP, err = DialQMP(qmpSock, 10*time.Second)
	if err != nil {
		t.Fatalf("start vm %s: %v (see %s)", cfg.Name, err, stderr.Name())
	}
	t.Logf("vm %s: pid %d, serial log %s", cfg.Name, vm.Proc.PID(), vm.SerialLog)
	return vm
}

// Expect waits for the next serial line matching re (see Serial.Expect) and
// fails the test with the console's tail when it does not come.
func (vm *VM) Expect(t testing.TB, ctx context.Context, re string) Line {
	t.Helper()
	l, err := vm.Serial.Expect(ctx, regexp.MustCompile(re))
	if err != nil {
		t.Fatalf("vm %s: %v\n--- last serial lines:\n%s", vm.Config.Name, err, vm.Serial.Tail(30))
	}
	return l
}

// Reset is a hard reset (QMP system_reset): nothing in the guest is told.
func (vm *VM) Reset() error {
	_, err := vm.QMP.Execute("system_reset", nil)
	return err
}

// Pause stops the guest's CPUs (QMP stop); Resume continues them.
func (vm *VM) Pause() error {
	_, err := vm.QMP.Execute("stop", nil)
	return err
}

// Resume continues a paused guest (QMP cont).
func (vm *VM) Resume() error {
	_, err := vm.QMP.Execute("cont", nil)
	return err
}

// Quit asks QEMU to exit (QMP quit) and waits up to timeout for it; the
// process is killed by PID if it does not exit in time.
func (vm *VM) Quit(timeout time.Duration) error {
	_, qerr := vm.QMP.Execute("quit", nil)
	select {
	case <-vm.Proc.Done():
		return nil
	case <-time.After(timeout):
	}
	if err := vm.Proc.Stop(); err != nil {
		return fmt.Errorf("quit vm: %w", err)
	}
	if qerr != nil {
		return fmt.Errorf("quit vm: %w", qerr)
	}
	return nil
}

// romOption leaves the NIC's iPXE option ROM out unless the VM boots from it:
// its banner wait costs seconds on every direct-kernel boot.
func (c VMConfig) romOption() string {
	if c.BootNet {
		return ""
	}
	return ",romfile="
}
