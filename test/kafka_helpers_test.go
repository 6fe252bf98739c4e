package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Helpers for the Kafka end-to-end tests: one real bin/flotilla process
// driven by franz-go (kgo, kadm, kmsg) and kcat.

// startKafka starts a one-broker cluster and returns once its Kafka port
// answers Metadata with itself registered and a controller elected.
func startKafka(t *testing.T) *node {
	t.Helper()
	nd := newCluster(t, 1)[0]
	nd.start(t)
	nd.waitKafka(t)
	return nd
}

// waitKafka waits until nd serves Metadata on its Kafka port and lists
// itself as a broker and as the controller (after a start or a restart).
func (nd *node) waitKafka(t *testing.T) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(nd.kafka), kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, 15*time.Second, fmt.Sprintf("node %d serves Kafka on %s", nd.id, nd.kafka), func() bool {
		checkStarted(t, nd)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req := kmsg.NewPtrMetadataRequest()
		req.Topics = []kmsg.MetadataRequestTopic{} // none: brokers only
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return false
		}
		for _, b := range resp.Brokers {
			if b.NodeID == int32(nd.id) && resp.ControllerID == int32(nd.id) {
				return true
			}
		}
		return false
	})
}

// clientOpts are the options every test client shares. MetadataMinAge is
// lowered from kgo's 5 s so that a client re-reads metadata promptly after
// LEADER_NOT_AVAILABLE or a restart; it changes how fast a client notices,
// not what it does. Producer settings (idempotence, acks=all, retries) stay
// kgo's defaults unless a test passes its own.
func clientOpts(nd *node) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(nd.kafka),
		kgo.MetadataMinAge(100 * time.Millisecond),
	}
}

// client returns a kgo client of nd, closed when the test ends.
func (nd *node) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(clientOpts(nd), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// admin returns a kadm client of nd, closed when the test ends.
func (nd *node) admin(t *testing.T) *kadm.Client {
	t.Helper()
	return kadm.NewClient(nd.client(t))
}

// testCtx is a context bounded by d and by the test's end.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// createTopic creates a topic with kadm (replication factor 1) and waits
// until every partition has a leader in Metadata.
func createTopic(t *testing.T, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	ctx := testCtx(t, 15*time.Second)
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, topic)
	if err != nil {
		t.Fatalf("CreateTopics %s (%d partitions): %v (response %+v)", topic, partitions, err, resp)
	}
	if resp.NumPartitions != partitions || resp.ReplicationFactor != 1 {
		t.Fatalf("CreateTopics %s: answered %d partitions, rf %d; want %d, 1", topic, resp.NumPartitions, resp.ReplicationFactor, partitions)
	}
	waitTopicReady(t, adm, topic, int(partitions))
}

// waitTopicReady waits until Metadata lists topic with n partitions, each
// without error and with a leader.
func waitTopicReady(t *testing.T, adm *kadm.Client, topic string, n int) {
	t.Helper()
	waitFor(t, 15*time.Second, fmt.Sprintf("topic %s has leaders for its %d partitions", topic, n), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return false
		}
		td, ok := md.Topics[topic]
		if !ok || td.Err != nil || len(td.Partitions) != n {
			return false
		}
		for _, p := range td.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
		return true
	})
}

// words makes values that compress: a batch of them shrinks under every
// codec, so kgo really sends compressed batches (it sends a batch
// uncompressed when compressing does not make it smaller).
var words = []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"}

// randomRecords returns n records for topic with random keys (1-32 bytes),
// values (every third one arbitrary bytes, the rest compressible text, some
// empty), 1-3 headers, and explicit millisecond timestamps spread around
// base, not in order.
func randomRecords(rng *rand.Rand, topic string, n int, base time.Time) []*kgo.Record {
	randBytes := func(lo, hi int) []byte {
		b := make([]byte, lo+rng.IntN(hi-lo+1))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		var value []byte
		switch {
		case i%17 == 0:
			value = []byte{}
		case i%3 == 0:
			value = randBytes(1, 300)
		default:
			var b bytes.Buffer
			for range 1 + rng.IntN(40) {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(' ')
			}
			value = b.Bytes()
		}
		hs := make([]kgo.RecordHeader, 1+rng.IntN(3))
		for j := range hs {
			hs[j] = kgo.RecordHeader{Key: fmt.Sprintf("h%d-%x", j, rng.Uint32()), Value: randBytes(0, 20)}
		}
		recs[i] = &kgo.Record{
			Topic:   topic,
			Key:     randBytes(1, 32),
			Value:   value,
			Headers: hs,
			// Millisecond precision: Kafka keeps no more.
			Timestamp: time.UnixMilli(base.UnixMilli() + int64(rng.IntN(3_600_000)) - 1_800_000),
		}
	}
	return recs
}

// produceAll produces recs asynchronously through cl and waits for every
// promise; each must succeed. kgo sets each record's Partition and Offset
// from the broker's answer.
func produceAll(t *testing.T, ctx context.Context, cl *kgo.Client, recs []*kgo.Record) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, r := range recs {
		wg.Add(1)
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d records failed to produce; first: %v", len(errs), len(recs), errs[0])
	}
}

// consumeAll reads topic from the start with a fresh plain consumer until
// it holds n records and has read every partition to the end offset it
// then has, or ctx ends (a failure). Records past the first n are returned
// too, so that a duplicate or a record too many shows.
func consumeAll(t *testing.T, ctx context.Context, nd *node, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(clientOpts(nd), append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, opts...)...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	next := map[int32]int64{} // per partition, the offset after the last record read
	var ends map[int32]int64
	for len(out) < n || !readTo(next, ends) {
		if len(out) >= n && ends == nil {
			ends = endOffsets(t, kadm.NewClient(cl), topic, 0)
			continue
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume %s: %d of %d records (read to %v of the ends %v) before %v", topic, len(out), n, next, ends, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Errorf("consume %s/%d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			next[r.Partition] = max(next[r.Partition], r.Offset+1)
		})
	}
	return out
}

// readTo reports whether next, the offsets a consumer has read up to, has
// reached ends in every partition; never for nil ends (not listed yet).
func readTo(next, ends map[int32]int64) bool {
	if ends == nil {
		return false
	}
	for p, end := range ends {
		if next[p] < end {
			return false
		}
	}
	return true
}

// checkRoundTrip checks that got is exactly what was produced: each
// produced record (Partition and Offset set by its promise) is read back
// once at its partition and offset with the same key, value, headers and
// timestamp, and each partition's offsets are dense from 0.
func checkRoundTrip(t *testing.T, produced, got []*kgo.Record, partitions int) {
	t.Helper()
	type po struct {
		p int32
		o int64
	}
	want := make(map[po]*kgo.Record, len(produced))
	for _, r := range produced {
		k := po{r.Partition, r.Offset}
		if prev, dup := want[k]; dup {
			t.Fatalf("two produced records were acknowledged at %d/%d: %q and %q", k.p, k.o, prev.Key, r.Key)
		}
		want[k] = r
	}
	perPart := make([][]int64, partitions)
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, r := range got {
		if r.Partition < 0 || int(r.Partition) >= partitions {
			fail("record read from partition %d of a %d-partition topic", r.Partition, partitions)
			continue
		}
		perPart[r.Partition] = append(perPart[r.Partition], r.Offset)
		w, ok := want[po{r.Partition, r.Offset}]
		if !ok {
			fail("record at %d/%d was never acknowledged there (key %x)", r.Partition, r.Offset, r.Key)
			continue
		}
		if d := recordDiff(w, r); d != "" {
			fail("record at %d/%d differs from what was produced: %s", r.Partition, r.Offset, d)
		}
	}
	for p, offs := range perPart {
		// Offsets must come back in order, each once, 0..n-1.
		if !sort.SliceIsSorted(offs, func(i, j int) bool { return offs[i] < offs[j] }) {
			fail("partition %d: offsets not increasing in the order read", p)
		}
		for i, o := range offs {
			if o != int64(i) {
				fail("partition %d: offset %d read in place %d: offsets are not dense from 0 or repeat", p, o, i)
				break
			}
		}
	}
	if len(got) != len(produced) {
		fail("read %d records, produced %d", len(got), len(produced))
	}
	if errs > 10 {
		t.Errorf("... and %d more differences", errs-10)
	}
}

// recordDiff describes how got differs from want in what a producer sets
// and a consumer reads back, or "" if it does not.
func recordDiff(want, got *kgo.Record) string {
	switch {
	case !bytes.Equal(want.Key, got.Key):
		return fmt.Sprintf("key %x, want %x", got.Key, want.Key)
	case !bytes.Equal(want.Value, got.Value):
		return fmt.Sprintf("value %q, want %q", trunc(got.Value), trunc(want.Value))
	case got.Timestamp.UnixMilli() != want.Timestamp.UnixMilli():
		return fmt.Sprintf("timestamp %d, want %d", got.Timestamp.UnixMilli(), want.Timestamp.UnixMilli())
	case len(got.Headers) != len(want.Headers):
		return fmt.Sprintf("%d headers, want %d", len(got.Headers), len(want.Headers))
	}
	for i := range want.Headers {
		w, g := want.Headers[i], got.Headers[i]
		if w.Key != g.Key || !bytes.Equal(w.Value, g.Value) {
			return fmt.Sprintf("header %d is %q=%x, want %q=%x", i, g.Key, g.Value, w.Key, w.Value)
		}
	}
	return ""
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// errCode returns the Kafka error code of a kerr error (0 for nil, -2 for
// an error that is not a Kafka error code).
func errCode(err error) int16 {
	if err == nil {
		return 0
	}
	if ke, ok := err.(*kerr.Error); ok {
		return ke.Code
	}
	return -2
}

// codeName names a Kafka error code for messages.
func codeName(code int16) string {
	if code == 0 {
		return "NONE"
	}
	if err := kerr.ErrorForCode(code); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("code %d", code)
}

// topicMetadata asks nd for one topic with a raw Metadata request (no auto
// creation) and returns its answer.
func topicMetadata(t *testing.T, cl *kgo.Client, topic string) kmsg.MetadataResponseTopic {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, mt)
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(testCtx(t, 5*time.Second), cl)
	if err != nil {
		t.Fatalf("Metadata %s: %v", topic, err)
	}
	if len(resp.Topics) != 1 {
		t.Fatalf("Metadata %s: %d topics in the answer", topic, len(resp.Topics))
	}
	return resp.Topics[0]
}

// metric returns the value of one series of nd's /metrics, written exactly
// as Prometheus prints it (`name{label="v",...}`), or 0 if it is absent (a
// counter with labels appears only once counted).
func (nd *node) metric(t *testing.T, series string) float64 {
	t.Helper()
	v, _ := nd.metricSeries(t, series)
	return v
}

// mustMetric is metric for a series that is always exported, such as a
// gauge: its absence (a renamed series) fails the test instead of reading
// as 0.
func (nd *node) mustMetric(t *testing.T, series string) float64 {
	t.Helper()
	v, ok := nd.metricSeries(t, series)
	if !ok {
		t.Fatalf("/metrics of node %d has no series %s", nd.id, series)
	}
	return v
}

// metricSeries returns the value of one series of nd's /metrics, and
// whether it is there.
func (nd *node) metricSeries(t *testing.T, series string) (float64, bool) {
	t.Helper()
	resp, err := httpClient.Get("http://" + nd.debug + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", sc.Text(), err)
			}
			return v, true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return 0, false
}

// brokerRequest sends req to nd itself, bypassing kgo's routing by
// partition leader, so that the broker's own answer to exactly this request
// is what the test sees (kgo would answer some requests, such as ones for
// partitions it knows nothing of, without sending them).
func brokerRequest[R kmsg.Response](t *testing.T, cl *kgo.Client, nd *node, req kmsg.Request) R {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	// The client must know broker nd.id before it can address it.
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("ping %s: %v", nd.kafka, err)
	}
	resp, err := cl.Broker(int(nd.id)).Request(ctx, req)
	if err != nil {
		t.Fatalf("%s to broker %d: %v", kmsg.NameForKey(req.Key()), nd.id, err)
	}
	return resp.(R)
}

// leaderEpoch returns the leader epoch Metadata reports for partition p of
// topic.
func leaderEpoch(t *testing.T, cl *kgo.Client, topic string, p int32) int32 {
	t.Helper()
	mt := topicMetadata(t, cl, topic)
	for _, mp := range mt.Partitions {
		if mp.Partition == p {
			if mp.ErrorCode != 0 || mp.Leader < 0 {
				t.Fatalf("Metadata %s/%d: %s, leader %d", topic, p, codeName(mp.ErrorCode), mp.Leader)
			}
			return mp.LeaderEpoch
		}
	}
	t.Fatalf("Metadata %s: no partition %d (%s)", topic, p, codeName(mt.ErrorCode))
	return 0
}

// logStart returns the log start offset of partition 0 of topic
// (ListOffsets earliest), failing the test if it cannot.
func logStart(ctx context.Context, t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil || starts.Error() != nil {
		t.Fatalf("ListStartOffsets: %v %v", err, starts.Error())
	}
	o, ok := starts.Lookup(topic, 0)
	if !ok {
		t.Fatalf("ListStartOffsets: no answer for %s/0: %v", topic, starts)
	}
	return o.Offset
}

// waitReloadApplied waits for the broker to log that a SIGHUP applied key,
// and only key. It logs that after Broker.Reload returns, and the running
// partitions may take the new settings before: a test that saw them
// change polls for the line.
func (nd *node) waitReloadApplied(t *testing.T, key string) {
	t.Helper()
	waitFor(t, 15*time.Second, "the reload to report "+key+" as applied", func() bool {
		return strings.Contains(nd.tail(1<<20), `"applied":["`+key+`"]`)
	})
}
