package broker

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/partition"
)

// TestFollowerCatchesUpFromSegments: with one replica of an RF=3 partition
// down, the leader keeps only a short tail of applied entries in memory; the
// replica, restarted, must catch up with appends the leader reads back from
// its segments, and end with the same log.
func TestFollowerCatchesUpFromSegments(t *testing.T) {
	c := newTestCluster(t, 3)
	// Checkpoint partitions every 16 KiB: the leader's memory is compacted
	// many times while the replica is away, so it must serve the replica
	// from its segments (a snapshot would leave the replica's log starting
	// past offset 0, and the comparison below would fail).
	c.tunePartitions = func(rs *partition.RaftSettings) { rs.SnapshotBytes, rs.CatchUpEntries = 16<<10, 4 }
	for i := range c.brokers {
		c.stop(i)
		c.start(i)
	}
	c.waitFor(15*time.Second, "election", func() bool { return c.leader() >= 0 })
	c.waitFor(15*time.Second, "registrations", c.allRegistered)

	seeds := []string{c.brokers[0].KafkaAddr(), c.brokers[1].KafkaAddr(), c.brokers[2].KafkaAddr()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, 1, 3, nil, "replicated"); err != nil {
		t.Fatal(err)
	}
	tp := partition.TopicPartition{Topic: "replicated", Partition: 0}
	var leader int
	c.waitFor(10*time.Second, "a ready partition leader", func() bool {
		for i, b := range c.brokers {
			if r := b.Replicas().Get(tp); r != nil && r.Machine.View().Leader {
				leader = i
				return true
			}
		}
		return false
	})
	down := (leader + 1) % 3
	c.stop(down)

	var alive []string
	for i, b := range c.brokers {
		if b != nil {
			alive = append(alive, c.brokers[i].KafkaAddr())
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(alive...), kgo.DefaultProduceTopic("replicated"), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 400 // far more batches than the 16-entry tail kept in memory
	for i := 0; i < n; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: bytes.Repeat([]byte{byte(i)}, 512)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}

	c.start(down)
	want := c.brokers[leader].Replicas().Get(tp).Machine.View().HighWatermark
	c.waitFor(20*time.Second, "the restarted replica catches up", func() bool {
		r := c.brokers[down].Replicas().Get(tp)
		return r != nil && r.Machine.View().HighWatermark >= want
	})
	lead, _ := c.brokers[leader].Replicas().Get(tp).Machine.View().Log.Read(0, 1<<30)
	got, _ := c.brokers[down].Replicas().Get(tp).Machine.View().Log.Read(0, 1<<30)
	if want != n || !bytes.Equal(lead, got) {
		t.Fatalf("leader has %d records; replica's log (%d bytes) differs from the leader's (%d bytes)", want, len(got), len(lead))
	}
}
