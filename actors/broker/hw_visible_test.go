package broker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/partition"
)

// TestAckedBatchBelowPublishedHighWatermark: once an acks=all produce is answered, the
// partition's published view (which ListOffsets latest and
// OffsetForLeaderEpoch read) has a high watermark past the acknowledged
// batch. Applied answers the waiters before it publishes the new view, so
// a request that arrives in between reads the high watermark from before.
func TestAckedBatchBelowPublishedHighWatermark(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.createTopic(ctx, c.client(), "hw", 1, 1, nil)
	tp := partition.TopicPartition{Topic: "hw", Partition: 0}
	c.waitFor(20*time.Second, "leader", func() bool {
		r := c.brokers[0].Replicas().Get(tp)
		return r != nil && r.Machine.View().Leader
	})
	r := c.brokers[0].Replicas().Get(tp)
	stale := 0
	const n = 500
	for i := 0; i < n && ctx.Err() == nil; i++ {
		d := <-c.produceAsync(0, r.PID, "v", -1, 500)
		if d.Err != nil {
			t.Fatalf("produce %d: %v", i, d.Err)
		}
		if hw := r.Machine.View().HighWatermark; hw <= d.BaseOffset {
			stale++
			if stale <= 3 {
				t.Logf("acknowledged at offset %d, the view's high watermark is %d", d.BaseOffset, hw)
			}
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d acknowledged produces: the published high watermark did not yet include the batch", stale, n)
	}
}

// TestListOffsetsLatestCoversAckedRecord: the same over the wire: right after an
// acks=all produce is acknowledged at offset o, ListOffsets latest from the
// same leader answers an end at or below o.
func TestListOffsetsLatestCoversAckedRecord(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c.createTopic(ctx, c.client(), "hwire", 1, 1, nil)
	cl := c.client(kgo.DefaultProduceTopic("hwire"))
	adm := kadm.NewClient(cl)
	stale := 0
	const n = 300
	for i := 0; i < n && ctx.Err() == nil; i++ {
		r, err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).First()
		if err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		ends, err := adm.ListEndOffsets(ctx, "hwire")
		if err != nil {
			t.Fatal(err)
		}
		o, _ := ends.Lookup("hwire", 0)
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if o.Offset <= r.Offset {
			stale++
			if stale <= 3 {
				t.Logf("acknowledged at offset %d; ListOffsets latest then: %d", r.Offset, o.Offset)
			}
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d: ListOffsets latest right after the acknowledgement did not include the record", stale, n)
	}
}
