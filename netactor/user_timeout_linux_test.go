package netactor

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDialSetsUserTimeout: a connection to a peer gives up on data left
// unacknowledged for the write timeout, so a peer that vanished without a
// reset is noticed in seconds, not after minutes of retransmissions.
func TestDialSetsUserTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1024))
		}
	}()
	opts := SenderOptions{WriteTimeout: 3 * time.Second}.withDefaults()
	w := newWriter(1, 2, ln.Addr().String(), opts, nil, nil)
	defer w.cancel()
	var buf []byte
	conn, err := w.dial(&buf)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ms int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		ms, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil || serr != nil {
		t.Fatalf("getsockopt: %v, %v", err, serr)
	}
	if ms != 3000 {
		t.Fatalf("TCP_USER_TIMEOUT is %d ms, want the write timeout, 3000", ms)
	}
}
