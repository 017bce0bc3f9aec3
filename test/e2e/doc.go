// Package e2e is netboot's end-to-end test (issue 7): inside one network
// namespace, a QEMU x86-64 VM with its real iPXE ROM boots from the netbootd
// binary (DHCP, iPXE script, HTTP kernel + nbinit initramfs, netconsole) onto
// an RBD root image in a throwaway Ceph cluster (test/cephlab), and the
// scenarios of the issue (clean boot, hard reset with a stale lock, image
// held by another host, Ceph down, announced reboot that never happens) are
// judged by netbootd's boot report and `netbootctl wait`'s exit code.
//
// Run it with `make e2e` (NETBOOT_E2E=1; root, QEMU, Ceph, the Debian kernel from
// scripts/deps.d/20-kernel.sh). $NETBOOT_ARTIFACTS keeps the serial logs,
// netbootd's log and config, and timings.md with per-stage timings.
package e2e
