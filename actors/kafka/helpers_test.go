package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 5 * time.Second

// testSource is a fixed MetadataSource that records the queries it gets.
type testSource struct {
	cluster Cluster
	topics  []Topic

	mu      sync.Mutex
	queries []TopicQuery
}

func (s *testSource) Cluster() Cluster { return s.cluster }

func (s *testSource) Topics(q TopicQuery) []Topic {
	s.mu.Lock()
	s.queries = append(s.queries, q)
	s.mu.Unlock()
	if q.All {
		return s.topics
	}
	var out []Topic
	for _, t := range s.topics {
		for _, n := range q.Names {
			if t.Name == n {
				out = append(out, t)
			}
		}
		for _, id := range q.IDs {
			if t.ID == id {
				out = append(out, t)
			}
		}
	}
	return out
}

func (s *testSource) lastQuery() TopicQuery {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queries) == 0 {
		return TopicQuery{}
	}
	return s.queries[len(s.queries)-1]
}

// testHandler serves Produce and ListOffsets. By default it hands every
// request to the test through reqs, so the test decides when and how each is
// answered; with inline set it answers at once.
type testHandler struct {
	reqs   chan *Request
	inline func(*Request) *Response
}

func newTestHandler() *testHandler { return &testHandler{reqs: make(chan *Request, 1024)} }

func (h *testHandler) Versions() []ApiRange {
	return []ApiRange{{Key: 0, Min: 3, Max: 11}, {Key: 2, Min: 0, Max: 8}}
}

func (h *testHandler) NewConn() ConnHandler { return h }

func (h *testHandler) Receive(actor.Context, any) {}

func (h *testHandler) Serve(ctx actor.Context, r *Request) {
	if h.inline != nil {
		ctx.Send(r.ReplyTo, h.inline(r))
		return
	}
	h.reqs <- r
}

// next returns the next request the handler got.
func (h *testHandler) next(t *testing.T) *Request {
	t.Helper()
	select {
	case r := <-h.reqs:
		return r
	case <-time.After(testTimeout):
		t.Fatal("the handler got no request")
		return nil
	}
}

// produceResponse is a successful answer to a Produce request.
func produceResponse(r *Request) *Response {
	req := r.Msg.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = p.Partition
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return r.Reply(resp)
}

// testBroker is a listener on 127.0.0.1 with a test handler and source.
type testBroker struct {
	sys     *actors.System
	pid     *actor.PID
	addr    string
	handler *testHandler
	source  *testSource
}

// startBroker starts a listener; edit tweaks its options.
func startBroker(t *testing.T, edit func(*Options)) *testBroker {
	t.Helper()
	return startBrokerIn(t, func(_ *actors.System, o *Options) {
		if edit != nil {
			edit(o)
		}
	})
}

// startBrokerIn starts a listener; edit tweaks its options and may spawn
// the actors its handler talks to in the listener's actor system.
func startBrokerIn(t *testing.T, edit func(*actors.System, *Options)) *testBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lw := &testLogWriter{t: t}
	log := zerolog.New(lw).Level(zerolog.InfoLevel)
	sys := actors.NewSystem(log)
	b := &testBroker{sys: sys, addr: ln.Addr().String(), handler: newTestHandler()}
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	b.source = &testSource{
		cluster: Cluster{ClusterID: "test-cluster", ControllerID: 1, Brokers: []Broker{
			{NodeID: 1, Host: "127.0.0.1", Port: port},
		}},
		topics: []Topic{
			{Name: "orders", ID: [16]byte{1}, Partitions: []Partition{
				{Partition: 0, Leader: 1, LeaderEpoch: 4, Replicas: []int32{1}, ISR: []int32{1}},
				{Partition: 1, Leader: 1, LeaderEpoch: 2, Replicas: []int32{1}, ISR: []int32{1}},
			}},
			{Name: "audit", ID: [16]byte{2}, Partitions: []Partition{
				{Partition: 0, Leader: -1, LeaderEpoch: 1, Replicas: []int32{1, 2}, ISR: []int32{}, Offline: []int32{1}},
			}},
		},
	}
	opts := Options{Handler: b.handler, Metadata: b.source, Log: log}
	edit(sys, &opts)
	b.pid, err = StartListener(sys, ln, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sys.Root.Stop(b.pid)
		waitFor(t, "every actor to stop", func() bool { return len(sys.List()) == 0 })
		lw.close()
		sys.Shutdown()
	})
	return b
}

// testLogWriter logs to the test until it ends; protoactor may still log
// (dead letters) after that, which testing does not allow.
type testLogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

func (w *testLogWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// rawClient speaks the Kafka framing by hand, so tests can send anything.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	fmt  *kmsg.RequestFormatter
}

func dial(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw-test"))}
}

// send writes one request at its set version.
func (c *rawClient) send(req kmsg.Request, correlationID int32) {
	c.t.Helper()
	c.write(c.fmt.AppendRequest(nil, req, correlationID))
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if err := c.conn.SetWriteDeadline(time.Now().Add(testTimeout)); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readFrame reads one response and returns its body after the correlation id.
func (c *rawClient) readFrame() (int32, []byte, error) { return c.readFrameWithin(testTimeout) }

// readFrameWithin is readFrame for a response that may take up to d.
func (c *rawClient) readFrameWithin(d time.Duration) (int32, []byte, error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return 0, nil, err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c.conn, hdr[:]); err != nil {
		return 0, nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(c.conn, body); err != nil {
		return 0, nil, err
	}
	if len(body) < 4 {
		return 0, nil, fmt.Errorf("response of %d bytes has no correlation id", len(body))
	}
	return int32(binary.BigEndian.Uint32(body)), body[4:], nil
}

// read reads one response into resp, whose version must be set, checking the
// header version: v1 (tagged fields) for flexible responses but ApiVersions.
func (c *rawClient) read(resp kmsg.Response) int32 {
	c.t.Helper()
	return c.readWithin(resp, testTimeout)
}

// readWithin is read for a response that may take up to d.
func (c *rawClient) readWithin(resp kmsg.Response, d time.Duration) int32 {
	c.t.Helper()
	corr, body, err := c.readFrameWithin(d)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	if resp.IsFlexible() && resp.Key() != keyApiVersions {
		if body, err = skipTags(body); err != nil {
			c.t.Fatalf("response header tags: %v", err)
		}
	}
	if err := resp.ReadFrom(body); err != nil {
		c.t.Fatalf("decode %s v%d response: %v", apiName(resp.Key()), resp.GetVersion(), err)
	}
	return corr
}

// expectClosed checks that the broker closes the connection without writing
// anything more.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	if err := c.conn.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		c.t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, c.conn)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		c.t.Fatal("the broker did not close the connection")
	case n != 0:
		c.t.Fatalf("the broker wrote %d bytes before closing", n)
	}
}

// apiVersions asks for the broker's versions on c and checks the answer.
func (c *rawClient) apiVersions(correlationID int32) *kmsg.ApiVersionsResponse {
	c.t.Helper()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "raw", "1.0"
	c.send(req, correlationID)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if got := c.read(resp); got != correlationID {
		c.t.Fatalf("correlation id %d, want %d", got, correlationID)
	}
	if resp.ErrorCode != 0 {
		c.t.Fatalf("ApiVersions error %d", resp.ErrorCode)
	}
	return resp
}

// produceRequest is a Produce v9 (flexible) request for one partition,
// carrying pad bytes of fake records.
func produceRequest(acks int16, pad int) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks = acks
	req.TimeoutMillis = 1000
	t := kmsg.NewProduceRequestTopic()
	t.Topic = "orders"
	p := kmsg.NewProduceRequestTopicPartition()
	p.Records = make([]byte, pad)
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	return req
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("metric %v is neither a counter nor a gauge", c.Desc())
	return 0
}

// histogramCount reads a histogram's number of observations.
func histogramCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// ordersState is a caught-up controller state with one broker and topic
// "orders" of two partitions on it; it returns the topic's id, which the
// tests' replicas of it must carry.
func ordersState(t *testing.T) (*controller.StateMachine, controller.TopicID) {
	t.Helper()
	sm := controller.NewStateMachine(zerolog.Nop())
	sm.MarkCaughtUp()
	id := controller.NewTopicID()
	for i, c := range []*controller.Command{
		{RegisterBroker: &controller.RegisterBroker{NodeID: 1, KafkaAddr: "127.0.0.1:9092"}},
		{CreateTopic: &controller.CreateTopic{Name: "orders", ID: id, Replicas: [][]uint64{{1}, {1}}}},
	} {
		sm.Apply(uint64(i+1), 1, c.Encode())
	}
	return sm, id
}
