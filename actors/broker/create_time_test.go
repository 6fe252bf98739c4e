package broker

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/partition"
)

// createTimeBatch is a batch of records timestamped ts whose header says
// LogAppendTime with a maxTimestamp of maxTs, its records compressed with
// gzip if gzipped.
func createTimeBatch(t *testing.T, ts []int64, maxTs int64, gzipped bool) []byte {
	t.Helper()
	var recs []byte
	for i, x := range ts {
		rec := kmsg.Record{TimestampDelta64: x - ts[0], OffsetDelta: int32(i), Value: []byte("v")}
		rec.Length = int32(len(rec.AppendTo(nil)) - 1)
		recs = rec.AppendTo(recs)
	}
	attrs := int16(0x08) // LogAppendTime
	if gzipped {
		var out bytes.Buffer
		w := gzip.NewWriter(&out)
		if _, err := w.Write(recs); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		recs, attrs = out.Bytes(), attrs|1
	}
	b := kmsg.RecordBatch{Magic: 2, Attributes: attrs, LastOffsetDelta: int32(len(ts) - 1), FirstTimestamp: ts[0], MaxTimestamp: maxTs,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(ts)), Records: recs}
	return sealBatch(b)
}

// TestCreateTimeTopicRewritesTimestampType: on a CreateTime topic Kafka's
// LogValidator rewrites every batch's timestamp type to CreateTime and its
// maxTimestamp to the largest record timestamp
// (batch.setMaxTimestamp(CREATE_TIME, maxBatchTimestamp)). A producer's
// batch flagged LogAppendTime with a made-up maxTimestamp is stored as
// CreateTime: consumers see each record's own timestamp, and an
// uncompressed batch gets its records' maximum. A compressed batch keeps
// its maxTimestamp, since the produce path does not decompress. Every
// replica stores the leader's rewritten batches (the CRC is recomputed
// before the batch is proposed).
func TestCreateTimeTopicRewritesTimestampType(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "ct", 1, 3, nil)

	now := time.Now().UnixMilli()
	future := now + 10*time.Minute.Milliseconds() // within message.timestamp.after.max.ms
	produced := [][]int64{{now, now - 5}, {now + 1, now + 3, now + 2}}
	for i, gzipped := range []bool{false, true} {
		raw := createTimeBatch(t, produced[i], future, gzipped)
		c.waitFor(30*time.Second, "produce", func() bool {
			resp, err := produceRequest("ct", raw).RequestWith(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			code := resp.Topics[0].Partitions[0].ErrorCode
			if code != 0 && code != kerr.NotLeaderForPartition.Code {
				t.Fatalf("produce: %v", kerr.ErrorForCode(code))
			}
			return code == 0
		})
	}

	cons := c.client(kgo.ConsumeTopics("ct"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []*kgo.Record
	for len(got) < 5 && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got = append(got, fs.Records()...)
	}
	want := append(append([]int64{}, produced[0]...), produced[1]...)
	if len(got) != len(want) {
		t.Fatalf("consumed %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.Timestamp.UnixMilli() != want[i] || r.Attrs.TimestampType() != 0 {
			t.Errorf("record %d served with timestamp %v (type %d), want its own %v (CreateTime)",
				i, r.Timestamp.UTC(), r.Attrs.TimestampType(), time.UnixMilli(want[i]).UTC())
		}
	}

	// The stored headers, on every replica.
	tp := partition.TopicPartition{Topic: "ct", Partition: 0}
	c.waitFor(20*time.Second, "every replica has both batches", func() bool {
		for _, b := range c.brokers {
			if r := b.Replicas().Get(tp); r == nil || r.Machine.View().HighWatermark < 5 {
				return false
			}
		}
		return true
	})
	var logs [][]byte
	for i, b := range c.brokers {
		l, err := b.Replicas().Get(tp).Machine.View().Log.Read(0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		batches, err := partition.SplitBatches(l)
		if err != nil || len(batches) != 2 {
			t.Fatalf("broker %d: %d batches (%v)", i+1, len(batches), err)
		}
		for j, wantMax := range []int64{now, future} {
			h, err := partition.ParseBatch(batches[j])
			if err != nil {
				t.Fatalf("broker %d, batch %d: %v", i+1, j, err)
			}
			if h.IsLogAppendTime() || h.MaxTimestamp != wantMax {
				t.Errorf("broker %d stores batch %d with LogAppendTime %v, maxTimestamp %d; want CreateTime, %d",
					i+1, j, h.IsLogAppendTime(), h.MaxTimestamp, wantMax)
			}
		}
		logs = append(logs, l)
	}
	for i := 1; i < len(logs); i++ {
		if !bytes.Equal(logs[i], logs[0]) {
			t.Errorf("broker %d's log differs from broker 1's", i+1)
		}
	}
}
