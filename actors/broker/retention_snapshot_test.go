package broker

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/partition"
)

// TestReplicaBehindRetention: a replica of an RF=3 partition is down while
// the leader writes far more than retention.bytes, so retention moves the
// leader's log start past everything the replica has, and the leader
// checkpoints many times. The replica, restarted, is behind retention and
// must be sent a snapshot; it must describe the leader's log start (not its
// latest checkpoint), so that the replica then takes every retained batch
// from the leader's segments and ends with the same log start and the same
// batches, byte for byte.
func TestReplicaBehindRetention(t *testing.T) {
	// A checkpoint every 16 KiB of batches and a 4-entry memory tail: the
	// leader's latest checkpoint is always far above its log start.
	c := newTunedCluster(t, 3, func(rs *partition.RaftSettings) { rs.SnapshotBytes, rs.CatchUpEntries = 16<<10, 4 })
	c.waitReady()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	segment, retention := "8192", "65536"
	c.createTopic(ctx, c.client(), "retained", 1, 3, map[string]*string{"segment.bytes": &segment, "retention.bytes": &retention})
	tp := partition.TopicPartition{Topic: "retained", Partition: 0}
	view := func(i int) *partition.View { return c.replicaView(i, tp) }
	var leader int
	c.waitFor(10*time.Second, "a ready partition leader", func() bool {
		for i := range c.brokers {
			if v := view(i); v != nil && v.Leader {
				leader = i
				return true
			}
		}
		return false
	})
	down := (leader + 1) % 3
	c.stop(down)

	const n = retainedRecords
	produceRetained(ctx, t, c.client(kgo.DefaultProduceTopic("retained"), kgo.ProducerLinger(0)), 0)
	// Retention runs every 100 ticks on the leader; wait until it has
	// dropped most of what was written.
	c.waitFor(20*time.Second, "retention moves the leader's log start", func() bool {
		v := view(leader)
		return v != nil && v.LogStart > n/2
	})

	c.start(down)
	var lead, got *partition.View
	deadline := time.Now().Add(30 * time.Second)
	for {
		lead, got = view(leader), view(down)
		if got != nil && lead != nil && got.HighWatermark == lead.HighWatermark && got.HighWatermark == n && got.LogStart == lead.LogStart {
			break
		}
		if time.Now().After(deadline) {
			var gotStart, gotEnd int64 = -1, -1
			if got != nil {
				gotStart, gotEnd = got.LogStart, got.HighWatermark
			}
			t.Fatalf("restarted replica's log is [%d, %d), the leader's [%d, %d); want the same", gotStart, gotEnd, lead.LogStart, lead.HighWatermark)
		}
		time.Sleep(10 * time.Millisecond)
	}
	sameLog(t, "restarted replica", lead, got, n)
}

// retainedRecords is what produceRetained writes: about 400 KiB, six times
// a retention.bytes of 64 KiB, fifty segments of 8 KiB and twenty-five
// checkpoints of 16 KiB.
const retainedRecords = 600

// produceRetained produces retainedRecords random 600-byte values (random:
// the client compresses) through cl, one at a time, from a seeded stream.
func produceRetained(ctx context.Context, t *testing.T, cl *kgo.Client, seed byte) {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{seed})
	for i := 0; i < retainedRecords; i++ {
		value := make([]byte, 600)
		rng.Read(value)
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: value}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
}

// replicaView is the view of broker i's replica of tp, nil when the
// broker is stopped or hosts none.
func (c *testCluster) replicaView(i int, tp partition.TopicPartition) *partition.View {
	if c.brokers[i] == nil {
		return nil
	}
	if r := c.brokers[i].Replicas().Get(tp); r != nil {
		return r.Machine.View()
	}
	return nil
}

// sameLog fails the test unless got holds lead's batches from lead's log
// start up to end, byte for byte.
func sameLog(t *testing.T, who string, lead, got *partition.View, end int64) {
	t.Helper()
	want, have := readLog(t, lead.Log, lead.LogStart, end), readLog(t, got.Log, got.LogStart, end)
	if !bytes.Equal(want, have) {
		t.Fatalf("%s's batches from %d (%d bytes) differ from the leader's (%d bytes)", who, lead.LogStart, len(have), len(want))
	}
}

// readLog returns the stored batches of l from offset start up to end.
func readLog(t *testing.T, l *partition.Log, start, end int64) []byte {
	t.Helper()
	var out []byte
	for off := start; off < end; {
		b, err := l.Read(off, 1<<20)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		batches, err := partition.SplitBatches(b)
		if err != nil || len(batches) == 0 {
			t.Fatalf("read at %d: %d batches, %v", off, len(batches), err)
		}
		h, err := partition.ParseBatch(batches[len(batches)-1])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
		off = h.NextOffset()
	}
	return out
}
