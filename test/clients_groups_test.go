package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Consumer groups through every client we can run here (see the top of
// clients_test.go): each consumes a topic in a group with its default
// settings — the group id, the topic, and what it needs to start from the
// beginning of a partition without a committed offset — commits, and a
// later member of the same group resumes from the commits. Every record
// produced must be read (at least once: redeliveries are counted and
// logged), and none that the group had committed.
//
// TestKcatGroup runs the broker with its defaults, the initial rebalance
// delay of 3 s included, which is what makes two `kcat -G -e` started
// together join one generation: otherwise the first could read the whole
// topic and exit before the second joined. The other tests wait for their
// group to be Stable before producing, so they use groupSettings (100 ms),
// which only makes their joins quicker.

// groupTestPartitions is how many partitions a group test's topic has.
const groupTestPartitions = 4

// groupTest is one client's group test: a broker, a topic, a group, and
// every record the test produces to the topic, in the order it does.
type groupTest struct {
	nd           *node
	adm          *kadm.Client
	prod         *kgo.Client
	topic, group string
	want         []testRecord
}

// newGroupTest starts a broker with brokerSettings (kafka section, "" for
// the defaults), creates the topic, and makes n records. They are text
// (the index, then hex), which every client's output carries intact,
// kcat's JSON included. prodOpts are for the producer, a kgo client with
// its defaults (snappy batches) otherwise.
func newGroupTest(t *testing.T, name string, seed uint64, n int, brokerSettings string, prodOpts ...kgo.Opt) *groupTest {
	t.Helper()
	nd := newClusterWith(t, 1, brokerSettings)[0]
	nd.start(t)
	nd.waitKafka(t)
	g := &groupTest{nd: nd, adm: nd.admin(t), topic: name + "-topic", group: name + "-group"}
	createTopic(t, g.adm, g.topic, groupTestPartitions, nil)
	for i, r := range makeTestRecords(seed, n) {
		g.want = append(g.want, testRecord{
			Key:   fmt.Appendf(nil, "%06d%s", i, hex.EncodeToString(r.Key[6:])),
			Value: []byte(hex.EncodeToString(r.Value)),
		})
	}
	g.prod = nd.client(t, append([]kgo.Opt{kgo.DefaultProduceTopic(g.topic)}, prodOpts...)...)
	return g
}

// produce produces want[from:to] (keyed: kgo's default partitioner spreads
// them over the partitions by key).
func (g *groupTest) produce(t *testing.T, from, to int) {
	t.Helper()
	var recs []*kgo.Record
	for _, r := range g.want[from:to] {
		recs = append(recs, &kgo.Record{Key: r.Key, Value: r.Value})
	}
	produceAll(t, testCtx(t, 20*time.Second), g.prod, recs)
}

// checkCommitted checks, once every member has left, that kadm sees the
// group Empty with the consumer protocol type, and its committed offsets
// at ends, where the members stopped reading: at the end of every
// partition, all they read and nothing more.
func (g *groupTest) checkCommitted(t *testing.T, ends map[int32]int64) {
	t.Helper()
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last DescribeGroups %s: %s", g.group, last)
		}
	}()
	waitFor(t, 10*time.Second, fmt.Sprintf("group %s Empty after its members left", g.group), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		described, err := g.adm.DescribeGroups(ctx, g.group)
		if err != nil {
			last = err.Error()
			return false
		}
		d := described[g.group]
		last = fmt.Sprintf("state %s, protocol type %q, %d members, err %v", d.State, d.ProtocolType, len(d.Members), d.Err)
		return d.Err == nil && d.State == "Empty" && d.ProtocolType == "consumer" && len(d.Members) == 0
	})
	ctx := testCtx(t, 10*time.Second)
	fetched, err := g.adm.FetchOffsets(ctx, g.group)
	if err == nil {
		err = fetched.Error()
	}
	if err != nil {
		t.Fatalf("FetchOffsets %s: %v", g.group, err)
	}
	got := map[int32]int64{}
	fetched.Each(func(o kadm.OffsetResponse) {
		if o.Topic == g.topic {
			got[o.Partition] = o.At
		}
	})
	if !maps.Equal(got, ends) {
		t.Fatalf("group %s committed %v; its members stopped reading at %v", g.group, got, ends)
	}
	t.Logf("group %s: %s; committed %v, where its members stopped", g.group, last, got)
}

// groupLedger tallies what a group's members read in one run, which must
// read want[from:to] — each record at least once — and nothing produced
// before from: that was committed by an earlier run.
type groupLedger struct {
	want     []testRecord
	from, to int

	mu       sync.Mutex
	reads    map[int]int              // record index → times read
	at       map[int]readRecord       // where each record was first read
	owners   map[int32]map[string]int // partition → member → records read
	problems []string
}

// ledger returns an empty ledger of the run that must read want[from:to].
func (g *groupTest) ledger(from, to int) *groupLedger {
	return &groupLedger{want: g.want, from: from, to: to, reads: map[int]int{}, at: map[int]readRecord{}, owners: map[int32]map[string]int{}}
}

// add records that member read key and value at partition p, offset o.
func (l *groupLedger) add(member string, p int32, o int64, key, value []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	problem := func(format string, args ...any) {
		if len(l.problems) < 10 {
			l.problems = append(l.problems, fmt.Sprintf("%s read %d/%d: ", member, p, o)+fmt.Sprintf(format, args...))
		}
	}
	i, ok := recordIndex(key)
	switch {
	case !ok || i >= len(l.want):
		problem("key %q was never produced", trunc(key))
		return
	case !bytes.Equal(key, l.want[i].Key) || !bytes.Equal(value, l.want[i].Value):
		problem("record %d with key %q value %q; produced %q, %q", i, trunc(key), trunc(value), trunc(l.want[i].Key), trunc(l.want[i].Value))
		return
	case i < l.from:
		problem("record %d, read and committed by an earlier run", i)
	case i >= l.to:
		problem("record %d, not produced yet", i)
	}
	if prev, seen := l.at[i]; seen && (prev.Partition != p || prev.Offset != o) {
		problem("record %d, read before at %d/%d", i, prev.Partition, prev.Offset)
	} else if !seen {
		l.at[i] = readRecord{Partition: p, Offset: o}
	}
	l.reads[i]++
	if l.owners[p] == nil {
		l.owners[p] = map[string]int{}
	}
	l.owners[p][member]++
}

// complete reports whether every record of the run has been read.
func (l *groupLedger) complete() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := l.from; i < l.to; i++ {
		if l.reads[i] == 0 {
			return false
		}
	}
	return true
}

// check fails the test unless the run read every record it had to and
// nothing else; it returns how many reads were redeliveries.
func (l *groupLedger) check(t *testing.T) (redelivered int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.problems) > 0 {
		t.Fatalf("%d problems in what the group read; first:\n%s", len(l.problems), strings.Join(l.problems, "\n"))
	}
	var missing []int
	for i := l.from; i < l.to; i++ {
		switch n := l.reads[i]; {
		case n == 0:
			missing = append(missing, i)
		case n > 1:
			redelivered += n - 1
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of records %d..%d never read; first: %v", len(missing), l.from, l.to-1, missing[:min(10, len(missing))])
	}
	return redelivered
}

// checkShared fails the test unless every partition was read by exactly
// one of members, and each of them read at least one partition.
func (l *groupLedger) checkShared(t *testing.T, members ...string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	read := map[string][]int32{}
	for _, p := range slices.Sorted(maps.Keys(l.owners)) {
		if len(l.owners[p]) != 1 {
			t.Fatalf("partition %d read by %v: a partition is one member's at a time", p, l.owners[p])
		}
		for m := range l.owners[p] {
			read[m] = append(read[m], p)
		}
	}
	for _, m := range members {
		if len(read[m]) == 0 {
			t.Fatalf("member %s read no partition: the members did not share the topic (%v)", m, read)
		}
	}
	t.Logf("partitions read by each member: %v", read)
}

// --- librdkafka: kcat -G --------------------------------------------------

// kcatGroupMember is one `kcat -G` process.
type kcatGroupMember struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan error
}

// startKcatGroup starts kcat as a balanced consumer of topic in group,
// with librdkafka's defaults but auto.offset.reset=earliest (its default is
// latest), printing JSON, and exiting once every partition it is assigned
// is read to its end (-e, which kcat supports in -G mode: it counts the
// partitions of its assignment at EOF).
func startKcatGroup(t *testing.T, ctx context.Context, nd *node, group, topic string) *kcatGroupMember {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (CI installs it with apt)")
	}
	m := &kcatGroupMember{done: make(chan error, 1)}
	m.cmd = exec.CommandContext(ctx, path, "-b", nd.kafka, "-G", group, "-X", "auto.offset.reset=earliest", "-e", "-J", topic)
	m.cmd.Stdout, m.cmd.Stderr = &m.stdout, &m.stderr
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start kcat -G: %v", err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	// Killing an exited process fails harmlessly.
	t.Cleanup(func() { _ = m.cmd.Process.Kill() })
	return m
}

// wait waits for the process to exit 0 and returns what it read.
func (m *kcatGroupMember) wait(t *testing.T) []kcatMessage {
	t.Helper()
	if err := <-m.done; err != nil {
		t.Fatalf("kcat -G: %v\nstderr:\n%s", err, m.stderr.String())
	}
	var msgs []kcatMessage
	sc := bufio.NewScanner(&m.stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var msg kcatMessage
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil || msg.Key == nil || msg.Payload == nil {
			t.Fatalf("kcat -G -J printed %q (%v)", sc.Text(), err)
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

// TestKcatGroup: two `kcat -G` processes in one group share a 4-partition
// topic (each partition read by one of them), exit at its end, and leave
// their offsets committed at the end of every partition (librdkafka's
// auto-commit, and its commit on close); a later `kcat -G` of the group
// reads only what was produced since.
func TestKcatGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Skip("kcat is not installed (CI installs it with apt)")
	}
	const first, later = 2000, 200
	g := newGroupTest(t, "kcat", 500, first+later, "")
	g.produce(t, 0, first)

	run := func(l *groupLedger, names ...string) {
		ctx := testCtx(t, 30*time.Second)
		ms := map[string]*kcatGroupMember{}
		for _, name := range names {
			ms[name] = startKcatGroup(t, ctx, g.nd, g.group, g.topic)
		}
		for _, name := range names {
			m := ms[name]
			for _, msg := range m.wait(t) {
				l.add(name, msg.Partition, msg.Offset, []byte(*msg.Key), []byte(*msg.Payload))
			}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("--- kcat %s stderr ---\n%s", name, m.stderr.String())
				}
			})
		}
	}

	start := time.Now()
	l := g.ledger(0, first)
	run(l, "kcat-1", "kcat-2")
	redelivered := l.check(t)
	l.checkShared(t, "kcat-1", "kcat-2")
	t.Logf("two kcat -G read %d records in %v, %d redelivered", first, time.Since(start).Round(time.Millisecond), redelivered)
	g.checkCommitted(t, endOffsets(t, g.adm, g.topic, groupTestPartitions))

	g.produce(t, first, first+later)
	start = time.Now()
	l = g.ledger(first, first+later)
	run(l, "kcat-3")
	redelivered = l.check(t)
	t.Logf("a later kcat -G read the %d new records and nothing older in %v, %d redelivered", later, time.Since(start).Round(time.Millisecond), redelivered)
	g.checkCommitted(t, endOffsets(t, g.adm, g.topic, groupTestPartitions))
}

// --- sarama: ConsumerGroup --------------------------------------------------

// saramaGroupMember is one sarama ConsumerGroup consuming in its own
// goroutine.
type saramaGroupMember struct {
	cg     sarama.ConsumerGroup
	cancel context.CancelFunc
	done   chan error
}

// saramaHandler is a ConsumerGroupHandler that tallies what it reads in
// the current ledger and marks it consumed (sarama commits marked offsets
// every second, at the end of each generation, and when the group is
// closed).
type saramaHandler struct {
	name string
	l    *atomic.Pointer[groupLedger]
}

func (saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.l.Load().add(h.name, m.Partition, m.Offset, m.Key, m.Value)
			sess.MarkMessage(m, "")
		case <-sess.Context().Done():
			return nil
		}
	}
}

// startSaramaGroup starts a member of g's group with sarama.NewConfig()
// but Consumer.Offsets.Initial = OffsetOldest (sarama starts a partition
// without a committed offset at its end by default). It tallies what it
// reads in *l.
func startSaramaGroup(t *testing.T, g *groupTest, name string, l *atomic.Pointer[groupLedger]) *saramaGroupMember {
	t.Helper()
	conf := sarama.NewConfig()
	conf.ClientID = name
	conf.Consumer.Offsets.Initial = sarama.OffsetOldest
	cg, err := sarama.NewConsumerGroup([]string{g.nd.kafka}, g.group, conf)
	if err != nil {
		t.Fatalf("sarama.NewConsumerGroup: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	m := &saramaGroupMember{cg: cg, cancel: cancel, done: make(chan error, 1)}
	go func() {
		// Consume returns at every rebalance; a consumer calls it again.
		var err error
		for ctx.Err() == nil && err == nil {
			err = cg.Consume(ctx, []string{g.topic}, saramaHandler{name: name, l: l})
		}
		m.done <- err
	}()
	t.Cleanup(func() { m.close(t) })
	return m
}

// close stops consuming, then closes the group (which commits the marked
// offsets and leaves the group).
func (m *saramaGroupMember) close(t *testing.T) {
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.cancel = nil
	if err := <-m.done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("sarama ConsumerGroup.Consume: %v", err)
	}
	if err := m.cg.Close(); err != nil {
		t.Errorf("sarama ConsumerGroup.Close: %v", err)
	}
}

// TestSaramaGroup: a sarama ConsumerGroup member is joined by a second one
// (a rebalance, which the first learns of from its heartbeat); they share
// a 4-partition topic; the first leaves, and the second takes over its
// partitions from its commits; once it leaves too, a later member of the
// group reads only what was produced since.
func TestSaramaGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	logs := &logBuffer{}
	logs.dumpOnFailure(t, "sarama")
	saramaLogTo(t, logs)
	const first, handover, later = 2000, 200, 200
	g := newGroupTest(t, "sarama", 501, first+handover+later, groupSettings)

	start := time.Now()
	var l atomic.Pointer[groupLedger]
	l.Store(g.ledger(0, first))
	m1 := startSaramaGroup(t, g, "sarama-1", &l)
	waitStable(t, g.adm, g.group, g.topic, 1, groupTestPartitions)
	m2 := startSaramaGroup(t, g, "sarama-2", &l)
	waitStable(t, g.adm, g.group, g.topic, 2, groupTestPartitions)
	t.Logf("two sarama members Stable after %v", time.Since(start).Round(time.Millisecond))
	g.produce(t, 0, first)
	waitFor(t, 20*time.Second, "every record read", l.Load().complete)
	redelivered := l.Load().check(t)
	l.Load().checkShared(t, "sarama-1", "sarama-2")
	t.Logf("two sarama members read %d records, %d redelivered", first, redelivered)

	// From here on, a record of the first run read again is a failure:
	// sarama-1 commits before it leaves.
	start = time.Now()
	l.Store(g.ledger(first, first+handover))
	m1.close(t)
	waitStable(t, g.adm, g.group, g.topic, 1, groupTestPartitions)
	g.produce(t, first, first+handover)
	waitFor(t, 20*time.Second, "every record read after the handover", l.Load().complete)
	m2.close(t)
	redelivered = l.Load().check(t)
	t.Logf("sarama-2 took over after sarama-1 left, read the %d new records and none of sarama-1's in %v, %d redelivered", handover, time.Since(start).Round(time.Millisecond), redelivered)
	g.checkCommitted(t, endOffsets(t, g.adm, g.topic, groupTestPartitions))

	g.produce(t, first+handover, first+handover+later)
	start = time.Now()
	l.Store(g.ledger(first+handover, first+handover+later))
	m3 := startSaramaGroup(t, g, "sarama-3", &l)
	waitFor(t, 20*time.Second, "every new record read", l.Load().complete)
	m3.close(t)
	redelivered = l.Load().check(t)
	t.Logf("a later sarama member read the %d new records and nothing older in %v, %d redelivered", later, time.Since(start).Round(time.Millisecond), redelivered)
	g.checkCommitted(t, endOffsets(t, g.adm, g.topic, groupTestPartitions))
}

// --- segmentio/kafka-go: Reader with GroupID -----------------------------

// closeKafkaGoReader closes r and returns the end offsets of g's topic
// before it did. A Reader's Close waits for its fetches in flight: long
// polls at the end of the partitions, which the broker rightly holds for
// the Reader's MaxWait (10 s by default), as Kafka does. A record in every
// partition ends them at once; these are want[*next:], one per partition
// per round, and *next moves past them (the next Reader of the group reads
// them first).
func closeKafkaGoReader(t *testing.T, g *groupTest, r *kafkago.Reader, next *int) map[int32]int64 {
	t.Helper()
	ends := endOffsets(t, g.adm, g.topic, groupTestPartitions)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	wake := g.nd.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := testCtx(t, 20*time.Second)
	for range 10 {
		var recs []*kgo.Record
		for p := range int32(groupTestPartitions) {
			w := g.want[*next]
			recs = append(recs, &kgo.Record{Topic: g.topic, Partition: p, Key: w.Key, Value: w.Value})
			*next++
		}
		produceAll(t, ctx, wake, recs)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("kafka-go Reader.Close: %v", err)
			}
			t.Logf("kafka-go Reader.Close took %v", time.Since(start).Round(time.Millisecond))
			return ends
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("kafka-go Reader.Close: %v", err)
	}
	return ends
}

// TestKafkaGoGroup: a kafka.Reader with a GroupID (its defaults: the range
// balancer, StartOffset FirstOffset, CommitInterval 0 — ReadMessage
// commits each message synchronously) reads a topic; the group is Stable
// with it as its one member; after Close its commits are exactly where it
// stopped reading, and a later Reader of the group reads only what was
// produced since.
func TestKafkaGoGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	logs := &logBuffer{}
	logs.dumpOnFailure(t, "kafka-go")
	logger := kafkago.LoggerFunc(func(format string, args ...any) { logs.printf("[kafka-go] "+format, args...) })
	// Two runs of 1000 records, and up to 40 records for each Close to
	// end its long polls with.
	const first, later, spare = 1000, 200, 40
	g := newGroupTest(t, "kafka-go", 502, first+later+spare, groupSettings)

	// read reads want[from:to] with a new Reader of the group, checks
	// that it read nothing else, closes it, and returns the end offsets
	// of the topic when it stopped reading.
	next := 0
	read := func(name string, from, to int) map[int32]int64 {
		t.Helper()
		ctx := testCtx(t, 30*time.Second)
		start := time.Now()
		l := g.ledger(from, to)
		r := kafkago.NewReader(kafkago.ReaderConfig{
			Brokers:     []string{g.nd.kafka},
			GroupID:     g.group,
			Topic:       g.topic,
			Logger:      logger,
			ErrorLogger: logger,
		})
		closed := false
		defer func() {
			if !closed {
				r.Close()
			}
		}()
		for !l.complete() {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				l.check(t) // names what is missing
				t.Fatalf("kafka-go ReadMessage: %v", err)
			}
			l.add(name, int32(m.Partition), m.Offset, m.Key, m.Value)
		}
		waitStable(t, g.adm, g.group, g.topic, 1, groupTestPartitions)
		redelivered := l.check(t)
		t.Logf("%s read records %d..%d in %v (joining included), %d redelivered", name, from, to-1, time.Since(start).Round(time.Millisecond), redelivered)
		closed = true
		return closeKafkaGoReader(t, g, r, &next)
	}

	g.produce(t, 0, first)
	next = first
	ends := read("kafka-go-1", 0, first)
	g.checkCommitted(t, ends)

	// The records Close woke the first Reader with are the first of the
	// next run.
	g.produce(t, next, first+later)
	next = first + later
	ends = read("kafka-go-2", first, first+later)
	g.checkCommitted(t, ends)
}

// --- kafkajs: consumer --------------------------------------------------------

// kafkajsLine is one line test/kafkajs/consume.js prints: a message it
// read, or (Joined) the group generation it joined.
type kafkajsLine struct {
	Partition int32  `json:"partition"`
	Offset    string `json:"offset"`
	Key       string `json:"key"`
	Value     string `json:"value"`
	Joined    *struct {
		MemberID   string             `json:"memberId"`
		Assignment map[string][]int32 `json:"assignment"`
	} `json:"joined"`
}

// kafkajsMember is one test/kafkajs/consume.js process.
type kafkajsMember struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.Closer
	stderr bytes.Buffer
	// exited is closed once the process has exited and its output has
	// been read; err says why it exited.
	exited chan struct{}
	err    error

	mu    sync.Mutex
	joins []string
}

// startKafkajs starts consume.js in g's group; it tallies what it reads in
// *l. The process is killed if the test ends first.
func startKafkajs(t *testing.T, g *groupTest, dir, name string, l *atomic.Pointer[groupLedger]) *kafkajsMember {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	m := &kafkajsMember{name: name, exited: make(chan struct{})}
	m.cmd = exec.CommandContext(ctx, "node", "consume.js", g.nd.kafka, g.group, g.topic)
	m.cmd.Dir = dir
	m.cmd.Stderr = &m.stderr
	stdin, err := m.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	m.stdin = stdin
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start node consume.js: %v", err)
	}
	t.Cleanup(func() {
		_ = m.cmd.Process.Kill() // fails harmlessly once it has exited
		<-m.exited
		cancel()
		if t.Failed() {
			t.Logf("--- %s (consume.js) stderr ---\n%s", name, m.stderr.String())
		}
	})
	go func() {
		defer close(m.exited)
		var err error
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for err == nil && sc.Scan() {
			err = m.line(g, l.Load(), sc.Bytes())
		}
		if err == nil {
			err = sc.Err()
		}
		if err != nil {
			// Wait needs stdout read to its end.
			_ = m.cmd.Process.Kill()
			_, _ = io.Copy(io.Discard, stdout)
		}
		m.err = errors.Join(err, m.cmd.Wait())
	}()
	return m
}

// line takes one line of consume.js's output.
func (m *kafkajsMember) line(g *groupTest, l *groupLedger, b []byte) error {
	var line kafkajsLine
	if err := json.Unmarshal(b, &line); err != nil {
		return fmt.Errorf("%s printed %q: %w", m.name, b, err)
	}
	if line.Joined != nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.joins = append(m.joins, fmt.Sprint(line.Joined.Assignment[g.topic]))
		return nil
	}
	key, kerr := base64.StdEncoding.DecodeString(line.Key)
	value, verr := base64.StdEncoding.DecodeString(line.Value)
	var offset int64
	_, oerr := fmt.Sscan(line.Offset, &offset)
	if err := errors.Join(kerr, verr, oerr); err != nil {
		return fmt.Errorf("%s printed %q: %w", m.name, b, err)
	}
	l.add(m.name, line.Partition, offset, key, value)
	return nil
}

// waitKafkajs waits until l holds every record of its run; it fails the
// test at once if a member exits.
func waitKafkajs(t *testing.T, l *groupLedger, ms ...*kafkajsMember) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !l.complete(); {
		for _, m := range ms {
			select {
			case <-m.exited:
				t.Fatalf("%s exited before every record was read: %v", m.name, m.err)
			default:
			}
		}
		if time.Now().After(deadline) {
			l.check(t) // names what is missing
			t.Fatal("kafkajs did not read every record within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop closes the member's stdin, which makes consume.js disconnect
// (commit, leave the group) and exit, and waits for that. It may run in a
// goroutine of its own.
func (m *kafkajsMember) stop(t *testing.T) error {
	start := time.Now()
	m.stdin.Close()
	<-m.exited
	if m.err != nil {
		return fmt.Errorf("%s: node consume.js: %w", m.name, m.err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t.Logf("%s was assigned %v in the generations it joined; it stopped in %v", m.name, m.joins, time.Since(start).Round(time.Millisecond))
	return nil
}

// TestKafkaJSGroup: two test/kafkajs/consume.js processes (kafkajs's
// default consumer, subscribed fromBeginning, eachMessage) share a
// 4-partition topic in a group; one leaves and the other takes over its
// partitions from its commits; once it leaves too, a later run reads only
// what was produced since.
func TestKafkaJSGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := kafkajsDir(t)
	const first, handover, later = 2000, 200, 200
	// kafkajs decodes gzip batches only, unless given codecs of other
	// libraries; the records are produced with it.
	g := newGroupTest(t, "kafkajs", 503, first+handover+later, groupSettings, kgo.ProducerBatchCompression(kgo.GzipCompression()))

	start := time.Now()
	var l atomic.Pointer[groupLedger]
	l.Store(g.ledger(0, first))
	m1 := startKafkajs(t, g, dir, "kafkajs-1", &l)
	m2 := startKafkajs(t, g, dir, "kafkajs-2", &l)
	waitStable(t, g.adm, g.group, g.topic, 2, groupTestPartitions)
	t.Logf("two kafkajs members Stable after %v (node start included)", time.Since(start).Round(time.Millisecond))
	g.produce(t, 0, first)
	waitKafkajs(t, l.Load(), m1, m2)
	redelivered := l.Load().check(t)
	l.Load().checkShared(t, "kafkajs-1", "kafkajs-2")
	t.Logf("two kafkajs members read %d records in %v, %d redelivered", first, time.Since(start).Round(time.Millisecond), redelivered)

	// From here on, a record of the first run read again is a failure:
	// kafkajs-1 commits before it leaves. The next records arrive while
	// it leaves (which ends its fetch's long poll, 5 s by default), so
	// either member may read them.
	start = time.Now()
	l.Store(g.ledger(first, first+handover))
	stopped := make(chan error, 1)
	go func() { stopped <- m1.stop(t) }()
	g.produce(t, first, first+handover)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	waitStable(t, g.adm, g.group, g.topic, 1, groupTestPartitions)
	waitKafkajs(t, l.Load(), m2)
	if err := m2.stop(t); err != nil {
		t.Fatal(err)
	}
	redelivered = l.Load().check(t)
	t.Logf("kafkajs-1 left, kafkajs-2 took over: the %d records produced meanwhile read, none of kafkajs-1's again, in %v, %d redelivered", handover, time.Since(start).Round(time.Millisecond), redelivered)
	g.checkCommitted(t, endOffsets(t, g.adm, g.topic, groupTestPartitions))

	g.produce(t, first+handover, first+handover+later)
	start = time.Now()
	l.Store(g.ledger(first+handover, first+handover+later))
	m3 := startKafkajs(t, g, dir, "kafkajs-3", &l)
	waitKafkajs(t, l.Load(), m3)
	if err := m3.stop(t); err != nil {
		t.Fatal(err)
	}
	redelivered = l.Load().check(t)
	t.Logf("a later kafkajs run read the %d new records and nothing older in %v, %d redelivered", later, time.Since(start).Round(time.Millisecond), redelivered)
	g.checkCommitted(t, endOffsets(t, g.adm, g.topic, groupTestPartitions))
}
