package actors

import (
	"errors"
	"net"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Accepted is what AcceptLoop sends a listener actor for each new
// connection; the actor owns the connection from then on.
type Accepted struct {
	Conn net.Conn
}

// AcceptFailed reports an Accept error other than the listener being
// closed (out of file descriptors and the like).
type AcceptFailed struct {
	Err error
}

// AcceptLoop accepts connections on ln until it is closed and sends each to
// the listener actor pid. It is the goroutine that does a listener actor's
// blocking Accept and only feeds its mailbox; on errors it backs off as
// net/http does instead of spinning.
func AcceptLoop(ln net.Listener, sender actor.SenderContext, pid *actor.PID) {
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			sender.Send(pid, &AcceptFailed{Err: err})
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		sender.Send(pid, &Accepted{Conn: conn})
	}
}
