package broker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/partition"
)

// TestProduceRefusesEachBadPartitionAlone: one Produce request to five
// partitions, the first batch good, the second with a record two hours
// ahead of a topic's message.timestamp.after.max.ms of one hour, the third
// with records that do not match its header, the fourth two good batches,
// the fifth a batch of the message format before 0.11 (magic 1). The good
// one is appended; the others are answered as Kafka answers them,
// INVALID_TIMESTAMP naming the record (ProduceResponse v8+ RecordErrors)
// and INVALID_RECORD (produce v3+ takes one batch of magic 2), append
// nothing, and are logged at debug with their partition, at info not at
// all.
func TestProduceRefusesEachBadPartitionAlone(t *testing.T) {
	c, logs := newLoggedCluster(t, 1, zerolog.DebugLevel)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	hour := "3600000"
	c.createTopic(ctx, cl, "checked", 5, 1, map[string]*string{"message.timestamp.after.max.ms": &hour})

	now := time.Now().UnixMilli()
	batch := func(ts []int64, offsetDeltas []int32) []byte {
		var recs []byte
		for i, x := range ts {
			rec := kmsg.Record{TimestampDelta64: x - ts[0], OffsetDelta: offsetDeltas[i], Value: []byte("v")}
			rec.Length = int32(len(rec.AppendTo(nil)) - 1)
			recs = rec.AppendTo(recs)
		}
		return sealBatch(kmsg.RecordBatch{Magic: 2, LastOffsetDelta: int32(len(ts) - 1), FirstTimestamp: ts[0], MaxTimestamp: slices.Max(ts),
			ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(ts)), Records: recs})
	}
	records := [][]byte{
		batch([]int64{now, now + 1}, []int32{0, 1}),
		batch([]int64{now, now + 2*time.Hour.Milliseconds(), now + 5}, []int32{0, 1, 2}),
		batch([]int64{now, now}, []int32{0, 0}),
		slices.Concat(batch([]int64{now}, []int32{0}), batch([]int64{now}, []int32{0})),
		func() []byte { b := batch([]int64{now}, []int32{0}); b[16] = 1; return b }(),
	}
	var resp *kmsg.ProduceResponse
	c.waitFor(30*time.Second, "the partitions answer", func() bool {
		req := produceRequest("checked", records...)
		var err error
		if resp, err = req.RequestWith(ctx, cl); err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.Topics[0].Partitions {
			if p.ErrorCode == kerr.NotLeaderForPartition.Code || p.ErrorCode == kerr.LeaderNotAvailable.Code {
				return false
			}
		}
		return true
	})

	ps := resp.Topics[0].Partitions
	if p := ps[0]; p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Errorf("good batch: %v at offset %d, want appended at 0", kerr.ErrorForCode(p.ErrorCode), p.BaseOffset)
	}
	if p := ps[1]; p.ErrorCode != kerr.InvalidTimestamp.Code || p.ErrorMessage == nil || len(p.ErrorRecords) != 1 ||
		p.ErrorRecords[0].RelativeOffset != 1 || p.ErrorRecords[0].ErrorMessage == nil {
		t.Errorf("record two hours ahead: %v, message %v, record errors %+v; want INVALID_TIMESTAMP naming record 1",
			kerr.ErrorForCode(p.ErrorCode), p.ErrorMessage, p.ErrorRecords)
	} else {
		t.Logf("refused: %s; record 1: %s", *p.ErrorMessage, *p.ErrorRecords[0].ErrorMessage)
	}
	for p, what := range map[int]string{2: "offset deltas 0, 0", 3: "two batches", 4: "magic 1"} {
		if p := ps[p]; p.ErrorCode != kerr.InvalidRecord.Code || len(p.ErrorRecords) != 0 {
			t.Errorf("%s: %v, record errors %+v; want INVALID_RECORD", what, kerr.ErrorForCode(p.ErrorCode), p.ErrorRecords)
		}
	}

	for p, want := range []int64{2, 0, 0, 0, 0} {
		tp := partition.TopicPartition{Topic: "checked", Partition: int32(p)}
		if got := c.brokers[0].Replicas().Get(tp).Machine.View().LogEnd; got != want {
			t.Errorf("partition %d ends at %d, want %d", p, got, want)
		}
	}

	refusals := logs.node(1).messages(t, "produce refused")
	if len(refusals) != 4 {
		t.Fatalf("%d produce refused lines, want 4 (partitions 1 to 4): %v", len(refusals), refusals)
	}
	for _, m := range refusals {
		if p, _ := m["partition"].(float64); m["level"] != "debug" || m["topic"] != "checked" || p < 1 || p > 4 {
			t.Errorf("refusal logged as %v, want at debug with its topic and partition", m)
		}
	}
}
