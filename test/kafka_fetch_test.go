package test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestProduceAcks: the non-default acks levels round-trip too. acks=1
// (answered once the leader persisted the batch) gets offsets like
// acks=all; acks=0 gets no response at all, so its records are found by
// content once the log end shows them all.
func TestProduceAcks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	adm := nd.admin(t)
	const partitions, n = 4, 5000

	t.Run("acks=1", func(t *testing.T) {
		const topic = "acks-leader"
		createTopic(t, adm, topic, partitions, nil)
		recs := randomRecords(rand.New(rand.NewPCG(3, 1)), topic, n, time.Now())
		prod := nd.client(t, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
		produceAll(t, testCtx(t, 30*time.Second), prod, recs)
		checkRoundTrip(t, recs, consumeAll(t, testCtx(t, 30*time.Second), nd, topic, n), partitions)
	})

	t.Run("acks=0", func(t *testing.T) {
		const topic = "acks-none"
		createTopic(t, adm, topic, partitions, nil)
		recs := randomRecords(rand.New(rand.NewPCG(3, 0)), topic, n, time.Now())
		for i, r := range recs {
			r.Key = fmt.Appendf(r.Key, "#%d", i) // unique: records are matched by key
		}
		prod := nd.client(t, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
		ctx := testCtx(t, 30*time.Second)
		produceAll(t, ctx, prod, recs)
		// Nothing tells an acks=0 producer when its records are in: wait
		// for the log ends to add up.
		waitFor(t, 15*time.Second, fmt.Sprintf("%d acks=0 records in the log", n), func() bool {
			ends, err := adm.ListEndOffsets(ctx, topic)
			if err != nil || ends.Error() != nil {
				return false
			}
			var total int64
			for _, o := range ends[topic] {
				total += o.Offset
			}
			return total >= n
		})
		byKey := map[string]*kgo.Record{}
		for _, r := range recs {
			byKey[string(r.Key)] = r
		}
		lastIdx := map[int32]int{} // index in recs of the last record read per partition
		index := map[string]int{}
		for i, r := range recs {
			index[string(r.Key)] = i
		}
		got := consumeAll(t, ctx, nd, topic, n)
		if len(got) != n {
			t.Fatalf("read %d records, produced %d", len(got), n)
		}
		for _, g := range got {
			w, ok := byKey[string(g.Key)]
			if !ok {
				t.Fatalf("record %q at %d/%d read twice or never produced", g.Key, g.Partition, g.Offset)
			}
			delete(byKey, string(g.Key))
			if g.Partition != w.Partition {
				t.Fatalf("record %q read from partition %d, produced to %d", g.Key, g.Partition, w.Partition)
			}
			if d := recordDiff(w, g); d != "" {
				t.Fatalf("record %q at %d/%d: %s", g.Key, g.Partition, g.Offset, d)
			}
			// One producer, no retries: each partition in production order.
			if i := index[string(g.Key)]; i < lastIdx[g.Partition] {
				t.Fatalf("partition %d: record %d read after record %d", g.Partition, i, lastIdx[g.Partition])
			} else {
				lastIdx[g.Partition] = i
			}
		}
	})
}

// fetchOne sends a raw Fetch for partition 0 of topic to nd and returns
// the partition's answer and how long the broker took.
func fetchOne(t *testing.T, cl *kgo.Client, nd *node, topic string, offset int64, maxWait, maxBytes, partMaxBytes int32, currentEpoch int32) (kmsg.FetchResponseTopicPartition, time.Duration) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = maxWait, 1, maxBytes
	req.SessionEpoch = -1 // a full fetch, no session
	rt := kmsg.NewFetchRequestTopic()
	// By name up to v12, by id from v13 (the client picks the version).
	rt.Topic, rt.TopicID = topic, topicMetadata(t, cl, topic).TopicID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = 0, offset, partMaxBytes, currentEpoch
	rp.LogStartOffset = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	start := time.Now()
	resp := brokerRequest[*kmsg.FetchResponse](t, cl, nd, req)
	took := time.Since(start)
	if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("Fetch v%d %s@%d: %s, %d topics", resp.Version, topic, offset, codeName(resp.ErrorCode), len(resp.Topics))
	}
	return resp.Topics[0].Partitions[0], took
}

// batchesIn decodes the record batch headers of a Fetch answer.
func batchesIn(t *testing.T, data []byte) []kmsg.RecordBatch {
	t.Helper()
	var out []kmsg.RecordBatch
	for len(data) > 0 {
		var b kmsg.RecordBatch
		if len(data) < 12 {
			t.Fatalf("%d trailing bytes after the last batch", len(data))
		}
		n := 12 + int(int32(uint32(data[8])<<24|uint32(data[9])<<16|uint32(data[10])<<8|uint32(data[11])))
		if n > len(data) {
			t.Fatalf("partial batch: %d bytes of %d", len(data), n)
		}
		if err := b.ReadFrom(data[:n]); err != nil {
			t.Fatalf("decode batch: %v", err)
		}
		out = append(out, b)
		data = data[n:]
	}
	return out
}

// TestFetchPaths: the Fetch behaviours consumers rely on. A first batch
// larger than every limit still comes back (KIP-74); a fetch inside a batch
// returns that whole batch and a consumer starting there sees nothing
// before its offset; past the log end is OFFSET_OUT_OF_RANGE, at it is an
// empty long poll that data wakes; stale and future leader epochs are
// fenced.
func TestFetchPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	const topic = "fetching"
	createTopic(t, nd.admin(t), topic, 1, nil)
	cl := nd.client(t)
	ctx := testCtx(t, 60*time.Second)
	prod := nd.client(t, kgo.ProducerBatchCompression(kgo.NoCompression()))
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Topic: topic, Value: bytes.Repeat([]byte{byte(i)}, 100)})
	}
	for i := 0; i < len(recs); i += 10 { // batches of 10 records
		if err := prod.ProduceSync(ctx, recs[i:i+10]...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	epoch := leaderEpoch(t, cl, topic, 0)

	// KIP-74: limits of one byte still return the first whole batch.
	p, _ := fetchOne(t, cl, nd, topic, 0, 0, 1, 1, epoch)
	if p.ErrorCode != 0 || p.HighWatermark != 100 {
		t.Fatalf("fetch at 0: %s hw %d", codeName(p.ErrorCode), p.HighWatermark)
	}
	if bs := batchesIn(t, p.RecordBatches); len(bs) != 1 || bs[0].FirstOffset != 0 || bs[0].NumRecords != 10 {
		t.Fatalf("fetch at 0 with 1-byte limits: %d batches (first %+v), want exactly the first whole batch", len(bs), bs)
	}

	// Inside a batch: the batch that holds the offset, whole.
	p, _ = fetchOne(t, cl, nd, topic, 15, 0, 1<<20, 1<<20, -1)
	if bs := batchesIn(t, p.RecordBatches); p.ErrorCode != 0 || len(bs) == 0 || bs[0].FirstOffset != 10 {
		t.Fatalf("fetch at 15: %s, first batch %+v; want the batch starting at 10", codeName(p.ErrorCode), bs)
	}
	cons := nd.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(15)}}))
	var got []*kgo.Record
	for len(got) < 85 && ctx.Err() == nil {
		got = append(got, cons.PollFetches(ctx).Records()...)
	}
	if len(got) != 85 || got[0].Offset != 15 || !bytes.Equal(got[0].Value, recs[15].Value) {
		t.Fatalf("consuming from 15: %d records, first at %d; want 85 from offset 15", len(got), got[0].Offset)
	}

	// Past the log end: out of range. At it: empty, after the long poll.
	if p, _ := fetchOne(t, cl, nd, topic, 101, 0, 1<<20, 1<<20, -1); p.ErrorCode != kerr.OffsetOutOfRange.Code {
		t.Errorf("fetch at 101 of 100: %s, want OFFSET_OUT_OF_RANGE", codeName(p.ErrorCode))
	}
	p, took := fetchOne(t, cl, nd, topic, 100, 500, 1<<20, 1<<20, -1)
	if p.ErrorCode != 0 || len(p.RecordBatches) != 0 || p.RecordBatches == nil {
		t.Errorf("fetch at the log end: %s with %d bytes (nil: %v), want an empty, non-null record set", codeName(p.ErrorCode), len(p.RecordBatches), p.RecordBatches == nil)
	}
	if took < 400*time.Millisecond || took > 5*time.Second {
		t.Errorf("fetch at the log end with MaxWait 500 ms answered after %v", took)
	}

	// A long poll at the end returns as soon as a record arrives.
	type answer struct {
		p    kmsg.FetchResponseTopicPartition
		took time.Duration
	}
	done := make(chan answer, 1)
	topicID := topicMetadata(t, cl, topic).TopicID
	go func() {
		// Its own client: t.Fatal must not run here, so errors come back
		// as an empty answer and are reported below.
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes, req.SessionEpoch = -1, 20_000, 1, 1<<20, -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = topic, topicID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch, rp.LogStartOffset = 100, 1<<20, -1, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		start := time.Now()
		resp, err := cl.Broker(int(nd.id)).Request(ctx, req)
		a := answer{took: time.Since(start)}
		if err == nil {
			if fr := resp.(*kmsg.FetchResponse); len(fr.Topics) == 1 && len(fr.Topics[0].Partitions) == 1 {
				a.p = fr.Topics[0].Partitions[0]
			}
		}
		done <- a
	}()
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("wake up")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	select {
	case a := <-done:
		bs := batchesIn(t, a.p.RecordBatches)
		if len(bs) != 1 || bs[0].FirstOffset != 100 || a.took > 10*time.Second {
			t.Errorf("long poll at 100: %d batches (%+v) after %v; want the new record well before MaxWait", len(bs), bs, a.took)
		}
	case <-time.After(25 * time.Second):
		t.Fatalf("long poll not answered after 25 s")
	}

	// Fencing by the client's leader epoch, and an unknown partition.
	if p, _ := fetchOne(t, cl, nd, topic, 0, 0, 1<<20, 1<<20, epoch+1); p.ErrorCode != kerr.UnknownLeaderEpoch.Code {
		t.Errorf("fetch with epoch %d (current %d): %s, want UNKNOWN_LEADER_EPOCH", epoch+1, epoch, codeName(p.ErrorCode))
	}
	if p, _ := fetchOne(t, cl, nd, topic, 0, 0, 1<<20, 1<<20, epoch-1); p.ErrorCode != kerr.FencedLeaderEpoch.Code {
		t.Errorf("fetch with epoch %d (current %d): %s, want FENCED_LEADER_EPOCH", epoch-1, epoch, codeName(p.ErrorCode))
	}
	// By name (v12 and below) the topic is unknown, by id (v13+) the id.
	if p, _ := fetchOne(t, cl, nd, "no-such-topic", 0, 0, 1<<20, 1<<20, -1); p.ErrorCode != kerr.UnknownTopicOrPartition.Code && p.ErrorCode != kerr.UnknownTopicID.Code {
		t.Errorf("fetch of an unknown topic: %s, want UNKNOWN_TOPIC_OR_PARTITION or UNKNOWN_TOPIC_ID", codeName(p.ErrorCode))
	}
}
