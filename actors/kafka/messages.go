package kafka

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Request is one decoded Kafka request, handed to the Handler inside the
// connection actor that read it. Whoever finishes it answers exactly once by
// sending r.Reply(resp) (or r.NoReply()) to r.ReplyTo, from any actor; the
// connection writes answers in request order whatever order they come in.
// A Request is immutable once delivered, Msg included.
type Request struct {
	// Seq numbers the request on its connection; the answer carries it back.
	Seq uint64
	// Msg is the decoded request body; Msg.GetVersion() is the version the
	// client used, and Msg.ResponseKind() a response of the same version.
	Msg kmsg.Request
	// ClientID is the client id of the request header ("" when null).
	ClientID string
	// ClientHost is the client's IP address, as Kafka reports it for group
	// members.
	ClientHost string
	// ReplyTo is the connection actor that waits for the answer.
	ReplyTo *actor.PID

	// body is the buffer Msg was decoded from, for a request whose handler
	// gives it back to bodies (releaseBody) once nothing reads Msg's byte
	// fields any more; nil otherwise.
	body   []byte
	bodies *bufPool
}

// releaseBody gives the request's buffer back to its pool. Msg's byte
// fields must not be read afterwards.
func (r *Request) releaseBody() {
	if r.body != nil {
		r.bodies.put(r.body)
		r.body = nil
	}
}

// Reply returns the answer that carries resp back to the connection. resp
// must have the request's key and version (Msg.ResponseKind() does).
func (r *Request) Reply(resp kmsg.Response) *Response {
	return &Response{Seq: r.Seq, Msg: resp}
}

// NoReply returns the answer for a request that gets no response on the wire,
// acks=0 Produce: it frees the request's place in the connection's order.
func (r *Request) NoReply() *Response {
	return &Response{Seq: r.Seq}
}

// Response answers the request numbered Seq on the connection it is sent to.
type Response struct {
	Seq uint64
	// Msg is written to the client; nil writes nothing. An acks=0 Produce is
	// never answered on the wire, whatever Msg holds.
	Msg kmsg.Response
	// CloseConn closes the connection once every response before this one,
	// and Msg if set, has been written. Kafka does this, for example, when
	// an acks=0 Produce fails, since the client would not see an error.
	CloseConn bool
	// Release, if not nil, is called once Msg has been encoded for the
	// wire, after which nothing reads what Msg refers to: a handler can
	// reuse the buffers it built Msg from. It is not called for an answer
	// that is never encoded (a closed connection, say); those buffers are
	// left to the garbage collector.
	Release func()
}

// The messages below are internal: the goroutines an actor owns report to it
// through its mailbox.

// requestRead: the reader decoded one request. bytes is its size on the wire,
// which stays counted against the connection's in-flight budget until its
// response is written.
type requestRead struct {
	req   *decodedRequest
	bytes int64
	at    time.Time
}

// readerDone: the reader stopped, at the end of the stream or because the
// client broke the protocol (reject is then the metric reason).
type readerDone struct {
	err    error
	reject string
}

// batchWritten: the writer is done with buf, of which n bytes reached the
// socket; a non-nil err means the connection is broken.
type batchWritten struct {
	buf []byte
	n   int
	err error
}
