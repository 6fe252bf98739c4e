package kafka

import (
	"net"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// runWriter is the goroutine that writes a connection's response batches.
// The actor sends a batch only when the previous one has been reported, so
// neither side ever blocks on the other; a slow client slows only this
// goroutine. It ends when jobs is closed, or after a failed write.
func runWriter(conn net.Conn, jobs <-chan []byte, done <-chan struct{}, timeout time.Duration, sender actor.SenderContext, pid *actor.PID) {
	for buf := range jobs {
		err := conn.SetWriteDeadline(time.Now().Add(timeout))
		n := 0
		if err == nil {
			n, err = conn.Write(buf)
		}
		select {
		case <-done:
			return // the actor closed the connection and needs no report
		default:
		}
		sender.Send(pid, &batchWritten{buf: buf, n: n, err: err})
		if err != nil {
			return
		}
	}
}
