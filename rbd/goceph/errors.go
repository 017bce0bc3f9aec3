package goceph

import (
	"errors"
	"fmt"
	"syscall"

	"netboot/rbd"
)

// errnoError is how go-ceph errors expose their (negative) errno.
type errnoError interface{ ErrorCode() int }

// errnoOf returns the positive errno of a go-ceph error, or 0.
func errnoOf(err error) syscall.Errno {
	var ec errnoError
	if errors.As(err, &ec) {
		n := ec.ErrorCode()
		if n < 0 {
			n = -n
		}
		return syscall.Errno(n)
	}
	return 0
}

func isErrno(err error, want syscall.Errno) bool {
	var e errnoWrapped
	if errors.As(err, &e) {
		return e.errno == want
	}
	return errnoOf(err) == want
}

// errnoWrapped keeps the errno next to the sentinel it was mapped to.
type errnoWrapped struct {
	sentinel error
	errno    syscall.Errno
	cause    error
}

func (e errnoWrapped) Error() string {
	if e.sentinel == nil {
		return e.cause.Error()
	}
	return fmt.Sprintf("%v: %v", e.sentinel, e.cause)
}

func (e errnoWrapped) Unwrap() []error {
	if e.sentinel == nil {
		return []error{e.cause}
	}
	return []error{e.sentinel, e.cause}
}

// mapErr maps a go-ceph error to the rbd sentinels, keeping the cause.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	n := errnoOf(err)
	return errnoWrapped{sentinel: sentinelFor(n), errno: n, cause: err}
}

// mapConnectErr maps rados_connect failures: any of them means the
// cluster is not reachable with this configuration.
func mapConnectErr(err error) error {
	n := errnoOf(err)
	s := sentinelFor(n)
	if s == nil || s == rbd.ErrNotFound {
		s = rbd.ErrUnavailable
	}
	return errnoWrapped{sentinel: s, errno: n, cause: err}
}

func sentinelFor(n syscall.Errno) error {
	switch n {
	case syscall.ENOENT:
		return rbd.ErrNotFound
	case syscall.EBUSY:
		return rbd.ErrBusy
	case syscall.EACCES, syscall.EPERM:
		return rbd.ErrPermission
	case syscall.ESHUTDOWN:
		return rbd.ErrBlocklisted
	case syscall.ETIMEDOUT, syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENOTCONN, syscall.EINTR:
		return rbd.ErrUnavailable
	}
	return nil
}
