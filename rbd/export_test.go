package rbd

// Fixtures of the internal plan tests, shared with the external executor
// tests (package rbd_test, which use rbdtest.Cluster).
var OwnedForTest = owned

const (
	HostIPForTest  = hostIP
	PrevOwnForTest = prevOwn
)
