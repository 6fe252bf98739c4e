//go:build !linux

package netactor

import (
	"syscall"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not available: a
// dead peer is then noticed when a write times out.
func setUserTimeout(syscall.RawConn, time.Duration) error { return nil }
