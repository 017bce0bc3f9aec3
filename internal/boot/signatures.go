package boot

import (
	"fmt"
	"regexp"
	"strings"

	"netboot/internal/config"
	"netboot/internal/event"
)

// Signature is one known failure pattern over netconsole lines.
type Signature struct {
	Name  string      `json:"name"`
	Stage event.Stage `json:"stage"`
	// Fatal signatures fail the boot at once; the others are recorded and
	// named as the probable cause if the boot later fails or gets stuck.
	Fatal   bool   `json:"fatal"`
	Explain string `json:"explain"`
	Hint    string `json:"hint"`

	re *regexp.Regexp
	// One of literals must occur in a line for re to be tried (a cheap
	// prefilter); none means always try re.
	literals []string
}

// Pattern returns the signature's regular expression.
func (s Signature) Pattern() string { return s.re.String() }

// Catalogue is an ordered list of signatures; the first match wins.
type Catalogue struct {
	sigs []Signature
}

// builtin is one catalogue entry; literals is "|"-separated, and every
// line the regex matches must contain one of them (FuzzCatalogueMatch
// checks it).
type builtin struct {
	name, stage, literals, re string
	fatal                     bool
	explain, hint             string
}

// builtins is the catalogue of research/netconsole-anchors.md §4.
var builtins = []builtin{
	// Panics and init.
	{"kernel-panic", "kernel-up", "Kernel panic", `Kernel panic - not syncing: (.*)`, true,
		"the kernel panicked and stopped", "read the lines before the panic: the first error there is the cause"},
	{"vfs-no-root", "root-mount", "VFS: ", `VFS: (?:Unable to mount root fs on|Cannot open root device) (.*)`, true,
		"the kernel could not mount the root file system", "check root= on the kernel command line and that the root device's driver is built in"},
	{"no-root-fs", "root-mount", "No filesystem could mount root", `No filesystem could mount root, tried:(.*)`, true,
		"no file system driver could mount the root device", "build the root file system's driver into the kernel or the initramfs"},
	{"init-killed", "init", "Attempted to kill init", `Attempted to kill init! exitcode=(0x[0-9a-f]+)`, true,
		"PID 1 (nbinit or the real init) exited", "look at the lines before: nbinit logs why it gave up; after switch-root it is systemd"},
	{"no-init", "init", "No working init found", `No working init found`, true,
		"the kernel found no init program to run", "the initramfs is missing /init or it is not executable for this architecture"},
	{"initramfs-unpack", "initramfs", "Initramfs unpacking failed", `Initramfs unpacking failed: (.*)`, true,
		"the kernel could not unpack the initramfs", "the initramfs download was truncated or the compression is not built into the kernel"},
	{"initramfs-not-cpio", "initramfs", "rootfs image is not initramfs", `rootfs image is not initramfs(.*)`, true,
		"the initrd is not a cpio archive", "rebuild the per-host image; check that the HTTP/TFTP server sent the right file"},
	// RBD.
	{"rbd-lock-failed", "root-map", "failed to lock header|failed to acquire", `rbd: .*failed to (?:lock header|acquire lock|acquire exclusive lock): (-?\d+)`, false,
		"the kernel rbd client could not take the image's exclusive lock (-108: this client is blocklisted)", "check `netbootctl rbd status HOST`: another client holds the lock or this one is blocklisted"},
	{"rbd-break-lock-failed", "root-map", "failed to break header lock", `rbd: .*failed to break header lock: (-?\d+)`, false,
		"the kernel rbd client failed to break a stale lock", "let netbootd hand the root over (root/prepare) before mapping"},
	{"rbd-blocklist-failed", "root-map", "failed to blocklist|blocklist of|blacklist of", `rbd: .*(?:failed to blocklist|blocklist of|blacklist of) (client\d+)`, false,
		"the kernel rbd client could not blocklist the previous lock owner", "its Ceph user needs `osd blocklist` capability, or let netbootd fence the old client"},
	{"rbd-breaking-lock", "root-map", "breaking", `rbd: .*(?:breaking header lock owned by|seems dead, breaking lock) ?(client\d+)?`, false,
		"the kernel rbd client is breaking the previous boot's lock itself (takes ~30 s)", "the server-side hand-over did not run or did not fence the old client"},
	{"rbd-watch-error", "root-map", "watch", `rbd: .*(?:failed to reregister watch|encountered watch error|failed to unwatch): (-?\d+)`, false,
		"the rbd watch on the image header failed", "check the network to the OSDs and whether this client was blocklisted"},
	{"rbd-duplicate-owners", "root-map", "duplicate lock owners", `rbd: .*duplicate lock owners detected`, false,
		"two clients claim the image's lock", "stop and inspect: `netbootctl rbd status HOST`; never map the image twice"},
	// libceph.
	{"libceph-connect-error", "root-map", "libceph: connect", `libceph: connect (\S+) error (-?\d+)`, false,
		"the kernel Ceph client could not connect to a monitor or OSD", "check routes and that the monitors listen on the address in the cmdline"},
	{"libceph-socket", "root-map", "socket closed|socket error|connect error|protocol error", `libceph: (?:mon|osd)\d+ \S+ (?:socket closed|socket error on (?:read|write)|connect error|protocol error)`, false,
		"a kernel Ceph connection failed", "check the network path to the cluster and the daemon's log"},
	{"libceph-session-lost", "root-map", "session lost", `libceph: mon\d+ .*session lost, hunting for new mon`, false,
		"the kernel Ceph client lost its monitor session", "check that the monitors are up and reachable"},
	{"libceph-features", "root-map", "feature set mismatch|missing required protocol features", `libceph: .*(?:feature set mismatch|missing required protocol features)`, false,
		"the kernel Ceph client lacks features the cluster requires", "use a newer kernel or relax the image features / crush tunables"},
	{"libceph-auth", "root-map", "auth method|bad fsid|wrong peer at address", `libceph: .*(?:auth method '\S+' error|bad fsid|wrong peer at address)`, false,
		"the kernel Ceph client was refused", "check the key, fsid and monitor addresses on the kernel command line"},
	// Network in the initramfs.
	{"ipconfig-failed", "network", "IP-Config", `IP-Config: Auto-configuration of network failed`, true,
		"the kernel's own DHCP (ip=dhcp) got no lease", "check the link and the DHCP server; nbinit does its own DHCP, drop ip= from the cmdline"},
	{"dhcp-timeout", "network", "Sending DHCP requests|nbinit: dhcp:|stage=network status=failed", `Sending DHCP requests .*timed out|nbinit: dhcp: .*(?:timed out|failed)|nbinit: stage=network status=failed .*msg=.*dhcp`, false,
		"DHCP in the initramfs timed out", "check the link, the VLAN and that the DHCP server answers the initramfs client"},
	{"no-carrier", "network", "No carrier detected|timeout waiting for carrier", `No carrier detected on interface (\S+)|timeout waiting for carrier`, false,
		"the network link is down in the initramfs", "check the cable/switch port and that the NIC driver is in the initramfs"},
	{"dracut-timeout", "root-mount", "dracut-initqueue", `dracut-initqueue.*(?:starting timeout scripts|timeout, still waiting)`, false,
		"dracut waited too long for the root device", "the root device never appeared: see earlier rbd/libceph lines"},
	{"emergency-shell", "root-mount", "Emergency Shell|emergency mode|Dropping to a shell|Gave up waiting for root", `Starting Dracut Emergency Shell|Entering emergency mode|Dropping to a shell!|Gave up waiting for root (?:file system )?device`, true,
		"the initramfs gave up and dropped to a shell", "the root device did not appear or did not mount; see the lines before"},
	{"netconsole-no-dev", "kernel-up", "netconsole", `netconsole: (\S+) doesn't exist, aborting`, false,
		"netconsole could not find its network device", "build the NIC driver in, or name the device by MAC in netconsole="},
	// Block devices and userspace.
	{"blockdev-eperm", "root-map", "peration not permitted", `(?:/dev/rbd\d+|block device|/dev/\S+).*[Oo]peration not permitted`, true,
		"opening the block device was refused (EPERM: the image is locked by another client or mapped read-only)", "check the exclusive lock and blocklist: `netbootctl rbd status HOST`"},
	{"systemd-start-limit", "userspace", "Start request repeated too quickly", `(\S+): Start request repeated too quickly`, false,
		"a systemd unit failed repeatedly and hit its start limit", "`systemctl status` that unit on the host; it failed after the new boot"},
	{"systemd-unit-failed", "userspace", "Failed to start", `Failed to start (.*)\.`, false,
		"a systemd unit failed to start", "`journalctl -u` that unit on the host"},
	{"ext4-mmp", "root-mount", "ext4_multi_mount_protect", `EXT4-fs warning .*ext4_multi_mount_protect`, false,
		"ext4 multi-mount protection saw another writer (a previous boot's mapping may still be alive)", "make sure the previous client is fenced before mounting"},
	// Resources and hangs.
	{"oom", "userspace", "ut of memory", `Out of memory: Kill(?:ed)? process (\d+) \((\S+)\)|Memory cgroup out of memory|Out of memory and no killable processes`, false,
		"the kernel ran out of memory and killed a process", "give the host more memory or find the process that grew"},
	{"oom-invoked", "userspace", "invoked oom-killer", `(\S+) invoked oom-killer: gfp_mask=0x`, false,
		"a process triggered the OOM killer", "see the following lines for the process that was killed"},
	{"hung-task", "userspace", "blocked for more than", `INFO: task (\S+):(\d+) blocked for more than (\d+) seconds`, false,
		"a task was blocked in the kernel for a long time (often I/O to a dead rbd/NFS device)", "check the root device's connection to Ceph"},
	{"soft-lockup", "userspace", "soft lockup", `BUG: soft lockup - CPU#(\d+) stuck for (\d+)s!`, false,
		"a CPU was stuck in the kernel", "a kernel bug or a very overloaded host; look at the stack that follows"},
	{"hard-lockup", "userspace", "hard LOCKUP", `Watchdog detected hard LOCKUP on cpu (\d+)`, false,
		"a CPU stopped taking interrupts", "kernel or hardware bug; the stack that follows tells where"},
	{"rcu-stall", "userspace", "detected stall", `rcu: INFO: \S+ detected stalls? on CPUs/tasks|INFO: .*detected stall`, false,
		"RCU detected a stalled CPU or task", "kernel bug or starvation; look at the stack that follows"},
	{"kernel-oops", "kernel-up", "BUG", `BUG: kernel NULL pointer dereference|BUG: unable to handle page fault|kernel BUG at (\S+)`, false,
		"the kernel hit a bug (oops)", "the stack that follows names the driver; try another kernel"},
	{"general-protection", "kernel-up", "general protection fault", `general protection fault`, false,
		"the kernel hit a general protection fault", "the stack that follows names the driver; try another kernel"},
	{"watchdog-reset", "userspace", "watchdog did not stop", `watchdog: \S+: watchdog did not stop!`, false,
		"the hardware watchdog was left running at shutdown and may reset the host", "let the watchdog daemon stop cleanly"},
}

// NewCatalogue returns the built-in signatures followed by the operator's
// (config.Signatures), whose regular expressions are compiled here.
func NewCatalogue(extra []config.Signature) (*Catalogue, error) {
	c := &Catalogue{}
	for _, b := range builtins {
		st, err := event.ParseStage(b.stage)
		if err != nil {
			return nil, fmt.Errorf("build signature %s: %w", b.name, err)
		}
		c.sigs = append(c.sigs, Signature{Name: b.name, Stage: st, Fatal: b.fatal, Explain: b.explain,
			Hint: b.hint, re: regexp.MustCompile(b.re), literals: splitLiterals(b.literals)})
	}
	for _, s := range extra {
		sig, err := compileSignature(s)
		if err != nil {
			return nil, err
		}
		c.sigs = append(c.sigs, sig)
	}
	return c, nil
}

func compileSignature(s config.Signature) (Signature, error) {
	re, err := regexp.Compile(s.Match)
	if err != nil {
		return Signature{}, fmt.Errorf("compile signature %s: %w", s.Name, err)
	}
	st, err := event.ParseStage(s.Stage)
	if err != nil {
		return Signature{}, fmt.Errorf("compile signature %s: %w", s.Name, err)
	}
	prefix, _ := re.LiteralPrefix()
	fatal := s.Fatal == nil || *s.Fatal
	return Signature{Name: s.Name, Stage: st, Fatal: fatal, Explain: s.Explain, Hint: s.Hint, re: re,
		literals: splitLiterals(prefix)}, nil
}

func splitLiterals(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "|")
}

// mayMatch applies the prefilter.
func (s *Signature) mayMatch(line string) bool {
	if len(s.literals) == 0 {
		return true
	}
	for _, l := range s.literals {
		if strings.Contains(line, l) {
			return true
		}
	}
	return false
}

// Signatures returns the catalogue's entries in match order.
func (c *Catalogue) Signatures() []Signature { return append([]Signature(nil), c.sigs...) }

// Match returns the first signature matching line.
func (c *Catalogue) Match(line string) (Signature, bool) {
	for i := range c.sigs {
		if s := &c.sigs[i]; s.mayMatch(line) && s.re.MatchString(line) {
			return *s, true
		}
	}
	return Signature{}, false
}
