package kafka

import (
	"net"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// writeChunk is how much of a batch one write covers. The write deadline
// is renewed before each, so it bounds how long a client may take to read
// this much, not a whole answer: Kafka has no write deadline at all (only
// connections.max.idle.ms), and a catching-up consumer on a slow link
// takes minutes to read a 50 MiB Fetch while reading steadily.
const writeChunk = 256 << 10

// runWriter is the goroutine that writes a connection's response batches.
// The actor sends a batch only when the previous one has been reported, so
// neither side ever blocks on the other; a slow client slows only this
// goroutine. It ends when jobs is closed, or after a failed write.
func runWriter(conn net.Conn, jobs <-chan []byte, done <-chan struct{}, timeout time.Duration, sender actor.SenderContext, pid *actor.PID) {
	for buf := range jobs {
		n, err := writeProgressing(conn, buf, timeout)
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

// writeProgressing writes buf in chunks of writeChunk, each under a
// deadline of timeout from its start: a client that stops reading for that
// long fails the write, one that keeps reading gets all of it.
func writeProgressing(conn net.Conn, buf []byte, timeout time.Duration) (int, error) {
	n := 0
	for n < len(buf) {
		if err := conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
			return n, err
		}
		m, err := conn.Write(buf[n:min(n+writeChunk, len(buf))])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
