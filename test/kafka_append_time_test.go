package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLogAppendTime: a topic with message.timestamp.type=LogAppendTime
// stores the broker's time, not the producer's, in every batch (its max
// timestamp and the log-append-time attribute, with the CRC recomputed,
// which kgo checks on every fetch), compressed or not, and answers it in
// the Produce response.
func TestLogAppendTime(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	const topic = "append-time"
	createTopic(t, nd.admin(t), topic, 2, map[string]*string{"message.timestamp.type": kadm.StringPtr("LogAppendTime")})
	produced := time.Date(2001, 9, 9, 1, 46, 40, 0, time.UTC) // far from now
	before := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.ZstdCompression()} {
		cl := nd.client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codec))
		batch := make([]*kgo.Record, 50)
		for i := range batch {
			batch[i] = &kgo.Record{Key: fmt.Appendf(nil, "k%d", len(recs)+i), Value: fmt.Appendf(nil, "value %d, compressible compressible compressible", i), Timestamp: produced}
		}
		if err := cl.ProduceSync(testCtx(t, 30*time.Second), batch...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		recs = append(recs, batch...)
	}
	// The Produce response carries the append time (kgo does not read it).
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 10_000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = idempotentBatch(-1, -1, -1, 3)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := brokerRequest[*kmsg.ProduceResponse](t, nd.client(t), nd, req)
	after := time.Now().Add(time.Second)
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || time.UnixMilli(p.LogAppendTime).Before(before) || time.UnixMilli(p.LogAppendTime).After(after) {
		t.Fatalf("raw Produce answered %s with log append time %d, want between %v and %v", codeName(p.ErrorCode), p.LogAppendTime, before, after)
	}
	recs = append(recs, &kgo.Record{}, &kgo.Record{}, &kgo.Record{})
	got := consumeAll(t, testCtx(t, 30*time.Second), nd, topic, len(recs))
	for _, r := range got {
		if r.Attrs.TimestampType() != 1 {
			t.Fatalf("record %s at %d read with timestamp type %d, want 1 (log append time)", r.Key, r.Offset, r.Attrs.TimestampType())
		}
		if r.Timestamp.Before(before) || r.Timestamp.After(after) {
			t.Fatalf("record %s at %d read with timestamp %v, want the broker's append time", r.Key, r.Offset, r.Timestamp)
		}
	}
}
