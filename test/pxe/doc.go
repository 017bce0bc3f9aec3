// Package pxetest holds the integration tests of boot serving (pxe/): real
// DHCP clients (busybox udhcpc, ISC dhclient) against netbootd's DHCP and
// proxyDHCP servers beside dnsmasq, and QEMU's real iPXE and OVMF firmware
// network-booting a Debian kernel over TFTP and HTTP, all inside network
// namespaces the tests create (test/harness).
package pxetest
