// Package harness is the shared toolkit of netboot's integration and
// end-to-end tests: private network namespaces with a bridge, tap devices and
// veth peers (netns.go), in-process sockets opened inside such a namespace
// (Netns.Do, Netns.Listen, Netns.ListenPacket), child processes that are always
// stopped by PID (process.go), the cached Debian kernel that
// scripts/deps.d/20-kernel.sh unpacks (kernel.go), and a QEMU runner with a
// timestamped serial log, Expect on the serial line stream and a QMP control
// socket (qemu.go, qmp.go).
//
// Every resource is released in t.Cleanup, also when the test fails. Nothing
// here touches the machine's real interfaces: all links live inside
// namespaces the test created. Missing tools or root fail the test under
// NETBOOT_REQUIRE_ALL=1 and skip it otherwise (internal/testenv).
package harness
