package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/partition"
)

// TestQuietTopicRetentionMs: a topic that stopped taking writes still loses
// its records once they are older than retention.ms. Kafka deletes the
// active segment too (UnifiedLog.deletableSegments walks into the last
// segment while the high watermark covers it, and a fresh one is rolled),
// so ListOffsets earliest reaches the log end; here every replica of an
// RF=3 partition applies the same move and frees the old segment's files,
// one restarts, and the partition takes new records afterwards, which
// read back from there on every replica.
func TestQuietTopicRetentionMs(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const topic, old = "quiet", 10
	cl := c.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	retention := "1000"
	c.createTopic(ctx, cl, topic, 1, 3, map[string]*string{"retention.ms": &retention})
	hourAgo := time.Now().Add(-time.Hour)
	for i := range old {
		r := &kgo.Record{Value: fmt.Appendf(nil, "old %d", i), Timestamp: hourAgo}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	tp := partition.TopicPartition{Topic: topic, Partition: 0}
	// Retention runs every 100 ticks (2 s here) on the leader.
	c.waitFor(20*time.Second, "every replica's log starts at its end, 10", func() bool {
		for i := range c.brokers {
			v := c.replicaView(i, tp)
			if v == nil || v.LogStart != old || v.HighWatermark != old {
				return false
			}
		}
		return true
	})
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := starts.Lookup(topic, 0); s.Err != nil || s.Offset != old {
		t.Fatalf("ListOffsets earliest: %d, %v; want %d", s.Offset, s.Err, old)
	}
	c.waitFor(20*time.Second, "every replica deletes the old records' segment", func() bool {
		for i := range c.brokers {
			if n, _ := segmentFiles(t, c, i, topic); n != 0 {
				return false
			}
		}
		return true
	})

	// A replica restarts on a log that is one empty segment.
	c.stop(1)
	c.start(1)
	c.waitFor(20*time.Second, "the restarted replica's log starts at its end again", func() bool {
		v := c.replicaView(1, tp)
		return v != nil && v.LogStart == old && v.HighWatermark == old
	})

	// New records, stamped ahead of the clock so that retention leaves
	// them alone, are produced and read back after the move.
	const fresh = 5
	later := time.Now().Add(time.Hour)
	for i := range fresh {
		r := &kgo.Record{Value: fmt.Appendf(nil, "new %d", i), Timestamp: later}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	rd := c.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []*kgo.Record
	for len(got) < fresh {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of the %d new records: %v", len(got), fresh, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch: %v", err) })
		got = append(got, fs.Records()...)
	}
	for i, r := range got {
		if want := fmt.Sprintf("new %d", i); r.Offset != int64(old+i) || string(r.Value) != want {
			t.Fatalf("record %d: offset %d, %q; want offset %d, %q", i, r.Offset, r.Value, old+i, want)
		}
	}
	c.waitFor(10*time.Second, "every replica has the new records", func() bool {
		for i := range c.brokers {
			v := c.replicaView(i, tp)
			if v == nil || v.LogStart != old || v.HighWatermark != old+fresh {
				return false
			}
		}
		return true
	})
	lead := c.replicaView(0, tp)
	for i := 1; i < len(c.brokers); i++ {
		sameLog(t, fmt.Sprintf("broker %d", i+1), lead, c.replicaView(i, tp), old+fresh)
	}
}
