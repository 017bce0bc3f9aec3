// Package dashboard holds the dashboard's acceptance tests: a netbootd-like
// stack (SQLite store, boot tracker, netconsole collector on 127.0.0.1,
// API, dashboard) is fed a recorded scenario that covers every boot outcome,
// then headless Chromium (Debian's chromium, driven over CDP with chromedp)
// loads each page and the tests assert on the DOM, follow a live log while
// real netconsole datagrams arrive, and take screenshots.
//
// Screenshots are kept under $NETBOOT_ARTIFACTS (or the test's temporary
// directory); `go test ./test/dashboard -update` also refreshes the ones
// the README shows, in docs/screenshots/.
package dashboard
