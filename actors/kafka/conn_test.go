package kafka

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestApiVersionsAdvertisesWhatIsServed(t *testing.T) {
	b := startBroker(t, nil)
	c := dial(t, b.addr)
	resp := c.apiVersions(7)
	want := []kmsg.ApiVersionsResponseApiKey{
		{ApiKey: 0, MinVersion: 3, MaxVersion: 11},
		{ApiKey: 2, MinVersion: 0, MaxVersion: 8},
		{ApiKey: 3, MinVersion: 0, MaxVersion: 13},
		{ApiKey: 18, MinVersion: 0, MaxVersion: 4},
		{ApiKey: 60, MinVersion: 0, MaxVersion: 2},
	}
	if !slices.EqualFunc(resp.ApiKeys, want, func(a, b kmsg.ApiVersionsResponseApiKey) bool {
		return a.ApiKey == b.ApiKey && a.MinVersion == b.MinVersion && a.MaxVersion == b.MaxVersion
	}) {
		t.Fatalf("advertised %+v\nwant %+v", resp.ApiKeys, want)
	}
}

// TestApiVersionsHeaderIsV0 reads a flexible ApiVersions response byte by
// byte: right after the correlation id comes the error code, not a tag count.
func TestApiVersionsHeaderIsV0(t *testing.T) {
	b := startBroker(t, nil)
	c := dial(t, b.addr)
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 4
	req.ClientSoftwareName, req.ClientSoftwareVersion = "raw", "1.0"
	c.send(req, 1)
	_, body, err := c.readFrame()
	if err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 4
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("body right after the correlation id does not decode: %v", err)
	}
	if resp.ErrorCode != 0 || len(resp.ApiKeys) != 5 {
		t.Fatalf("error %d, %d keys", resp.ErrorCode, len(resp.ApiKeys))
	}
}

func TestApiVersionsRejectsBadSoftwareName(t *testing.T) {
	b := startBroker(t, nil)
	c := dial(t, b.addr)
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "-bad", "1.0"
	c.send(req, 1)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	c.read(resp)
	if resp.ErrorCode != codeInvalidRequest {
		t.Fatalf("error %d, want INVALID_REQUEST", resp.ErrorCode)
	}
}

// TestApiVersionsTooNew is KIP-511: a version we do not have gets
// UNSUPPORTED_VERSION in a v0 response with our versions, on a v0 header.
func TestApiVersionsTooNew(t *testing.T) {
	b := startBroker(t, nil)
	c := dial(t, b.addr)
	// By hand: ApiVersions v99, correlation id 42, client id "x", a flexible
	// header's empty tags, then a body no one can know.
	frame := []byte{0, 0, 0, 0, 0, 18, 0, 99, 0, 0, 0, 42, 0, 1, 'x', 0, 0xde, 0xad, 0xbe, 0xef}
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	c.write(frame)
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	if corr := c.read(resp); corr != 42 {
		t.Fatalf("correlation id %d, want 42", corr)
	}
	if resp.ErrorCode != codeUnsupportedVersion {
		t.Fatalf("error %d, want UNSUPPORTED_VERSION", resp.ErrorCode)
	}
	i := slices.IndexFunc(resp.ApiKeys, func(k kmsg.ApiVersionsResponseApiKey) bool { return k.ApiKey == keyApiVersions })
	if i < 0 || resp.ApiKeys[i].MaxVersion != 4 || len(resp.ApiKeys) != 5 {
		t.Fatalf("fallback lists %+v", resp.ApiKeys)
	}
	// The connection stays usable: the client retries at a version we have.
	c.apiVersions(43)
}

// TestBadInputClosesOnlyThatConnection sends each kind of bad input on its
// own connection: each is closed, the reason counted, and the listener keeps
// serving a connection that was open all along and new ones.
func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	b := startBroker(t, func(o *Options) { o.MaxRequestBytes = 1 << 20; o.Metrics = m })
	bystander := dial(t, b.addr)
	bystander.apiVersions(1)

	frame := func(body ...byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 9
	meta.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("orders")}}
	full := kmsg.NewRequestFormatter().AppendRequest(nil, meta, 5)
	truncated := frame(full[4 : len(full)-3]...)
	produceV1 := kmsg.NewPtrProduceRequest()
	produceV1.Version = 1 // the handler serves v3 and up

	cases := []struct {
		name, reason string
		payload      []byte
	}{
		{"oversized size", RejectTooLarge, binary.BigEndian.AppendUint32(nil, 1<<20+1)},
		{"max int32 size", RejectTooLarge, binary.BigEndian.AppendUint32(nil, 1<<31-1)},
		{"negative size", RejectNegativeSize, binary.BigEndian.AppendUint32(nil, 0xffffffff)},
		{"short header", RejectMalformed, frame(0, 3, 0)},
		{"garbage", RejectMalformed, frame(0, 3, 0, 9, 0, 0, 0, 1, 0x7f, 0x7f, 1, 2, 3)},
		{"unknown api key", RejectUnknownAPI, frame(0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0xff, 0xff)},
		{"api not served", RejectUnknownAPI, frame(0, 1, 0, 4, 0, 0, 0, 1, 0xff, 0xff)}, // Fetch
		{"version not served", RejectUnsupportedVersion, kmsg.NewRequestFormatter().AppendRequest(nil, produceV1, 3)},
		{"truncated body", RejectMalformed, truncated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := metricValue(t, m.rejected.WithLabelValues(tc.reason))
			c := dial(t, b.addr)
			c.write(tc.payload)
			c.expectClosed()
			waitFor(t, "the rejection to be counted", func() bool {
				return metricValue(t, m.rejected.WithLabelValues(tc.reason)) == before+1
			})
			dial(t, b.addr).apiVersions(2)
		})
	}
	bystander.apiVersions(3)
}

// TestResponsesLeaveInRequestOrder has the handler answer in reverse order:
// the client still reads them in the order it asked.
func TestResponsesLeaveInRequestOrder(t *testing.T) {
	b := startBroker(t, nil)
	c := dial(t, b.addr)
	const n = 20
	for i := range n {
		c.send(produceRequest(1, 10), int32(100+i))
	}
	reqs := make([]*Request, n)
	for i := range reqs {
		reqs[i] = b.handler.next(t)
	}
	for i := n - 1; i >= 0; i-- {
		b.sys.Root.Send(reqs[i].ReplyTo, produceResponse(reqs[i]))
	}
	for i := range n {
		resp := kmsg.NewPtrProduceResponse()
		resp.Version = 9
		if corr := c.read(resp); corr != int32(100+i) {
			t.Fatalf("response %d has correlation id %d, want %d", i, corr, 100+i)
		}
	}
}

// TestAcksZeroGetsNoResponse: an acks=0 Produce takes a place in the order but
// nothing is written for it, even if the handler answers with a body.
func TestAcksZeroGetsNoResponse(t *testing.T) {
	b := startBroker(t, nil)
	c := dial(t, b.addr)
	c.send(produceRequest(0, 10), 1)
	c.send(produceRequest(0, 10), 2)
	c.send(produceRequest(-1, 10), 3)
	first, second, third := b.handler.next(t), b.handler.next(t), b.handler.next(t)
	b.sys.Root.Send(third.ReplyTo, produceResponse(third))
	b.sys.Root.Send(second.ReplyTo, produceResponse(second)) // a body, which must not be written
	b.sys.Root.Send(first.ReplyTo, first.NoReply())
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 9
	if corr := c.read(resp); corr != 3 {
		t.Fatalf("first response has correlation id %d, want 3", corr)
	}
	c.send(produceRequest(1, 10), 4)
	fourth := b.handler.next(t)
	b.sys.Root.Send(fourth.ReplyTo, produceResponse(fourth))
	if corr := c.read(resp); corr != 4 {
		t.Fatalf("next response has correlation id %d, want 4", corr)
	}
}

// TestBackpressure: past MaxInflightBytes the connection stops reading, and
// resumes as responses are written.
func TestBackpressure(t *testing.T) {
	const limit = 2000
	b := startBroker(t, func(o *Options) { o.MaxInflightBytes = limit })
	c := dial(t, b.addr)
	const n = 30
	sizes := len(kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw-test")).AppendRequest(nil, produceRequest(1, 500), 0))
	go func() {
		for i := range n {
			_, _ = c.conn.Write(c.fmt.AppendRequest(nil, produceRequest(1, 500), int32(i)))
		}
	}()
	// The reader admits requests until the bytes in flight pass the limit.
	admitted := limit/sizes + 1
	var held []*Request
	for range admitted {
		held = append(held, b.handler.next(t))
	}
	select {
	case <-b.handler.reqs:
		t.Fatalf("request %d was read with %d bytes already in flight", len(held), len(held)*sizes)
	case <-time.After(200 * time.Millisecond):
	}
	answered := 0
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 9
	for answered < n {
		if len(held) == 0 {
			held = append(held, b.handler.next(t))
		}
		r := held[0]
		held = held[1:]
		b.sys.Root.Send(r.ReplyTo, produceResponse(r))
		if corr := c.read(resp); corr != int32(answered) {
			t.Fatalf("response %d has correlation id %d", answered, corr)
		}
		answered++
	}
}

// TestCloseConnAfterEarlierResponses: an answer asking to close the
// connection closes it after the responses before it are written.
func TestCloseConnAfterEarlierResponses(t *testing.T) {
	b := startBroker(t, nil)
	c := dial(t, b.addr)
	c.send(produceRequest(1, 1), 1)
	c.send(produceRequest(0, 1), 2)
	first, second := b.handler.next(t), b.handler.next(t)
	b.sys.Root.Send(second.ReplyTo, &Response{Seq: second.Seq, CloseConn: true})
	b.sys.Root.Send(first.ReplyTo, produceResponse(first))
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 9
	if corr := c.read(resp); corr != 1 {
		t.Fatalf("correlation id %d, want 1", corr)
	}
	c.expectClosed()
}

// TestWrongResponseClosesConnection: an answer of another version than the
// request's would corrupt the client's stream; the connection is closed.
func TestWrongResponseClosesConnection(t *testing.T) {
	b := startBroker(t, nil)
	c := dial(t, b.addr)
	c.send(produceRequest(1, 1), 1)
	r := b.handler.next(t)
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 3
	b.sys.Root.Send(r.ReplyTo, r.Reply(resp))
	c.expectClosed()
}

// panickyResponse is a Produce response whose encoding panics, as kmsg's
// does on a nil where the protocol has no null.
type panickyResponse struct{ *kmsg.ProduceResponse }

func (panickyResponse) AppendTo([]byte) []byte { panic("nil where the protocol has no null") }

// TestUnencodableResponseClosesConnection: a response that cannot be encoded
// closes its connection, and only that: the broker keeps serving.
func TestUnencodableResponseClosesConnection(t *testing.T) {
	b := startBroker(t, nil)
	c := dial(t, b.addr)
	c.send(produceRequest(1, 1), 1)
	r := b.handler.next(t)
	b.sys.Root.Send(r.ReplyTo, r.Reply(panickyResponse{r.Msg.ResponseKind().(*kmsg.ProduceResponse)}))
	c.expectClosed()
	dial(t, b.addr).apiVersions(1)
}

func TestIdleConnectionIsClosed(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.IdleTimeout = 100 * time.Millisecond })
	c := dial(t, b.addr)
	c.apiVersions(1)
	c.expectClosed()
}

func TestStoppingListenerClosesConnections(t *testing.T) {
	b := startBroker(t, nil)
	c := dial(t, b.addr)
	c.apiVersions(1)
	b.sys.Root.Stop(b.pid)
	c.expectClosed()
}

func TestMetricsCountRequestsAndConnections(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	b := startBroker(t, func(o *Options) { o.Metrics = m })
	c := dial(t, b.addr)
	c.apiVersions(1)
	c.send(produceRequest(0, 10), 2)
	r := b.handler.next(t)
	b.sys.Root.Send(r.ReplyTo, r.NoReply())
	waitFor(t, "requests counted", func() bool {
		return metricValue(t, m.requests.WithLabelValues("ApiVersions", OutcomeAnswered)) == 1 &&
			metricValue(t, m.requests.WithLabelValues("Produce", OutcomeNoResponse)) == 1
	})
	if got := metricValue(t, m.open); got != 1 {
		t.Fatalf("%v open connections, want 1", got)
	}
	if metricValue(t, m.bytesReceived) == 0 || metricValue(t, m.bytesSent) == 0 {
		t.Fatal("bytes not counted")
	}
	if n := histogramCount(t, m.latency.WithLabelValues("ApiVersions")); n != 1 {
		t.Fatalf("ApiVersions latency has %d observations, want 1", n)
	}
	c.send(produceRequest(1, 10), 3)
	b.handler.next(t) // never answered
	c.conn.Close()
	waitFor(t, "the connection to close", func() bool {
		return metricValue(t, m.open) == 0 &&
			metricValue(t, m.requests.WithLabelValues("Produce", OutcomeAbandoned)) == 1
	})
}

// TestHandlerPanicClosesOnlyItsConnection: a connection actor that fails is
// stopped, closing its connection; the listener and other connections go on.
func TestHandlerPanicClosesOnlyItsConnection(t *testing.T) {
	b := startBroker(t, nil)
	b.handler.inline = func(r *Request) *Response {
		if r.ClientID == "doomed" {
			panic("handler bug")
		}
		return produceResponse(r)
	}
	other := dial(t, b.addr)
	other.apiVersions(1)
	c := dial(t, b.addr)
	c.fmt = kmsg.NewRequestFormatter(kmsg.FormatterClientID("doomed"))
	c.send(produceRequest(1, 1), 1)
	c.expectClosed()
	other.send(produceRequest(1, 1), 2)
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 9
	if corr := other.read(resp); corr != 2 {
		t.Fatalf("correlation id %d", corr)
	}
	dial(t, b.addr).apiVersions(3)
}

// fetchHandler serves Fetch only, answering at once with the bytes of
// payloads that each request's FetchOffset names.
type fetchHandler struct {
	*testHandler
}

func (fetchHandler) Versions() []ApiRange   { return []ApiRange{{Key: 1, Min: 4, Max: 12}} }
func (h fetchHandler) NewConn() ConnHandler { return h }

// TestLargeResponsesComeBackWhole: Fetch responses larger than a
// connection keeps its write buffer for, some in one batch, some one after
// the other, with small ones between, each arrive byte for byte, however
// the connection reuses buffers from the listener's pool.
func TestLargeResponsesComeBackWhole(t *testing.T) {
	sizes := []int{3 << 20, 100, 5 << 20, 2 << 20, keepWriteBytes + 1, 7 << 20, 10, maxPooledWrite + 1, 6 << 20}
	rng := rand.NewChaCha8([32]byte{7})
	payloads := make([][]byte, len(sizes))
	for i, n := range sizes {
		payloads[i] = make([]byte, n)
		rng.Read(payloads[i])
	}
	h := fetchHandler{newTestHandler()}
	h.inline = func(r *Request) *Response {
		req := r.Msg.(*kmsg.FetchRequest)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = req.Topics[0].Topic
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.RecordBatches = payloads[req.Topics[0].Partitions[0].FetchOffset]
		rt.Partitions = append(rt.Partitions, rp)
		resp.Topics = append(resp.Topics, rt)
		return r.Reply(resp)
	}
	b := startBroker(t, func(o *Options) {
		o.Handler = h
		o.MaxInflightBytes = 64 << 20
	})
	fetch := func(c *rawClient, i int) {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 12
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "orders"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset = int64(i)
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		c.send(req, int32(i))
	}
	check := func(c *rawClient, i int) error {
		corr, body, err := c.readFrame()
		if err != nil {
			return err
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = 12
		if body, err = skipTags(body); err == nil {
			err = resp.ReadFrom(body)
		}
		switch {
		case err != nil:
			return fmt.Errorf("response %d: %w", i, err)
		case corr != int32(i):
			return fmt.Errorf("response has correlation id %d, want %d", corr, i)
		case !bytes.Equal(resp.Topics[0].Partitions[0].RecordBatches, payloads[i]):
			return fmt.Errorf("response %d: the bytes differ from the %d sent", i, len(payloads[i]))
		}
		return nil
	}
	c := dial(t, b.addr)
	for i := range payloads { // one after the other
		fetch(c, i)
		if err := check(c, i); err != nil {
			t.Fatal(err)
		}
	}
	// All at once, on two connections that share the listener's pool, a
	// few times over: a buffer released too early is caught only when
	// the other connection happens to take it meanwhile.
	clients := []*rawClient{c, dial(t, b.addr)}
	for range 3 {
		for _, c := range clients {
			for i := range payloads {
				fetch(c, i)
			}
		}
		errs := make(chan error, len(clients))
		for _, c := range clients {
			go func() {
				for i := range payloads {
					if err := check(c, i); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range clients {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
}
