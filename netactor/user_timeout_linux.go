package netactor

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout makes the kernel give up on a connection whose sent data
// has gone unacknowledged for d (TCP_USER_TIMEOUT). Without it a peer that
// vanished (a network cut, a hard reboot) is noticed only once the send
// buffer fills and a write times out, which heartbeats alone take minutes
// to do, while retransmissions back off to two minutes: the sender reports
// nothing unreachable and the restarted peer hears nothing from us.
func setUserTimeout(c syscall.RawConn, d time.Duration) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return serr
}
