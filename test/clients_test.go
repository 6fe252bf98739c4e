package test

// Client compatibility: every Kafka client we can run here produces to a
// real bin/flotilla and consumes from it with its default settings, both
// as a plain partition consumer (this file) and in a consumer group
// (clients_groups_test.go).
//
//   - franz-go: kafka_test.go (TestKafkaRoundTrip) and the rest of the
//     suite; its group consumer in groups_test.go and
//     groups_cluster_test.go.
//   - librdkafka: kcat_test.go (TestKcat) with explicit codecs and
//     idempotence, and TestLibrdkafkaDefaults below with kcat's defaults,
//     topic auto-creation included; TestKcatGroup runs two `kcat -G` in
//     one group. confluent-kafka-go is librdkafka behind cgo and speaks
//     the same protocol, so it is not tested separately.
//   - sarama (IBM/sarama): TestSarama, default and idempotent producer,
//     partition consumer; TestSaramaGroup, ConsumerGroup members joining,
//     sharing and handing over partitions.
//   - segmentio/kafka-go: TestKafkaGo, kafka.Writer and a partition
//     kafka.Reader (no GroupID); TestKafkaGoGroup, a Reader with a GroupID
//     committing each message.
//   - kafkajs: TestKafkaJS runs test/kafkajs/produce.js under node and
//     reads back with franz-go, since a kafkajs consumer is always a group
//     member, and the plain consumer's byte-for-byte checks are wanted
//     here; TestKafkaJSGroup runs test/kafkajs/consume.js, its group
//     consumer.
//   - The Apache Kafka Java client (3.4.1): java_test.go. Maven Central is
//     not reachable here, so java_helpers_test.go builds it from Kafka's
//     source tree (from the Go module proxy) with javac and Debian's jars
//     (test/java/build.sh), and drives test/java/Flotilla.java: the
//     default producer with each codec, assign() and group consumers, the
//     Admin client, and the producer through a leader's SIGKILL.
//
// Each group test consumes, commits, and resumes from the commits in a
// later member of the group, and checks with kadm (DescribeGroups,
// FetchOffsets) that the broker shows the group and the offsets the client
// committed.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// clientRecords is how many records each client test produces.
const clientRecords = 2000

// testRecord is one record a client test produces. Its key starts with its
// index in six decimal digits, so that whatever a consumer reads can be
// matched with what was produced without trusting the broker's answers.
type testRecord struct {
	Key, Value []byte
}

// makeTestRecords returns n records with distinct binary keys (the index,
// then 0-24 random bytes) and non-empty values: most arbitrary bytes (1 to
// 1000 of them), every fourth compressible text.
func makeTestRecords(seed uint64, n int) []testRecord {
	rng := rand.New(rand.NewPCG(seed, 0xc11e))
	randBytes := func(lo, hi int) []byte {
		b := make([]byte, lo+rng.IntN(hi-lo+1))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	recs := make([]testRecord, n)
	for i := range recs {
		key := append(fmt.Appendf(nil, "%06d", i), randBytes(0, 24)...)
		var value []byte
		if i%4 == 0 {
			var b bytes.Buffer
			for range 1 + rng.IntN(40) {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(' ')
			}
			value = b.Bytes()
		} else {
			value = randBytes(1, 1000)
		}
		recs[i] = testRecord{Key: key, Value: value}
	}
	return recs
}

// recordIndex returns the index a testRecord key starts with.
func recordIndex(key []byte) (int, bool) {
	if len(key) < 6 {
		return 0, false
	}
	i, err := strconv.Atoi(string(key[:6]))
	return i, err == nil && i >= 0
}

// readRecord is a record as a consumer read it.
type readRecord struct {
	Partition  int32
	Offset     int64
	Key, Value []byte
}

// checkReadBack checks that got, the records read back partition by
// partition from the start, is exactly want: every produced record read
// once, key and value byte for byte, and each partition's offsets dense
// from 0 in the order read. With ordered, it also checks that within each
// partition the records are in the order they were produced (one producer
// that waits for each batch's answer before sending the partition's next
// one). It returns where each produced record was read (by index); the
// test stops if the check fails.
func checkReadBack(t *testing.T, want []testRecord, got []readRecord, ordered bool) map[int]readRecord {
	t.Helper()
	at := make(map[int]readRecord, len(got))
	nextOffset := map[int32]int64{}
	lastIndex := map[int32]int{}
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, r := range got {
		if r.Offset != nextOffset[r.Partition] {
			fail("partition %d: read offset %d where %d was next: offsets not dense from 0, or repeated", r.Partition, r.Offset, nextOffset[r.Partition])
		}
		nextOffset[r.Partition] = r.Offset + 1
		i, ok := recordIndex(r.Key)
		if !ok || i >= len(want) {
			fail("%d/%d: key %x was never produced", r.Partition, r.Offset, trunc(r.Key))
			continue
		}
		if prev, dup := at[i]; dup {
			fail("record %d read twice: at %d/%d and at %d/%d", i, prev.Partition, prev.Offset, r.Partition, r.Offset)
			continue
		}
		at[i] = r
		if !bytes.Equal(r.Key, want[i].Key) {
			fail("%d/%d: record %d key %x, produced %x", r.Partition, r.Offset, i, r.Key, want[i].Key)
		}
		if !bytes.Equal(r.Value, want[i].Value) {
			fail("%d/%d: record %d value %x (%d bytes), produced %x (%d bytes)", r.Partition, r.Offset, i, trunc(r.Value), len(r.Value), trunc(want[i].Value), len(want[i].Value))
		}
		if prev, ok := lastIndex[r.Partition]; ordered && ok && i < prev {
			fail("partition %d: record %d at offset %d after record %d: not in production order", r.Partition, i, r.Offset, prev)
		}
		lastIndex[r.Partition] = i
	}
	if len(at) != len(want) {
		var missing []int
		for i := range want {
			if _, ok := at[i]; !ok && len(missing) < 10 {
				missing = append(missing, i)
			}
		}
		fail("read %d distinct records of the %d produced; missing include %v", len(at), len(want), missing)
	}
	if errs > 10 {
		t.Errorf("... and %d more differences", errs-10)
	}
	if errs > 0 {
		t.FailNow()
	}
	return at
}

// logBuffer collects a client library's log lines and prints them only if
// the test fails.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format, args...)
	l.b.WriteByte('\n')
}

func (l *logBuffer) dumpOnFailure(t *testing.T, name string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		s := l.b.String()
		if len(s) > 8000 {
			s = "...\n" + s[len(s)-8000:]
		}
		t.Logf("--- %s log ---\n%s", name, s)
	})
}

// sumHighWatermarks polls hwm for every partition until they add up to n
// (records produced with acks=0 may still be on their way), and fails the
// test if they pass n or do not reach it within d. It returns them.
func sumHighWatermarks(t *testing.T, d time.Duration, partitions int, n int64, hwm func(p int32) (int64, error)) []int64 {
	t.Helper()
	hws := make([]int64, partitions)
	deadline := time.Now().Add(d)
	for {
		var sum int64
		var err error
		for p := range hws {
			if hws[p], err = hwm(int32(p)); err != nil {
				break
			}
			sum += hws[p]
		}
		switch {
		case err == nil && sum == n:
			return hws
		case err == nil && sum > n:
			t.Fatalf("high watermarks %v add up to %d: more than the %d records produced", hws, sum, n)
		case time.Now().After(deadline):
			t.Fatalf("high watermarks %v (last error %v) do not add up to the %d records produced within %v", hws, err, n, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// initProducerIDs counts the InitProducerId requests the broker answered.
const initProducerIDs = `flotilla_kafka_requests_total{api="InitProducerID",outcome="answered"}`

// checkInitProducerID checks that a producer asked for a producer id if and
// only if it is idempotent; before is initProducerIDs before it started.
func checkInitProducerID(t *testing.T, nd *node, before float64, idempotent bool) {
	t.Helper()
	if asked := nd.metric(t, initProducerIDs) > before; asked != idempotent {
		t.Fatalf("idempotent producer %v, but InitProducerId answered: %v", idempotent, asked)
	}
}

// --- sarama ---------------------------------------------------------------

// TestSarama produces with sarama's SyncProducer and reads back with its
// partition consumer (sarama.Consumer.ConsumePartition from OffsetOldest,
// no group), creating the topic with its ClusterAdmin and reading the high
// watermarks with Client.GetOffset (ListOffsets).
//
// sarama.NewConfig() is used as is, apart from what a user must set:
// Producer.Return.Successes for a SyncProducer, and for the idempotent
// producer the settings sarama's Validate requires with it. sarama v1.61's
// default Version is V2_8_0_0, new enough for record batches v2 (Kafka
// 0.11+), so the default Version stays.
func TestSarama(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	cases := []struct {
		name string
		conf func() *sarama.Config
	}{
		{"default", func() *sarama.Config {
			c := sarama.NewConfig()
			c.Producer.Return.Successes = true // required by NewSyncProducer
			return c
		}},
		{"idempotent", func() *sarama.Config {
			c := sarama.NewConfig()
			c.Producer.Return.Successes = true
			// What sarama's Config.Validate requires with Idempotent.
			c.Producer.Idempotent = true
			c.Producer.RequiredAcks = sarama.WaitForAll
			c.Net.MaxOpenRequests = 1
			return c
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := nd.metric(t, initProducerIDs)
			conf := tc.conf()
			saramaRoundTrip(t, nd, "sarama-"+tc.name, 3, conf, uint64(100+i))
			checkInitProducerID(t, nd, before, conf.Producer.Idempotent)
		})
	}
}

// sarama logs through one global, which its goroutines read while they
// run; it is set once, to a sink that a test points at its own buffer.
var (
	saramaLogOnce sync.Once
	saramaLogMu   sync.Mutex
	saramaLogBuf  *logBuffer
)

type saramaLogSink struct{}

func (saramaLogSink) Write(p []byte) (int, error) {
	saramaLogMu.Lock()
	defer saramaLogMu.Unlock()
	if saramaLogBuf != nil {
		saramaLogBuf.Write(p)
	}
	return len(p), nil
}

// saramaLogTo sends sarama's log to logs until the test ends.
func saramaLogTo(t *testing.T, logs *logBuffer) {
	saramaLogOnce.Do(func() { sarama.Logger = log.New(saramaLogSink{}, "[sarama] ", log.Lmicroseconds) })
	saramaLogMu.Lock()
	saramaLogBuf = logs
	saramaLogMu.Unlock()
	t.Cleanup(func() {
		saramaLogMu.Lock()
		saramaLogBuf = nil
		saramaLogMu.Unlock()
	})
}

func saramaRoundTrip(t *testing.T, nd *node, topic string, partitions int, conf *sarama.Config, seed uint64) {
	logs := &logBuffer{}
	logs.dumpOnFailure(t, "sarama")
	saramaLogTo(t, logs)
	if err := conf.Validate(); err != nil {
		t.Fatalf("sarama config: %v", err)
	}
	addrs := []string{nd.kafka}

	adm, err := sarama.NewClusterAdmin(addrs, conf)
	if err != nil {
		t.Fatalf("sarama.NewClusterAdmin: %v", err)
	}
	defer adm.Close()
	if err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: int32(partitions), ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("sarama CreateTopic %s: %v", topic, err)
	}
	// The producer starts right after CreateTopics answered, as in a
	// program that creates its topic and then writes to it.

	want := makeTestRecords(seed, clientRecords)
	prod, err := sarama.NewSyncProducer(addrs, conf)
	if err != nil {
		t.Fatalf("sarama.NewSyncProducer: %v", err)
	}
	msgs := make([]*sarama.ProducerMessage, len(want))
	for i, r := range want {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(r.Key), Value: sarama.ByteEncoder(r.Value), Metadata: i}
	}
	start := time.Now()
	// Several SendMessages calls, each of many messages: sarama batches
	// them per partition and keeps several requests in flight.
	for first := 0; first < len(msgs); first += 500 {
		if err := prod.SendMessages(msgs[first:min(first+500, len(msgs))]); err != nil {
			var perrs sarama.ProducerErrors
			if errors.As(err, &perrs) && len(perrs) > 0 {
				t.Fatalf("sarama SendMessages: %d messages failed; first: %v", len(perrs), perrs[0].Err)
			}
			t.Fatalf("sarama SendMessages: %v", err)
		}
	}
	produced := time.Since(start)
	if err := prod.Close(); err != nil {
		t.Fatalf("sarama producer Close: %v", err)
	}

	client, err := sarama.NewClient(addrs, conf)
	if err != nil {
		t.Fatalf("sarama.NewClient: %v", err)
	}
	defer client.Close()
	hws := sumHighWatermarks(t, 15*time.Second, partitions, int64(len(want)), func(p int32) (int64, error) {
		return client.GetOffset(topic, p, sarama.OffsetNewest)
	})
	for p := range partitions {
		if lo, err := client.GetOffset(topic, int32(p), sarama.OffsetOldest); err != nil || lo != 0 {
			t.Fatalf("sarama GetOffset(%s/%d, OffsetOldest) = %d, %v; want 0", topic, p, lo, err)
		}
	}

	start = time.Now()
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("sarama.NewConsumerFromClient: %v", err)
	}
	defer cons.Close()
	// One partition consumer per partition, all at once: closing one
	// waits for its long poll (Consumer.MaxWaitTime, 500 ms by default).
	ctx := testCtx(t, 60*time.Second)
	perPart := make([][]readRecord, partitions)
	errs := make([]error, partitions)
	var wg sync.WaitGroup
	for p := range partitions {
		if hws[p] == 0 {
			continue
		}
		pc, err := cons.ConsumePartition(topic, int32(p), sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("sarama ConsumePartition %s/%d: %v", topic, p, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if err := pc.Close(); err != nil && errs[p] == nil {
					errs[p] = fmt.Errorf("partition consumer Close: %w", err)
				}
			}()
			for {
				var m *sarama.ConsumerMessage
				select {
				case m = <-pc.Messages():
				case <-ctx.Done():
					errs[p] = fmt.Errorf("%d records of %d read before %w", len(perPart[p]), hws[p], ctx.Err())
					return
				}
				if m == nil {
					errs[p] = fmt.Errorf("messages channel closed after %d records of %d", len(perPart[p]), hws[p])
					return
				}
				perPart[p] = append(perPart[p], readRecord{Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value})
				if m.Offset >= hws[p]-1 {
					return
				}
			}
		}()
	}
	wg.Wait()
	var got []readRecord
	for p := range partitions {
		if errs[p] != nil {
			t.Fatalf("sarama consumer %s/%d: %v", topic, p, errs[p])
		}
		got = append(got, perPart[p]...)
	}
	t.Logf("%d records: produced in %v, consumed in %v", len(want), produced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	at := checkReadBack(t, want, got, true)
	// The producer's acknowledgements named the partition and offset
	// each record was then read at.
	for _, m := range msgs {
		r := at[m.Metadata.(int)]
		if m.Partition != r.Partition || m.Offset != r.Offset {
			t.Fatalf("record %d acknowledged at %d/%d, read at %d/%d", m.Metadata.(int), m.Partition, m.Offset, r.Partition, r.Offset)
		}
	}
}

func countPartition(rs []readRecord, p int32) int {
	n := 0
	for _, r := range rs {
		if r.Partition == p {
			n++
		}
	}
	return n
}

// --- segmentio/kafka-go ---------------------------------------------------

// TestKafkaGo produces with a kafka.Writer and reads back with one
// kafka.Reader per partition (no GroupID, so no group APIs), creating the
// topic with kafka.Client.CreateTopics: a Writer does not create topics
// unless AllowAutoTopicCreation is set. A Writer literal's defaults are
// acks=0 (RequireNone), the round-robin balancer, batches of 100 and a 1 s
// batch timeout; the "acks-all" case sets RequiredAcks: RequireAll, as
// most users do (and as the deprecated NewWriter did by default).
//
// kafka-go's Transport caches metadata (refreshed at random within 6 s,
// and right after a CreateTopics it sent) and a Writer fails at once,
// without retrying, on a partition that has no leader in that cache. The
// round trips create the topic through one Transport and write through
// another, whose first Metadata comes after the leaders are known.
// "create-then-write" does what a program using kafka.DefaultTransport for
// both does: it relies on Kafka answering CreateTopics only once the new
// partitions have leaders (ZooKeeper mode waits for them; KRaft creates
// partitions with their leader), so that Metadata never shows a new
// topic's partitions without one. "auto-create" lets the Writer create
// the topic through Metadata.
func TestKafkaGo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	cases := []struct {
		name string
		acks kafkago.RequiredAcks
	}{
		{"default", kafkago.RequireNone}, // the zero value: the default
		{"acks-all", kafkago.RequireAll},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topic := "kafka-go-" + tc.name
			const partitions = 3
			kafkaGoCreateTopic(t, nd, &kafkago.Transport{}, topic, partitions)
			waitTopicReady(t, nd.admin(t), topic, partitions)
			w := &kafkago.Writer{Addr: kafkago.TCP(nd.kafka), Topic: topic, RequiredAcks: tc.acks, Transport: &kafkago.Transport{}}
			kafkaGoRoundTrip(t, nd, w, topic, partitions, makeTestRecords(uint64(200+i), clientRecords))
		})
	}
	// One Transport for CreateTopics and the Writer, as with
	// kafka.DefaultTransport; the Writer starts right after CreateTopics
	// has answered.
	t.Run("create-then-write", func(t *testing.T) {
		const topic, partitions = "kafka-go-create-then-write", 3
		tr := &kafkago.Transport{}
		kafkaGoCreateTopic(t, nd, tr, topic, partitions)
		w := &kafkago.Writer{Addr: kafkago.TCP(nd.kafka), Topic: topic, Transport: tr}
		kafkaGoRoundTrip(t, nd, w, topic, partitions, makeTestRecords(210, 200))
	})
	// The Writer creates the topic through Metadata's auto-creation.
	t.Run("auto-create", func(t *testing.T) {
		const topic = "kafka-go-auto-create"
		w := &kafkago.Writer{Addr: kafkago.TCP(nd.kafka), Topic: topic, AllowAutoTopicCreation: true, Transport: &kafkago.Transport{}}
		kafkaGoRoundTrip(t, nd, w, topic, -1, makeTestRecords(211, 200))
	})
}

// autoCreateRetriable reports whether err is what a kafka-go Writer says
// while the topic it is auto-creating gets its partitions and leaders.
func autoCreateRetriable(err error) bool {
	isRetriable := func(e error) bool {
		return errors.Is(e, kafkago.LeaderNotAvailable) || errors.Is(e, kafkago.UnknownTopicOrPartition)
	}
	var werrs kafkago.WriteErrors
	if errors.As(err, &werrs) {
		// Only when nothing was written: retrying would duplicate the rest.
		for _, e := range werrs {
			if e == nil || !isRetriable(e) {
				return false
			}
		}
		return len(werrs) > 0
	}
	return err != nil && isRetriable(err)
}

// kafkaGoCreateTopic creates topic with kafka.Client.CreateTopics through
// transport tr.
func kafkaGoCreateTopic(t *testing.T, nd *node, tr kafkago.RoundTripper, topic string, partitions int) {
	t.Helper()
	cl := &kafkago.Client{Addr: kafkago.TCP(nd.kafka), Transport: tr}
	resp, err := cl.CreateTopics(testCtx(t, 15*time.Second), &kafkago.CreateTopicsRequest{
		Topics: []kafkago.TopicConfig{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatalf("kafka-go CreateTopics %s: %v", topic, err)
	}
	if err := resp.Errors[topic]; err != nil {
		t.Fatalf("kafka-go CreateTopics %s: %v", topic, err)
	}
}

// kafkaGoRoundTrip writes want with w, then reads each partition of topic
// back with a kafka.Reader and checks it. partitions < 0: ask the broker
// how many the topic has (after auto-creation).
func kafkaGoRoundTrip(t *testing.T, nd *node, w *kafkago.Writer, topic string, partitions int, want []testRecord) {
	t.Helper()
	logs := &logBuffer{}
	logs.dumpOnFailure(t, "kafka-go")
	logger := kafkago.LoggerFunc(func(format string, args ...any) { logs.printf("[kafka-go] "+format, args...) })
	ctx := testCtx(t, 90*time.Second)

	w.Logger, w.ErrorLogger = logger, logger
	msgs := make([]kafkago.Message, len(want))
	for i, r := range want {
		msgs[i] = kafkago.Message{Key: r.Key, Value: r.Value}
	}
	start := time.Now()
	err := w.WriteMessages(ctx, msgs...)
	// A Writer that auto-creates its topic fails its first writes with
	// LEADER_NOT_AVAILABLE (Kafka's answer to a Metadata request that
	// starts an auto-creation) or UNKNOWN_TOPIC_OR_PARTITION, before
	// writing anything; kafka-go's own tests retry the same way. Its
	// transport caches that Metadata answer for up to 6 s, hence the
	// window; the errors come back per message, inside WriteErrors.
	for deadline := time.Now().Add(10 * time.Second); w.AllowAutoTopicCreation && time.Now().Before(deadline) && autoCreateRetriable(err); {
		time.Sleep(100 * time.Millisecond)
		err = w.WriteMessages(ctx, msgs...)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var werrs kafkago.WriteErrors
		if errors.As(err, &werrs) {
			var first error
			for _, e := range werrs {
				if e != nil {
					first = e
					break
				}
			}
			t.Fatalf("kafka-go WriteMessages: %d of %d messages failed; first: %v", werrs.Count(), len(msgs), first)
		}
		t.Fatalf("kafka-go WriteMessages: %v", err)
	}
	if st := w.Stats(); st.Errors != 0 {
		t.Fatalf("kafka-go writer stats: %d errors", st.Errors)
	}
	produced := time.Since(start)

	if partitions < 0 {
		partitions = len(topicMetadata(t, nd.client(t), topic).Partitions)
		if partitions == 0 {
			t.Fatalf("%s has no partitions after the writer wrote to it", topic)
		}
	}
	// The high watermarks through kafka-go's own ListOffsets (a Conn to
	// each partition's leader). With acks=0 the last batches may still be
	// on their way when WriteMessages returns: poll.
	conns := make([]*kafkago.Conn, partitions)
	for p := range conns {
		c, err := kafkago.DialLeader(ctx, "tcp", nd.kafka, topic, p)
		if err != nil {
			t.Fatalf("kafka-go DialLeader %s/%d: %v", topic, p, err)
		}
		defer c.Close()
		conns[p] = c
	}
	hws := sumHighWatermarks(t, 15*time.Second, partitions, int64(len(want)), func(p int32) (int64, error) {
		return conns[p].ReadLastOffset()
	})
	for p, c := range conns {
		if lo, err := c.ReadFirstOffset(); err != nil || lo != 0 {
			t.Fatalf("kafka-go ReadFirstOffset %s/%d = %d, %v; want 0", topic, p, lo, err)
		}
	}

	start = time.Now()
	var got []readRecord
	var readers []*kafkago.Reader
	defer func() {
		// A Reader's Close waits for its fetch in flight, a long poll at
		// the end of the partition that the broker rightly holds for the
		// Reader's MaxWait (10 s by default). A record in each partition
		// ends the polls at once; a Reader that started its next poll
		// before Close needs another one.
		if len(readers) == 0 {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, r := range readers {
				if err := r.Close(); err != nil {
					t.Errorf("kafka-go Reader.Close: %v", err)
				}
			}
		}()
		wake := nd.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for range 50 {
			var recs []*kgo.Record
			for p := range partitions {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(p), Value: []byte("wake")})
			}
			produceAll(t, ctx, wake, recs)
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		<-done
	}()
	for p := range partitions {
		if hws[p] == 0 {
			continue
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{
			Brokers:     []string{nd.kafka},
			Topic:       topic,
			Partition:   p,
			Logger:      logger,
			ErrorLogger: logger,
		})
		readers = append(readers, r)
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("kafka-go Reader %s/%d: after %d of %d records: %v", topic, p, countPartition(got, int32(p)), hws[p], err)
			}
			got = append(got, readRecord{Partition: int32(m.Partition), Offset: m.Offset, Key: m.Key, Value: m.Value})
			if m.Offset >= hws[p]-1 {
				break
			}
		}
	}
	t.Logf("%d records (acks=%d): produced in %v, consumed in %v", len(want), w.RequiredAcks, produced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	// With acks=0 a Writer sends a partition's next batch as soon as the
	// last one is written to a connection, and its Transport spreads
	// requests over several connections to the broker: two batches of
	// one partition can travel on different connections, and no broker
	// (Kafka included) orders requests across connections. So the order
	// of records within a partition is checked only when the Writer waits
	// for acknowledgements.
	checkReadBack(t, want, got, w.RequiredAcks != kafkago.RequireNone)
}

// --- kafkajs ----------------------------------------------------------------

// kafkajsOutput is what test/kafkajs/produce.js writes.
type kafkajsOutput struct {
	Created bool `json:"created"`
	Sends   []struct {
		First      int `json:"first"`
		Count      int `json:"count"`
		Partitions []struct {
			Partition  int32 `json:"partition"`
			ErrorCode  int16 `json:"errorCode"`
			BaseOffset int64 `json:"baseOffset"`
		} `json:"partitions"`
	} `json:"sends"`
	Offsets []struct {
		Partition int32 `json:"partition"`
		Low       int64 `json:"low"`
		High      int64 `json:"high"`
	} `json:"offsets"`
}

// kafkajsDir installs test/kafkajs's pinned dependencies (npm ci, from its
// package-lock.json) unless they are there, and returns the directory. It
// skips the test when node or npm is not installed.
func kafkajsDir(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: kafkajs cannot run", tool)
		}
	}
	dir, err := filepath.Abs("kafkajs")
	if err != nil {
		t.Fatal(err)
	}
	var pinned struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pinned)
	}
	if err != nil {
		t.Fatalf("test/kafkajs/package.json: %v", err)
	}
	var installed struct {
		Version string `json:"version"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "node_modules", "kafkajs", "package.json")); err == nil &&
		json.Unmarshal(b, &installed) == nil && installed.Version == pinned.Dependencies["kafkajs"] {
		return dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in test/kafkajs (needs the npm registry): %v (context: %v)\n%s", err, ctx.Err(), out)
	}
	return dir
}

// TestKafkaJS produces with kafkajs (test/kafkajs/produce.js): the topic
// made by kafkajs's admin client, its default producer (acks=-1, not
// idempotent, its Java-compatible murmur2 partitioner) and its idempotent
// one, its admin's ListOffsets; then reads the records back with franz-go
// (a kafkajs consumer is always a group member; TestKafkaJSGroup tests it).
func TestKafkaJS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := kafkajsDir(t)
	nd := startKafka(t)
	for i, mode := range []string{"default", "idempotent"} {
		t.Run(mode, func(t *testing.T) {
			const partitions = 3
			topic := "kafkajs-" + mode
			want := makeTestRecords(uint64(300+i), clientRecords)
			type jsRecord struct {
				Key   string `json:"key"`
				Value string `json:"value"`
			}
			in := make([]jsRecord, len(want))
			for j, r := range want {
				in[j] = jsRecord{base64.StdEncoding.EncodeToString(r.Key), base64.StdEncoding.EncodeToString(r.Value)}
			}
			b, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			tmp := t.TempDir()
			input, output := filepath.Join(tmp, "in.json"), filepath.Join(tmp, "out.json")
			if err := os.WriteFile(input, b, 0o644); err != nil {
				t.Fatal(err)
			}

			before := nd.metric(t, initProducerIDs)
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", "produce.js", nd.kafka, topic, strconv.Itoa(partitions), mode, input, output)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "KAFKAJS_NO_PARTITIONER_WARNING=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("node produce.js: %v (context: %v)\n%s", err, ctx.Err(), out)
			}
			produced := time.Since(start)
			var res kafkajsOutput
			if b, err := os.ReadFile(output); err != nil {
				t.Fatal(err)
			} else if err := json.Unmarshal(b, &res); err != nil {
				t.Fatalf("produce.js output: %v\n%s", err, b)
			}
			checkInitProducerID(t, nd, before, mode == "idempotent")
			if !res.Created {
				t.Fatalf("kafkajs admin.createTopics(%s) answered false: the topic existed", topic)
			}

			start = time.Now()
			recs := consumeAll(t, testCtx(t, 60*time.Second), nd, topic, len(want))
			got := make([]readRecord, len(recs))
			for j, r := range recs {
				got[j] = readRecord{Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
			}
			// consumeAll interleaves partitions; checkReadBack wants each
			// partition in the order read, which a stable sort keeps.
			sort.SliceStable(got, func(a, b int) bool { return got[a].Partition < got[b].Partition })
			t.Logf("%d records: kafkajs produced in %v (node start and topic creation included), franz-go consumed in %v", len(want), produced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			at := checkReadBack(t, want, got, true)

			// Each send's answer gave, per partition, the offset its first
			// record there was written at.
			for _, s := range res.Sends {
				first := map[int32]int64{}
				for j := s.First; j < s.First+s.Count; j++ {
					r := at[j]
					if o, ok := first[r.Partition]; !ok || r.Offset < o {
						first[r.Partition] = r.Offset
					}
				}
				if len(s.Partitions) != len(first) {
					t.Fatalf("send of records %d..%d: kafkajs reported %d partitions, the records are in %d", s.First, s.First+s.Count-1, len(s.Partitions), len(first))
				}
				for _, p := range s.Partitions {
					if p.ErrorCode != 0 || p.BaseOffset != first[p.Partition] {
						t.Fatalf("send of records %d..%d: kafkajs reported partition %d at base offset %d (%s); its first record there is at %d",
							s.First, s.First+s.Count-1, p.Partition, p.BaseOffset, codeName(p.ErrorCode), first[p.Partition])
					}
				}
			}
			// admin.fetchTopicOffsets: ListOffsets earliest and latest.
			if len(res.Offsets) != partitions {
				t.Fatalf("kafkajs fetchTopicOffsets: %d partitions, want %d", len(res.Offsets), partitions)
			}
			for _, o := range res.Offsets {
				if n := int64(countPartition(got, o.Partition)); o.Low != 0 || o.High != n {
					t.Fatalf("kafkajs fetchTopicOffsets %s/%d: low %d high %d; want 0, %d", topic, o.Partition, o.Low, o.High, n)
				}
			}
		})
	}
}

// --- librdkafka with its defaults ------------------------------------------

// TestLibrdkafkaDefaults produces with kcat and nothing but the broker
// address: librdkafka's default producer (acks=all, not idempotent, its
// consistent_random partitioner) to a topic that does not exist yet, which
// the broker auto-creates from the producer's Metadata request, as Kafka
// does by default. kcat reads it back. (TestKcat covers codecs and
// idempotence on pre-created topics.) Keys and values are hex, since kcat's
// line-oriented input cannot carry arbitrary bytes.
func TestLibrdkafkaDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Skip("kcat is not installed (CI installs it with apt)")
	}
	nd := startKafka(t)
	const topic = "librdkafka-auto"
	raw := makeTestRecords(400, clientRecords)
	want := make([]testRecord, len(raw))
	var in bytes.Buffer
	for i, r := range raw {
		key := fmt.Appendf(nil, "%06d%s", i, hex.EncodeToString(r.Key[6:]))
		want[i] = testRecord{Key: key, Value: []byte(hex.EncodeToString(r.Value))}
		fmt.Fprintf(&in, "%s:%s\n", want[i].Key, want[i].Value)
	}
	start := time.Now()
	kcat(t, nd, in.Bytes(), "-P", "-t", topic, "-K:")
	produced := time.Since(start)

	start = time.Now()
	msgs := kcatConsume(t, nd, topic) // from the beginning to the end of every partition
	var got []readRecord
	for _, m := range msgs {
		if m.Key == nil || m.Payload == nil {
			t.Fatalf("kcat read %s/%d at %d without key or payload", topic, m.Partition, m.Offset)
		}
		got = append(got, readRecord{Partition: m.Partition, Offset: m.Offset, Key: []byte(*m.Key), Value: []byte(*m.Payload)})
	}
	sort.SliceStable(got, func(a, b int) bool { return got[a].Partition < got[b].Partition })
	t.Logf("%d records: produced in %v (auto-creation included), consumed in %v", len(want), produced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	checkReadBack(t, want, got, true)

	// The topic is what auto-creation makes: check it is listed with
	// every partition led.
	md := topicMetadata(t, nd.client(t), topic)
	if md.ErrorCode != 0 || len(md.Partitions) == 0 {
		t.Fatalf("auto-created %s: %s, %d partitions", topic, codeName(md.ErrorCode), len(md.Partitions))
	}
}
