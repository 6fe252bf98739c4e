package kafka

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// keepWriteBytes is the largest write buffer a connection keeps between
// batches; a bigger one is released so an idle connection pins little.
const keepWriteBytes = 1 << 20

// connConfig is what every connection of a listener shares. It is immutable.
type connConfig struct {
	handler          Handler
	source           MetadataSource
	served           *versions
	maxRequestBytes  int
	maxInflightBytes int64
	idleTimeout      time.Duration
	writeTimeout     time.Duration
	metrics          *Metrics
	log              zerolog.Logger
	sender           actor.SenderContext // for the goroutines, which have no actor context
	bodies           *bufPool            // produce request buffers; nil allocates each
	writeBufs        *bufPool            // response buffers above keepWriteBytes; nil allocates each
}

// Conn is the actor that owns one client connection. Its reader goroutine
// decodes requests into its mailbox; it serves ApiVersions, Metadata and
// DescribeCluster itself and hands everything else to the Handler; answers
// come back as *Response in any order and leave in request order through its
// writer goroutine.
type Conn struct {
	conn net.Conn
	cfg  *connConfig
	log  zerolog.Logger
	host string
	self *actor.PID
	h    ConnHandler

	gate   *inflightGate
	writes chan []byte // to the writer; sent to only when it is idle
	queue  orderQueue

	// fetching is set from the time a Fetch goes to the handler until its
	// answer is handed to the writer; the Fetches read meanwhile wait in
	// heldFetches. A client pipelining Fetches without reading the answers
	// then makes the connection hold one answer at a time, not one per
	// Fetch (Kafka serves one request of a connection at a time).
	fetching    bool
	heldFetches []*Request

	writing      bool
	writingBytes int64  // request bytes released when the batch in the writer is written
	spare        []byte // the writer's last buffer, reused for the next batch
	closing      bool   // close once the batch in the writer is written
	stopped      bool
}

func newConn(conn net.Conn, cfg *connConfig) *Conn {
	remote := conn.RemoteAddr().String()
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		// Kafka reports Java's InetAddress.toString(): "/127.0.0.1".
		host = "/" + h
	}
	return &Conn{
		conn:   conn,
		cfg:    cfg,
		log:    cfg.log.With().Str("remote", remote).Logger(),
		host:   host,
		gate:   newInflightGate(cfg.maxInflightBytes),
		writes: make(chan []byte, 1),
	}
}

// Receive implements actor.Actor.
func (c *Conn) Receive(ctx actor.Context) {
	if c.stopped {
		return
	}
	switch msg := ctx.Message().(type) {
	case *requestRead:
		c.request(ctx, msg)
	case *Response:
		c.respond(ctx, msg)
	case *batchWritten:
		c.written(ctx, msg)
	case *readerDone:
		c.readerDone(ctx, msg)
	case *actor.Started:
		c.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		c.stop()
	case *actor.Stopped, *actor.Terminated:
	default:
		c.h.Receive(ctx, msg)
	}
}

func (c *Conn) start(ctx actor.Context) {
	c.self = ctx.Self()
	c.h = c.cfg.handler.NewConn()
	c.cfg.metrics.connOpened()
	c.log.Debug().Msg("kafka connection opened")
	r := &connReader{
		conn: c.conn, cfg: c.cfg, gate: c.gate, pid: c.self,
	}
	go r.run()
	go runWriter(c.conn, c.writes, c.gate.done, c.cfg.writeTimeout, c.cfg.sender, c.self)
}

// request takes a decoded request: the built-in APIs are answered at once,
// the rest go to the handler.
func (c *Conn) request(ctx actor.Context, msg *requestRead) {
	if c.closing {
		return // read after an answer that closes the connection: never answered
	}
	d := msg.req
	p := pending{correlationID: d.correlationID, key: d.key, version: d.version, bytes: msg.bytes, start: msg.at}
	if pr, ok := d.msg.(*kmsg.ProduceRequest); ok && pr.Acks == 0 {
		p.noResponse = true
	}
	seq := c.queue.push(p)
	switch m := d.msg.(type) {
	case nil:
		c.complete(ctx, seq, unsupportedApiVersionsResponse(c.cfg.served), false, OutcomeUnsupported)
	case *kmsg.ApiVersionsRequest:
		c.complete(ctx, seq, apiVersionsResponse(m, c.cfg.served), false, OutcomeAnswered)
	case *kmsg.MetadataRequest:
		c.complete(ctx, seq, metadataResponse(m, c.cfg.source), false, OutcomeAnswered)
	case *kmsg.DescribeClusterRequest:
		c.complete(ctx, seq, describeClusterResponse(m, c.cfg.source), false, OutcomeAnswered)
	default:
		var clientID string
		if d.clientID != nil {
			clientID = *d.clientID
		}
		r := &Request{Seq: seq, Msg: m, ClientID: clientID, ClientHost: c.host, ReplyTo: c.self, body: d.body, bodies: d.bodies}
		if _, ok := m.(*kmsg.FetchRequest); ok {
			if c.fetching {
				c.heldFetches = append(c.heldFetches, r)
				return
			}
			c.fetching = true
		}
		c.h.Serve(ctx, r)
	}
}

// nextFetch serves the oldest held Fetch once the last one's answer has
// gone to the writer.
func (c *Conn) nextFetch(ctx actor.Context) {
	if c.fetching || len(c.heldFetches) == 0 || c.closing {
		return
	}
	r := c.heldFetches[0]
	c.heldFetches[0] = nil
	c.heldFetches = c.heldFetches[1:]
	c.fetching = true
	c.h.Serve(ctx, r)
}

// respond takes the handler's answer to one request.
func (c *Conn) respond(ctx actor.Context, msg *Response) {
	p := c.queue.get(msg.Seq)
	if p == nil || p.done {
		c.log.Warn().Uint64("seq", msg.Seq).Msg("dropped an answer to a request that is not waiting for one")
		return
	}
	if r := msg.Msg; r != nil && !p.noResponse && (r.Key() != p.key || r.GetVersion() != p.version) {
		c.reject(ctx, RejectBadResponse, fmt.Errorf("answer to %s v%d is %s v%d",
			apiName(p.key), p.version, apiName(r.Key()), r.GetVersion()))
		return
	}
	outcome := OutcomeAnswered
	switch {
	case msg.CloseConn:
		outcome = OutcomeClosed
	case msg.Msg == nil || p.noResponse:
		outcome = OutcomeNoResponse
	}
	if msg.Msg != nil && !p.noResponse {
		p.release = msg.Release
	}
	c.complete(ctx, msg.Seq, msg.Msg, msg.CloseConn, outcome)
}

// complete records the answer of request seq and writes what is ready.
func (c *Conn) complete(ctx actor.Context, seq uint64, resp kmsg.Response, closeConn bool, outcome string) {
	p := c.queue.get(seq)
	p.done, p.close = true, closeConn
	if !p.noResponse {
		p.resp = resp
	}
	c.cfg.metrics.request(p.key, outcome, time.Since(p.start))
	c.flush(ctx)
}

// flush hands every response that is ready, in order, to the writer as one
// batch, unless the writer is busy: then they wait and join the next batch.
func (c *Conn) flush(ctx actor.Context) {
	if c.writing || c.closing {
		return
	}
	buf := c.spare[:0]
	c.spare = nil
	var hold int64
	for {
		p, ok := c.queue.pop()
		if !ok {
			break
		}
		if p.key == kmsg.Fetch.Int16() {
			c.fetching = false
		}
		if p.resp == nil {
			c.gate.release(p.bytes)
		} else {
			var err error
			if buf, err = encodeResponse(buf, &p, c.growWrite); err != nil {
				c.log.Error().Err(err).Str("api", apiName(p.key)).Int16("api_version", p.version).
					Msg("cannot encode a response; closing the connection")
				c.cfg.metrics.reject(RejectBadResponse)
				ctx.Stop(c.self)
				return
			}
			if p.release != nil {
				p.release()
			}
			hold += p.bytes
		}
		if p.close {
			c.closing = true
			break
		}
	}
	if len(buf) == 0 {
		c.spare = buf
		if c.closing {
			ctx.Stop(c.self)
			return
		}
		c.nextFetch(ctx)
		return
	}
	c.writing, c.writingBytes = true, hold
	c.writes <- buf
	c.nextFetch(ctx)
}

// growWrite makes room for need bytes in buf when they do not fit and are
// more than a connection keeps for itself: it returns buf's bytes in a
// buffer from the listener's pool, and gives a large buf back to it.
// Encoding a large Fetch response into a buffer that append grows would
// allocate and clear a new one each time. Smaller needs are left to
// append, which grows by doubling.
func (c *Conn) growWrite(buf []byte, need int) []byte {
	if need <= cap(buf) || need <= keepWriteBytes {
		return buf
	}
	grown := append(c.cfg.writeBufs.get(need)[:0], buf...)
	if cap(buf) > keepWriteBytes {
		c.cfg.writeBufs.put(buf)
	}
	return grown
}

// encodeResponse appends p's response, after grow has made room for what
// it is expected to take, turning a panic in the handler's response (a nil
// where the protocol has no null) into an error.
func encodeResponse(dst []byte, p *pending, grow func(buf []byte, need int) []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("encode %s v%d: %v\n%s", apiName(p.key), p.version, r, debug.Stack())
		}
	}()
	dst = grow(dst, len(dst)+responseHeaderBytes+sizeHint(p.resp))
	return appendResponse(dst, p.correlationID, p.resp), nil
}

// written takes the writer's report on the last batch.
func (c *Conn) written(ctx actor.Context, msg *batchWritten) {
	c.writing = false
	if msg.err != nil {
		c.log.Debug().Err(msg.err).Msg("kafka connection write failed")
		ctx.Stop(c.self)
		return
	}
	c.cfg.metrics.sent(msg.n)
	c.gate.release(c.writingBytes)
	c.writingBytes = 0
	if cap(msg.buf) <= keepWriteBytes {
		c.spare = msg.buf[:0]
	} else {
		c.cfg.writeBufs.put(msg.buf)
	}
	if c.closing {
		ctx.Stop(c.self)
		return
	}
	c.flush(ctx)
}

func (c *Conn) readerDone(ctx actor.Context, msg *readerDone) {
	switch {
	case msg.reject != "":
		c.cfg.metrics.reject(msg.reject)
		c.log.Warn().Str("reason", msg.reject).Err(msg.err).Msg("closed kafka connection that broke the protocol")
	case errors.Is(msg.err, io.EOF), errors.Is(msg.err, net.ErrClosed):
		// The client hung up.
	case errors.Is(msg.err, os.ErrDeadlineExceeded):
		c.log.Debug().Dur("idle_timeout_ms", c.cfg.idleTimeout).Msg("closing idle kafka connection")
	default:
		c.log.Debug().Err(msg.err).Msg("kafka connection read failed")
	}
	ctx.Stop(c.self)
}

// reject closes the connection for an answer that breaks the protocol.
func (c *Conn) reject(ctx actor.Context, reason string, err error) {
	c.cfg.metrics.reject(reason)
	c.log.Error().Str("reason", reason).Err(err).Msg("closing kafka connection")
	ctx.Stop(c.self)
}

// stop releases everything the connection owns. The reader and the writer
// see the socket closed and the gate's done channel, and exit without
// reporting.
func (c *Conn) stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	c.gate.close()
	c.conn.Close()
	close(c.writes)
	for _, p := range c.queue.drain() {
		if !p.done {
			c.cfg.metrics.request(p.key, OutcomeAbandoned, 0)
		}
	}
	if cl, ok := c.h.(ConnCloser); ok {
		cl.Close()
	}
	c.cfg.metrics.connClosed()
	c.log.Debug().Msg("kafka connection closed")
}
