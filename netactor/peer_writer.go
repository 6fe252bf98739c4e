package netactor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// keepBufBytes is the largest frame buffer the writer keeps between frames;
// a bigger one (a rare large append) is left to the collector.
const keepBufBytes = 4 << 20

// settleAfter is how long a connection lives before it counts as working.
// One that dies younger is a failed dial for logging and the backoff: the
// peer never sends on it, so its age is all the writer can observe.
const settleAfter = 2 * time.Second

// errNotConnected fails a frame handed over while the connection was down.
var errNotConnected = errors.New("netactor: peer not connected")

// writer is the goroutine a PeerSender owns to do its blocking I/O: dial with
// backoff, send the hello, write the frames it is handed one at a time. It
// holds no queue: the PeerSender hands it a frame only after the previous one
// was reported done, so work never holds more than one and the actor never
// blocks on it. Everything it learns goes back to the PeerSender's mailbox.
type writer struct {
	self, peer uint64
	addr       string
	opts       SenderOptions
	root       *actor.RootContext
	owner      *actor.PID
	counters   peerCounters

	work   chan *frameJob
	ctx    context.Context // cancelled by close
	cancel context.CancelFunc

	mu   sync.Mutex
	conn net.Conn // the live connection, for close to interrupt a blocked write
}

func newWriter(self, peer uint64, addr string, opts SenderOptions, root *actor.RootContext, owner *actor.PID) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	return &writer{
		self: self, peer: peer, addr: addr, opts: opts, root: root, owner: owner,
		counters: opts.Metrics.sent(peer),
		work:     make(chan *frameJob, 1),
		ctx:      ctx, cancel: cancel,
	}
}

// close stops the writer and closes its connection, interrupting a blocked
// dial or write. It does not wait for the goroutine to return.
func (w *writer) close() {
	w.cancel()
	w.mu.Lock()
	if w.conn != nil {
		w.conn.Close()
	}
	w.mu.Unlock()
}

func (w *writer) tell(msg any) {
	if w.ctx.Err() == nil {
		w.root.Send(w.owner, msg)
	}
}

func (w *writer) run() {
	backoff := w.opts.BackoffMin
	var buf []byte
	for {
		conn, err := w.dial(&buf)
		if err != nil {
			if w.ctx.Err() != nil {
				return
			}
			w.tell(&dialFailed{w: w, err: err})
			if !w.pause(&backoff) {
				return
			}
			continue
		}
		w.tell(&writerConnected{w: w})
		settled, reported, err := w.serve(conn, &buf)
		w.setConn(nil)
		conn.Close()
		if w.ctx.Err() != nil {
			return
		}
		if !reported {
			w.tell(&writerDisconnected{w: w, err: err})
		}
		// A connection that dies young does not reset the backoff, so a peer
		// that accepts and drops at once is not redialled in a tight loop.
		if settled {
			backoff = w.opts.BackoffMin
		}
		if !w.pause(&backoff) {
			return
		}
	}
}

// dial connects to the peer and sends the hello.
func (w *writer) dial(buf *[]byte) (net.Conn, error) {
	d := net.Dialer{Timeout: w.opts.DialTimeout, Control: func(_, _ string, c syscall.RawConn) error {
		return setUserTimeout(c, w.opts.WriteTimeout)
	}}
	conn, err := d.DialContext(w.ctx, "tcp", w.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", w.addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		// Heartbeats and votes are small and latency-bound; batching is
		// ours to do, not Nagle's.
		if err := tc.SetNoDelay(true); err != nil {
			conn.Close()
			return nil, fmt.Errorf("set TCP_NODELAY on %s: %w", w.addr, err)
		}
	}
	if !w.setConn(conn) {
		conn.Close()
		return nil, w.ctx.Err()
	}
	*buf, err = AppendFrame((*buf)[:0], &Envelope{From: w.self, To: w.peer, Incarnation: w.opts.Incarnation, Quiesces: w.opts.Quiesces})
	if err == nil {
		err = w.write(conn, *buf)
	}
	if err != nil {
		w.setConn(nil)
		conn.Close()
		return nil, fmt.Errorf("send hello to %s: %w", w.addr, err)
	}
	return conn, nil
}

// setConn publishes the live connection for close. It refuses one once the
// writer is closed, so a dial racing with close cannot leak a connection.
func (w *writer) setConn(conn net.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if conn != nil && w.ctx.Err() != nil {
		return false
	}
	w.conn = conn
	return true
}

// serve writes the frames it is handed until the connection fails or the
// writer is closed, and reports writerSettled once the connection has lived
// settleAfter. settled tells whether it did; reported whether the failure
// was already reported through a frameWritten.
func (w *writer) serve(conn net.Conn, buf *[]byte) (settled, reported bool, err error) {
	// The peer sends nothing on this connection but a refusal of the
	// hello; a read returning is the peer closing it, noticed even while
	// there is nothing to write.
	dead := make(chan error, 1)
	go func() { dead <- w.awaitClose(conn) }()
	settle := time.NewTimer(settleAfter)
	defer settle.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return settled, true, w.ctx.Err()
		case err := <-dead:
			return settled, false, err
		case <-settle.C:
			settled = true
			w.tell(&writerSettled{w: w})
		case job := <-w.work:
			frame, err := AppendFrame((*buf)[:0], job.env)
			*buf = frame
			if err != nil {
				w.tell(&frameWritten{w: w, job: job, err: err, encode: true})
				continue
			}
			if err := w.write(conn, frame); err != nil {
				err = fmt.Errorf("write to %s: %w", w.addr, err)
				w.tell(&frameWritten{w: w, job: job, err: err})
				return settled, true, err
			}
			w.counters.add(len(frame))
			if cap(*buf) > keepBufBytes {
				*buf = nil
			}
			w.tell(&frameWritten{w: w, job: job})
		}
	}
}

// awaitClose reads conn until the peer closes it, and returns why: a
// *RefusedError when the peer refused the hello (hold.go). A peer that
// predates refusals sends nothing at all.
func (w *writer) awaitClose(conn net.Conn) error {
	br := bufio.NewReaderSize(conn, maxRefusalBytes)
	env, _, err := ReadFrame(br, maxRefusalBytes, nil)
	if err == nil && env.Refused != nil {
		return &RefusedError{Peer: w.peer, PeerAddr: w.addr, Refusal: *env.Refused}
	}
	if err == nil {
		_, err = io.Copy(io.Discard, br)
	}
	if err == nil {
		err = io.EOF
	}
	return fmt.Errorf("connection to %s closed: %w", w.addr, err)
}

func (w *writer) write(conn net.Conn, b []byte) error {
	if err := conn.SetWriteDeadline(time.Now().Add(w.opts.WriteTimeout)); err != nil {
		return err
	}
	_, err := conn.Write(b)
	return err
}

// pause waits out the backoff before the next dial, failing at once any frame
// handed over meanwhile, and doubles the backoff. It returns false when the
// writer is closed.
func (w *writer) pause(backoff *time.Duration) bool {
	t := time.NewTimer(jitter(*backoff))
	defer t.Stop()
	*backoff = min(2**backoff, w.opts.BackoffMax)
	for {
		select {
		case <-w.ctx.Done():
			return false
		case job := <-w.work:
			w.tell(&frameWritten{w: w, job: job, err: errNotConnected})
		case <-t.C:
			return true
		}
	}
}

// jitter spreads d by ±20% so that the nodes of a restarted cluster do not
// redial each other in lockstep.
func jitter(d time.Duration) time.Duration {
	spread := d / 5
	if spread <= 0 {
		return d
	}
	return d - spread + rand.N(2*spread+1)
}
