// Package initramfs holds the VM acceptance tests of netboot's initramfs
// (initramfs/, cmd/nbinit): the built image boots a real Debian kernel under
// QEMU (x86_64 and aarch64), loads its modules, gets a DHCP lease from
// dnsmasq inside a test network namespace, turns netconsole on, and its
// stage markers arrive at a UDP collector in the test; a root/prepare
// endpoint that refuses shows the refusal on netconsole while PID 1 stays
// alive.
package initramfs
