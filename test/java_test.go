package test

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// The Apache Kafka Java client (3.4.1, built from source by
// java_helpers_test.go) against real bin/flotilla processes: its producer
// with the default configuration (idempotent, acks=all, the built-in
// partitioner), uncompressed and with each codec; its consumer, assigned
// and in a group; the Admin calls a user runs; and the default producer
// writing while a partition leader's broker is killed.

// javaRecords returns n records for the Java producer: makeTestRecords's,
// left to the producer's partitioner, timestamped a millisecond apart from
// base, with headers on two in three (an empty value among them).
func javaRecords(seed uint64, n int, base time.Time) []javaRecord {
	var recs []javaRecord
	for i, r := range makeTestRecords(seed, n) {
		jr := javaRecord{testRecord: r, Partition: -1, Timestamp: base.Add(time.Duration(i) * time.Millisecond)}
		switch i % 3 {
		case 1:
			jr.Headers = []kgo.RecordHeader{{Key: "index", Value: []byte(strconv.Itoa(i))}}
		case 2:
			jr.Headers = []kgo.RecordHeader{{Key: "bytes", Value: r.Key[6:]}, {Key: "empty", Value: []byte{}}, {Key: "ключ", Value: r.Value[:1]}}
		}
		recs = append(recs, jr)
	}
	return recs
}

// acknowledged returns recs as kgo records at the partitions and offsets
// the Java producer acknowledged them at, failing the test if it did not
// acknowledge every one.
func acknowledged(t *testing.T, recs []javaRecord, res javaProduced) []*kgo.Record {
	t.Helper()
	for i, err := range res.failed {
		t.Fatalf("the Java producer failed %d of %d records; record %d: %s", len(res.failed), len(recs), i, err)
	}
	out := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		a, ok := res.acked[i]
		if !ok {
			t.Fatalf("the Java producer never answered for record %d", i)
		}
		out[i] = &kgo.Record{Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp, Partition: a.Partition, Offset: a.Offset}
	}
	return out
}

// batchCodecs counts the record batches of every partition of topic by
// the codec in their attributes (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd),
// read raw with one Fetch (cl pinned to Fetch by topic name).
func batchCodecs(t *testing.T, cl *kgo.Client, topic string, partitions int) map[int16]int {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.MaxBytes = 64 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.PartitionMaxBytes = int32(p), 16<<20
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testCtx(t, 10*time.Second), cl)
	if err != nil {
		t.Fatalf("Fetch %s: %v", topic, err)
	}
	codecs := map[int16]int{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if rp.ErrorCode != 0 {
				t.Fatalf("Fetch %s/%d: %s", topic, rp.Partition, codeName(rp.ErrorCode))
			}
			for b := rp.RecordBatches; len(b) >= 12; {
				n := 12 + int(binary.BigEndian.Uint32(b[8:12]))
				if n > len(b) {
					break // the fetch cut a batch short
				}
				var rb kmsg.RecordBatch
				if err := rb.ReadFrom(b[:n]); err != nil {
					t.Fatalf("Fetch %s/%d: batch: %v", topic, rp.Partition, err)
				}
				codecs[rb.Attributes&7]++
				b = b[n:]
			}
		}
	}
	return codecs
}

// TestJavaProducer produces with the Java producer's default configuration
// (in 3.4: enable.idempotence=true, acks=all, the built-in partitioner,
// murmur2 of the key for a keyed record) to topics the Java Admin client
// creates, uncompressed and with each codec, and reads the records back
// byte for byte, keys, values, headers and timestamps, with franz-go and
// with an assign()-based Java consumer.
func TestJavaProducer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	j := buildJavaClient(t)
	nd := startKafka(t)
	var logs logBuffer
	logs.dumpOnFailure(t, "Java client")
	adm := j.admin(t, nd.kafka, &logs)
	raw := nd.client(t, kgo.MaxVersions(kversion.V2_8_0()))
	const partitions = 3
	for i, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			topic := "java-" + codec
			adm.must(t, fmt.Sprintf("createTopic %s %d", topic, partitions))
			want := javaRecords(uint64(500+i), clientRecords, time.Now().Add(-time.Hour))
			var props []string
			if codec != "none" {
				props = append(props, "compression.type="+codec)
			}
			before := nd.metric(t, initProducerIDs)
			start := time.Now()
			res := j.produce(t, testCtx(t, 90*time.Second), &logs, nd.kafka, topic, want, nil, nil, props...)
			produced := acknowledged(t, want, res)
			t.Logf("%d records: the Java producer ran for %v (JVM start included)", len(want), time.Since(start).Round(time.Millisecond))
			checkInitProducerID(t, nd, before, true)

			// Java's built-in partitioner puts a keyed record where
			// murmur2 of its key says, as kgo's StickyKeyPartitioner does
			// with its default hasher.
			part := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
			for k, r := range produced {
				if p := part.Partition(&kgo.Record{Key: r.Key}, partitions); p != int(r.Partition) {
					t.Fatalf("record %d acknowledged in partition %d; murmur2 of its key says %d", k, r.Partition, p)
				}
			}

			got := consumeAll(t, testCtx(t, 60*time.Second), nd, topic, len(want))
			checkRoundTrip(t, produced, got, partitions)
			jgot, _ := j.consume(t, testCtx(t, 60*time.Second), &logs, "assign", nd.kafka, topic)
			checkRoundTrip(t, produced, jgot, partitions)

			codecs := batchCodecs(t, raw, topic, partitions)
			wantCodec := map[string]int16{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[codec]
			if len(codecs) != 1 || codecs[wantCodec] == 0 {
				t.Fatalf("batches by codec %v; the producer compressed every batch with %s (%d)", codecs, codec, wantCodec)
			}
			t.Logf("%d batches, all %s; read back by franz-go and by the Java consumer", codecs[wantCodec], codec)
		})
	}
}

// TestJavaGroup consumes with a Java KafkaConsumer in a group (subscribe,
// commitSync of what it read), then with a later, static member of the
// group (group.instance.id), which must resume from the commits; the Java
// Admin client removes the static member, which stays in the group when
// it closes (removeMembersFromConsumerGroup); kadm and the Java Admin
// client (listConsumerGroups, describeConsumerGroups,
// listConsumerGroupOffsets) must show the group and its offsets.
func TestJavaGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	j := buildJavaClient(t)
	const n = 1200
	g := newGroupTest(t, "java", 600, n, groupSettings)
	var logs logBuffer
	logs.dumpOnFailure(t, "Java client")
	for member, run := range [][2]int{{0, n / 2}, {n / 2, n}} {
		g.produce(t, run[0], run[1])
		l := g.ledger(run[0], run[1])
		name := fmt.Sprintf("java-%d", member+1)
		args := []string{"consume", g.nd.kafka, g.group, g.topic, strconv.Itoa(run[1] - run[0])}
		if member == 1 {
			args = append(args, "group.instance.id="+name)
		}
		recs, other := j.consume(t, testCtx(t, 90*time.Second), &logs, args...)
		for _, r := range recs {
			l.add(name, r.Partition, r.Offset, r.Key, r.Value)
		}
		// The member commits exactly what it read (commitSync after each
		// poll), so the next one reads nothing twice.
		if redelivered := l.check(t); redelivered > 0 {
			t.Fatalf("%s: %d records read twice", name, redelivered)
		}
		if want := fmt.Sprintf("assigned\t%d", groupTestPartitions); !strings.Contains(strings.Join(other, "\n"), want) {
			t.Fatalf("%s: want %q, printed %q", name, want, other)
		}
	}
	adm := j.admin(t, g.nd.kafka, &logs)
	if d := adm.must(t, "describeGroup "+g.group); len(d) != 1 || d[0][1] != "Stable" || d[0][3] != "1" {
		t.Fatalf("Java describeConsumerGroups %s after its static member closed: %q; want it Stable with the member", g.group, d)
	}
	adm.must(t, "removeMember "+g.group+" java-2")
	ends := endOffsets(t, g.adm, g.topic, groupTestPartitions)
	g.checkCommitted(t, ends)

	groups := adm.must(t, "listGroups")
	if len(groups) != 1 || groups[0][1] != g.group || groups[0][2] != "Empty" {
		t.Fatalf("Java listConsumerGroups: %q; want %s, Empty", groups, g.group)
	}
	if d := adm.must(t, "describeGroup "+g.group); len(d) != 1 || d[0][1] != "Empty" || d[0][3] != "0" {
		t.Fatalf("Java describeConsumerGroups %s: %q; want Empty with no members", g.group, d)
	}
	committed := map[int32]int64{}
	for _, c := range adm.must(t, "groupOffsets "+g.group) {
		p, _ := strconv.Atoi(c[2])
		o, _ := strconv.ParseInt(c[3], 10, 64)
		if c[1] != g.topic {
			t.Fatalf("Java listConsumerGroupOffsets %s: a commit for topic %s", g.group, c[1])
		}
		committed[int32(p)] = o
	}
	if !maps.Equal(committed, ends) {
		t.Fatalf("Java listConsumerGroupOffsets %s: %v; the members stopped at %v", g.group, committed, ends)
	}
}

// TestJavaAdmin runs the Admin calls a user runs, each of which either
// works as on Kafka or fails with the exception Kafka would give; and a
// transactional producer, which Flotilla does not support, must fail with
// a clear exception, not hang.
func TestJavaAdmin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	j := buildJavaClient(t)
	nd := startKafka(t)
	var logs logBuffer
	logs.dumpOnFailure(t, "Java client")
	adm := j.admin(t, nd.kafka, &logs)
	one := func(command string) []string {
		t.Helper()
		lines := adm.must(t, command)
		if len(lines) != 1 {
			t.Fatalf("Java Admin %s: %q; want one line", command, lines)
		}
		return lines[0]
	}
	// fails checks that command fails with exception and, if message is
	// not "", with that message: Kafka's for the same failure.
	fails := func(command, exception, message string) {
		t.Helper()
		_, err := adm.call(t, command)
		if !strings.HasPrefix(err, exception+"\t") || message != "" && err != exception+"\t"+message {
			t.Fatalf("Java Admin %s: %q; want %s: %s", command, err, exception, message)
		}
		t.Logf("%s: %s", command, err)
	}

	cluster := adm.must(t, "describeCluster")
	host, port, _ := strings.Cut(nd.kafka, ":")
	if len(cluster) != 2 || cluster[0][1] == "" || cluster[0][2] != "1" ||
		!slices.Equal(cluster[1], []string{"node", "1", host, port}) {
		t.Fatalf("Java describeCluster: %q; want a cluster id, controller 1, node 1 at %s", cluster, nd.kafka)
	}

	const topic = "java-admin"
	adm.must(t, "createTopic "+topic+" 2")
	fails("createTopic "+topic+" 2", "org.apache.kafka.common.errors.TopicExistsException", "Topic '"+topic+"' already exists")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var recs []javaRecord
	for i := range 10 {
		recs = append(recs, javaRecord{
			testRecord: testRecord{Key: fmt.Appendf(nil, "%06d", i), Value: []byte("v")},
			Partition:  0, Timestamp: base.Add(time.Duration(i) * time.Second),
		})
	}
	acknowledged(t, recs, j.produce(t, testCtx(t, 60*time.Second), &logs, nd.kafka, topic, recs, nil, nil))

	for _, p := range adm.must(t, "describeTopic "+topic) {
		if p[2] != "1" || p[3] != "1" || p[4] != "1" {
			t.Fatalf("Java describeTopics %s: partition %q; want leader 1, one replica in sync", topic, p)
		}
	}
	configs := map[string][]string{}
	for _, c := range adm.must(t, "describeConfigs "+topic) {
		configs[c[1]] = c[2:]
	}
	if !slices.Equal(configs["cleanup.policy"], []string{"delete", "DEFAULT_CONFIG", "LIST"}) ||
		!slices.Equal(configs["retention.ms"], []string{"604800000", "DEFAULT_CONFIG", "LONG"}) {
		t.Fatalf("Java describeConfigs %s: %q", topic, configs)
	}
	// What kafka-configs --alter --add-config and --delete-config send.
	configOf := func(key string) []string {
		t.Helper()
		for _, c := range adm.must(t, "describeConfigs "+topic) {
			if c[1] == key {
				return c[2:]
			}
		}
		t.Fatalf("Java describeConfigs %s: no %s", topic, key)
		return nil
	}
	adm.must(t, "alterConfig "+topic+" SET retention.ms 3600000")
	if c := configOf("retention.ms"); !slices.Equal(c, []string{"3600000", "DYNAMIC_TOPIC_CONFIG", "LONG"}) {
		t.Fatalf("Java describeConfigs %s after setting retention.ms to 3600000: %q", topic, c)
	}
	adm.must(t, "alterConfig "+topic+" DELETE retention.ms")
	if c := configOf("retention.ms"); !slices.Equal(c, []string{"604800000", "DEFAULT_CONFIG", "LONG"}) {
		t.Fatalf("Java describeConfigs %s after deleting retention.ms: %q", topic, c)
	}
	fails("alterConfig "+topic+" SET no.such.config 1", "org.apache.kafka.common.errors.InvalidConfigurationException", "")

	ms := func(d time.Duration) string { return strconv.FormatInt(base.Add(d).UnixMilli(), 10) }
	for _, c := range []struct{ spec, offset, ts string }{
		{"earliest", "0", "-1"},
		{"latest", "10", "-1"},
		{ms(3500 * time.Millisecond), "4", ms(4 * time.Second)}, // the first record at or after
		{ms(time.Hour), "-1", "-1"},                             // none: Kafka answers offset -1
	} {
		if got := one(fmt.Sprintf("listOffsets %s 0 %s", topic, c.spec)); got[1] != c.offset || got[2] != c.ts {
			t.Fatalf("Java listOffsets %s/0 %s: offset %s timestamp %s; want %s, %s", topic, c.spec, got[1], got[2], c.offset, c.ts)
		}
	}

	if got := one("deleteRecords " + topic + " 0 5"); got[1] != "5" {
		t.Fatalf("Java deleteRecords %s/0 before 5: low watermark %s", topic, got[1])
	}
	if got := one("listOffsets " + topic + " 0 earliest"); got[1] != "5" {
		t.Fatalf("Java listOffsets %s/0 earliest after deleteRecords: %s, want 5", topic, got[1])
	}
	fails("deleteRecords "+topic+" 0 11", "org.apache.kafka.common.errors.OffsetOutOfRangeException", "")

	adm.must(t, "createPartitions "+topic+" 4")
	if ps := adm.must(t, "describeTopic "+topic); len(ps) != 4 {
		t.Fatalf("Java describeTopics %s after createPartitions to 4: %q", topic, ps)
	}
	fails("createPartitions "+topic+" 3", "org.apache.kafka.common.errors.InvalidPartitionsException",
		"Topic currently has 4 partitions, which is higher than the requested 3")

	adm.must(t, "deleteTopic "+topic)
	waitFor(t, 15*time.Second, "the Java client to see the topic deleted", func() bool {
		lines, _ := adm.call(t, "listTopics")
		return len(lines) == 0
	})
	fails("describeTopic "+topic, "org.apache.kafka.common.errors.UnknownTopicOrPartitionException", "")
	// Kafka answers a topic that does not exist with the bare error code,
	// so the exception carries the code's description.
	fails("deleteTopic "+topic, "org.apache.kafka.common.errors.UnknownTopicOrPartitionException",
		"This server does not host this topic-partition.")

	if groups := adm.must(t, "listGroups"); len(groups) != 0 {
		t.Fatalf("Java listConsumerGroups: %q; want none", groups)
	}

	// A transactional producer's initTransactions looks for its
	// transaction coordinator, which Flotilla has not got.
	adm.must(t, "createTopic java-txn 1")
	start := time.Now()
	_, err := adm.call(t, "transaction txn-1 java-txn")
	if !strings.Contains(err, "TRANSACTION") || time.Since(start) > 15*time.Second {
		t.Fatalf("transactional producer: %q after %v; want a clear failure to find a TRANSACTION coordinator, at once", err, time.Since(start))
	}
	t.Logf("transactional producer, after %v: %s", time.Since(start).Round(time.Millisecond), err)
}

// TestJavaProducerLeaderKill runs the Java producer with its default
// configuration against three brokers and SIGKILLs the broker leading
// partition 0 of its RF=3 topic a third of the way through: every record
// must be acknowledged (it retries until delivery.timeout.ms, 2 minutes),
// and read back once, where it was acknowledged, in production order
// within its partition: no loss and, with idempotence, no duplicates.
func TestJavaProducerLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	j := buildJavaClient(t)
	const (
		topic      = "java-kill"
		partitions = 3
		records    = 20_000
		inFlight   = 2_000 // records written to the producer and not yet answered
	)
	nodes := newCluster(t, 3)
	for _, nd := range nodes {
		nd.start(t)
	}
	waitLeader(t, 15*time.Second, nodes)
	seeds := []string{nodes[0].kafka, nodes[1].kafka, nodes[2].kafka}
	bootstrap := strings.Join(seeds, ",")
	var logs logBuffer
	logs.dumpOnFailure(t, "Java client")
	adm := j.admin(t, bootstrap, &logs)
	adm.must(t, fmt.Sprintf("createTopic %s %d 3", topic, partitions))
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var victim *node
	waitFor(t, 15*time.Second, "a leader for partition 0", func() bool {
		mt := topicMetadata(t, cl, topic)
		for _, p := range mt.Partitions {
			if p.Partition == 0 && p.ErrorCode == 0 && p.Leader > 0 {
				victim = nodes[p.Leader-1]
			}
		}
		return victim != nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	want := javaRecords(700, records, time.Now().Add(-time.Hour))
	window := make(chan struct{}, inFlight)
	var killed sync.WaitGroup
	var killedAt time.Time
	gate := func(int) bool {
		select {
		case window <- struct{}{}:
			return true
		case <-ctx.Done():
			return false
		}
	}
	onAnswer := func(n int) {
		<-window
		if n == records/3 {
			killed.Add(1)
			go func() {
				defer killed.Done()
				victim.kill()
				killedAt = time.Now()
			}()
		}
	}
	start := time.Now()
	res := j.produce(t, ctx, &logs, bootstrap, topic, want, gate, onAnswer)
	killed.Wait()
	if killedAt.IsZero() {
		t.Fatalf("broker %d was never killed: %d records answered", victim.id, len(res.acked)+len(res.failed))
	}
	t.Logf("SIGKILLed broker %d (leader of partition 0) %v after the producer started; every record answered %v after the kill",
		victim.id, killedAt.Sub(start).Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))
	produced := acknowledged(t, want, res)
	var live *node
	for _, nd := range nodes {
		if nd != victim {
			checkStarted(t, nd)
			live = nd
		}
	}
	got := consumeAll(t, testCtx(t, 60*time.Second), live, topic, len(want), kgo.SeedBrokers(seeds...))
	checkRoundTrip(t, produced, got, partitions)
	// checkRoundTrip matched offsets; the order within each partition is
	// the order produced (the producer keeps it across retries).
	last := map[int32]int{}
	for _, r := range got {
		i, _ := recordIndex(r.Key)
		if prev, ok := last[r.Partition]; ok && i < prev {
			t.Fatalf("partition %d: record %d after record %d: out of production order", r.Partition, i, prev)
		}
		last[r.Partition] = i
	}
}
