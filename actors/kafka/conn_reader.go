package kafka

import (
	"bufio"
	"errors"
	"net"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// readBufferBytes sizes the bufio.Reader in front of each connection, so
// that small pipelined requests cost one read call between them.
const readBufferBytes = 32 << 10

// connReader is the goroutine that reads one client connection: it frames
// and decodes requests and sends each to the connection actor, waiting while
// the connection's in-flight bytes are over their bound. It shares with the
// actor only immutable values and the gate.
type connReader struct {
	conn net.Conn
	cfg  *connConfig
	gate *inflightGate
	pid  *actor.PID
}

// rejectError is a protocol violation by the client, with its metric reason.
type rejectError struct {
	reason string
	err    error
}

func (e *rejectError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

func (r *connReader) run() {
	err := r.serve()
	if r.gate.ended() {
		return // the actor closed the connection and needs no report
	}
	msg := &readerDone{err: err}
	if rej, ok := errors.AsType[*rejectError](err); ok {
		msg.reject = rej.reason
	}
	r.cfg.sender.Send(r.pid, msg)
}

func (r *connReader) serve() error {
	br := bufio.NewReaderSize(r.conn, readBufferBytes)
	for {
		if !r.gate.wait() {
			return nil
		}
		// The deadline covers waiting for the next request and reading it,
		// so an idle client and one that trickles a request both end.
		if err := r.conn.SetReadDeadline(time.Now().Add(r.cfg.idleTimeout)); err != nil {
			return err
		}
		body, err := readRequest(br, r.cfg.maxRequestBytes, r.cfg.bodies)
		if err != nil {
			return classify(err)
		}
		n := int64(4 + len(body))
		r.cfg.metrics.received(int(n))
		d, err := decodeRequest(body, r.cfg.served)
		if err != nil {
			return classify(err)
		}
		// Only a produce request's body goes back to the pool: its
		// answer says when no partition reads it any more. Others are
		// left to the garbage collector.
		if pr, ok := d.msg.(*kmsg.ProduceRequest); ok && pr.Acks != 0 && r.cfg.bodies != nil {
			d.body, d.bodies = body, r.cfg.bodies
		}
		r.gate.add(n)
		r.cfg.sender.Send(r.pid, &requestRead{req: d, bytes: n, at: time.Now()})
	}
}

// classify turns framing and decoding errors into protocol violations;
// anything else (end of stream, reset, timeout, our own close) is the
// connection simply ending.
func classify(err error) error {
	var reason string
	switch {
	case errors.Is(err, errTooLarge):
		reason = RejectTooLarge
	case errors.Is(err, errNegativeSize):
		reason = RejectNegativeSize
	case errors.Is(err, errUnknownAPI):
		reason = RejectUnknownAPI
	case errors.Is(err, errUnsupportedVersion):
		reason = RejectUnsupportedVersion
	case errors.Is(err, errMalformed):
		reason = RejectMalformed
	default:
		return err
	}
	return &rejectError{reason: reason, err: err}
}
