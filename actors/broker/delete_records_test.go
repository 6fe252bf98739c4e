package broker

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/configs"
)

// partitionLeader returns the index of the broker whose replica of tp leads,
// waiting for one.
func (c *testCluster) partitionLeader(tp partition.TopicPartition) int {
	c.t.Helper()
	at := -1
	c.waitFor(10*time.Second, fmt.Sprintf("a leader of %v", tp), func() bool {
		for i := range c.brokers {
			if v := c.replicaView(i, tp); v != nil && v.Leader {
				at = i
				return true
			}
		}
		return false
	})
	return at
}

// preferredLeader returns the index of the broker whose replica of tp
// leads, waiting for the partition's preferred replica (the first of its
// assignment) to lead: a test that asks its leader and its followers apart
// must not have the leadership moved back to the preferred replica under
// it a second later.
func (c *testCluster) preferredLeader(tp partition.TopicPartition) int {
	c.t.Helper()
	at := -1
	c.waitFor(15*time.Second, fmt.Sprintf("the preferred replica of %v leading", tp), func() bool {
		t := c.brokers[0].Controller().View().Topics[tp.Topic]
		if t == nil || int(tp.Partition) >= len(t.Partitions) {
			return false
		}
		at = int(t.Partitions[tp.Partition].Replicas[0]) - 1 // node ids are 1-based
		v := c.replicaView(at, tp)
		return v != nil && v.Leader
	})
	return at
}

// deleteRecordsAt sends a DeleteRecords for one partition to broker i, as
// it is, and returns its partition's answer.
func deleteRecordsAt(ctx context.Context, t *testing.T, cl *kgo.Client, c *testCluster, i int, topic string, p int32, offset int64) kmsg.DeleteRecordsResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 5000
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = p, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl.Broker(int(c.cfgs[i].NodeID)))
	if err != nil {
		t.Fatalf("delete records of %s/%d at %d on broker %d: %v", topic, p, offset, c.cfgs[i].NodeID, err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("delete records answered %+v", resp)
	}
	return resp.Topics[0].Partitions[0]
}

// TestDeleteRecords: kadm's DeleteRecords moves a replicated partition's
// log start on every replica, to an offset inside a batch too; a Fetch
// below it is OFFSET_OUT_OF_RANGE, ListOffsets earliest and a consumer
// from the start begin there; the log start never moves back; the errors
// are Kafka's; DescribeLogDirs reports each broker's replica and sizes
// that shrink once the records are deleted.
func TestDeleteRecords(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const topic, batches, perBatch = "purge", 20, 5
	segment := "1024"
	c.createTopic(ctx, c.client(), topic, 1, 3, map[string]*string{"segment.bytes": &segment})
	cl := c.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	for b := range batches {
		rs := make([]*kgo.Record, perBatch)
		for k := range rs {
			rs[k] = &kgo.Record{Value: fmt.Appendf(nil, "record %d with some bytes to fill segments", b*perBatch+k)}
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce batch %d: %v", b, err)
		}
	}
	const end = batches * perBatch
	tp := partition.TopicPartition{Topic: topic, Partition: 0}
	c.waitFor(10*time.Second, "every replica has every batch", func() bool {
		for i := range c.brokers {
			if v := c.replicaView(i, tp); v == nil || v.HighWatermark != end {
				return false
			}
		}
		return true
	})
	lead := c.preferredLeader(tp)
	const cut = 12
	if base, _, _, ok := c.replicaView(lead, tp).Log.BatchInfo(cut); !ok || base == cut {
		t.Fatalf("offset %d is not inside a batch (batch at %d, %v): the test needs one", cut, base, ok)
	}
	adm := kadm.NewClient(cl)

	before, err := adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatalf("describe log dirs: %v", err)
	}
	sizes := map[int32]int64{}
	for i, cfg := range c.cfgs {
		id := int32(cfg.NodeID)
		dir, ok := before[id]
		if !ok || len(dir) != 1 {
			t.Fatalf("broker %d: log dirs %+v", id, before[id])
		}
		for _, d := range dir {
			abs, _ := filepath.Abs(c.cfgs[i].DataDir)
			if d.Err != nil || d.Dir != abs || d.TotalBytes <= 0 || d.UsableBytes <= 0 || d.UsableBytes > d.TotalBytes {
				t.Fatalf("broker %d: log dir %+v, want %s with its filesystem's sizes", id, d, abs)
			}
			p, ok := d.Topics.Lookup(topic, 0)
			if !ok || p.Size <= 0 || p.OffsetLag != 0 || p.IsFuture {
				t.Fatalf("broker %d: partition %+v (%v)", id, p, ok)
			}
			sizes[id] = p.Size
		}
	}

	resps, err := adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: cut}}})
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
	if r, ok := resps.Lookup(topic, 0); !ok || r.Err != nil || r.LowWatermark != cut {
		t.Fatalf("delete records to %d answered %+v", cut, r)
	}
	c.waitFor(10*time.Second, "every replica starts at the cut", func() bool {
		for i := range c.brokers {
			if v := c.replicaView(i, tp); v == nil || v.LogStart != cut {
				return false
			}
		}
		return true
	})
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := starts.Lookup(topic, 0); !ok || o.Err != nil || o.Offset != cut {
		t.Fatalf("ListOffsets earliest: %+v, want %d", o, cut)
	}

	// A Fetch below the new log start is OFFSET_OUT_OF_RANGE.
	fetch := kmsg.NewPtrFetchRequest()
	fetch.MaxBytes = 1 << 20
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = topic, details[topic].ID
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset, fp.PartitionMaxBytes, fp.CurrentLeaderEpoch, fp.LogStartOffset = 5, 1<<20, -1, -1
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	fresp, err := fetch.RequestWith(ctx, cl.Broker(int(c.cfgs[lead].NodeID)))
	if err != nil {
		t.Fatal(err)
	}
	if got := fresp.Topics[0].Partitions[0]; got.ErrorCode != kerr.OffsetOutOfRange.Code || got.LogStartOffset != cut {
		t.Fatalf("fetch at 5: error %d, log start %d; want OFFSET_OUT_OF_RANGE and %d", got.ErrorCode, got.LogStartOffset, cut)
	}

	// A consumer from the start begins at the cut, inside its batch.
	cons := c.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	next := int64(cut)
	for next < end {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed up to %d: %v", next, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != next || string(r.Value) != fmt.Sprintf("record %d with some bytes to fill segments", next) {
				t.Fatalf("consumed offset %d %q, want %d", r.Offset, r.Value, next)
			}
			next++
		})
	}

	for _, tc := range []struct {
		name      string
		topic     string
		partition int32
		offset    int64
		code      int16
		low       int64
	}{
		{"below the log start: it stays", topic, 0, 5, 0, cut},
		{"above the high watermark", topic, 0, end + 1, kerr.OffsetOutOfRange.Code, -1},
		{"negative", topic, 0, -2, kerr.OffsetOutOfRange.Code, -1},
		{"unknown topic", "no-such-topic", 0, 1, kerr.UnknownTopicOrPartition.Code, -1},
		{"unknown partition", topic, 7, 1, kerr.UnknownTopicOrPartition.Code, -1},
		{"internal topic", "__consumer_offsets", 0, 1, kerr.InvalidTopicException.Code, -1},
	} {
		got := deleteRecordsAt(ctx, t, cl, c, lead, tc.topic, tc.partition, tc.offset)
		if got.ErrorCode != tc.code || got.LowWatermark != tc.low {
			t.Errorf("%s: error %d, low watermark %d; want %d, %d", tc.name, got.ErrorCode, got.LowWatermark, tc.code, tc.low)
		}
	}
	follower := (lead + 1) % len(c.brokers)
	if got := deleteRecordsAt(ctx, t, cl, c, follower, topic, 0, 50); got.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Errorf("delete records on a follower: error %d, want NOT_LEADER_OR_FOLLOWER", got.ErrorCode)
	}

	// -1 is the high watermark: everything goes, and the sizes shrink.
	resps, err = adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: -1}}})
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
	if r, ok := resps.Lookup(topic, 0); !ok || r.Err != nil || r.LowWatermark != end {
		t.Fatalf("delete records to the high watermark answered %+v", r)
	}
	c.waitFor(10*time.Second, "every replica's segments shrink", func() bool {
		after, err := adm.DescribeAllLogDirs(ctx, kadm.TopicsSet{topic: {0: {}}})
		if err != nil {
			return false
		}
		for id, was := range sizes {
			var p kadm.DescribedLogDirPartition
			ok := false
			for _, d := range after[id] {
				p, ok = d.Topics.Lookup(topic, 0)
			}
			if !ok || p.Size >= was/2 {
				return false
			}
		}
		return true
	})
	// A filter for another topic leaves this one out.
	for _, cfg := range c.cfgs {
		dirs, err := adm.DescribeBrokerLogDirs(ctx, int32(cfg.NodeID), kadm.TopicsSet{"other": {0: {}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dirs {
			if len(d.Topics) != 0 {
				t.Errorf("broker %d: log dirs for topic other list %+v", cfg.NodeID, d.Topics)
			}
		}
	}
}

// TestDeleteRecordsTimesOut: a leader that cannot commit the move (both
// its followers crashed, its election timeout long enough that it still
// leads) answers REQUEST_TIMED_OUT within the request's timeout, as Kafka's
// DelayedDeleteRecords does when the replicas do not reach the offset in
// time.
func TestDeleteRecordsTimesOut(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Raft.ElectionTicks = 100 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "stuck"
	c.createTopic(ctx, c.client(), topic, 1, 3, nil)
	cl := c.client(kgo.DefaultProduceTopic(topic))
	for i := range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%d", i)}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	tp := partition.TopicPartition{Topic: topic, Partition: 0}
	lead := c.partitionLeader(tp)
	if err := cl.Ping(ctx); err != nil { // the client knows every broker
		t.Fatal(err)
	}
	for i := range c.brokers {
		if i != lead {
			c.crash(i)
		}
	}
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 300
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 0, 5
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	began := time.Now()
	resp, err := req.RequestWith(ctx, cl.Broker(int(c.cfgs[lead].NodeID)))
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Topics[0].Partitions[0]
	if got.ErrorCode != kerr.RequestTimedOut.Code || got.LowWatermark != -1 {
		t.Fatalf("delete records without a quorum: error %d, low watermark %d; want REQUEST_TIMED_OUT, -1", got.ErrorCode, got.LowWatermark)
	}
	if v := c.replicaView(lead, tp); v == nil || !v.Leader || v.LogStart != 0 {
		t.Fatalf("the leader after the time-out: %+v; want it leading, its log start still 0", v)
	}
	t.Logf("REQUEST_TIMED_OUT after %v", took.Round(time.Millisecond))
}
