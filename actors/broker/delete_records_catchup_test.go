package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/partition"
)

// produceBatches produces n batches of perBatch records to topic, one
// batch per request, each record labelled with prefix and its number.
func produceBatches(ctx context.Context, t *testing.T, cl *kgo.Client, prefix string, n, perBatch int) {
	t.Helper()
	for b := range n {
		rs := make([]*kgo.Record, perBatch)
		for k := range rs {
			rs[k] = &kgo.Record{Value: fmt.Appendf(nil, "%s %d %0100d", prefix, b*perBatch+k, 0)}
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce batch %d: %v", b, err)
		}
	}
}

// deleteRecordsCuts are the log starts the catch-up tests set with
// DeleteRecords: inside a batch (batches of 5 records) and at a batch's
// base.
var deleteRecordsCuts = []struct {
	name   string
	cut    int64
	inside bool
}{
	{"inside a batch", 502, true},
	{"at a batch's base", 500, false},
}

// TestMoveAfterDeleteRecords moves an RF 1 partition whose log start
// DeleteRecords set to another broker: the new replica catches up from
// the leader's boundary snapshot, which must start its log at the batch
// holding the log start, not at the latest checkpoint (every record in
// between would be gone once the old replica is deleted).
func TestMoveAfterDeleteRecords(t *testing.T) {
	for _, tc := range deleteRecordsCuts {
		t.Run(tc.name, func(t *testing.T) {
			c := newTunedCluster(t, 3, func(rs *partition.RaftSettings) { rs.SnapshotBytes, rs.CatchUpEntries = 16<<10, 4 })
			c.waitReady()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			const topic = "movecut"
			c.createTopic(ctx, c.client(), topic, 1, 1, nil)
			tp := partition.TopicPartition{Topic: topic, Partition: 0}
			lead := c.partitionLeader(tp)
			cl := c.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
			produceBatches(ctx, t, cl, "record", 200, 5)
			if base, _, _, ok := c.replicaView(lead, tp).Log.BatchInfo(tc.cut); !ok || (base != tc.cut) != tc.inside {
				t.Fatalf("offset %d: batch base %d, want inside a batch %v", tc.cut, base, tc.inside)
			}
			if rp := deleteRecordsAt(ctx, t, cl, c, lead, topic, 0, tc.cut); rp.ErrorCode != 0 || rp.LowWatermark != tc.cut {
				t.Fatalf("delete records: %+v", rp)
			}
			to := (lead + 1) % 3
			o := c.moveTo(ctx, tp, to)
			if o.Offset != tc.cut {
				t.Fatalf("after moving the partition to broker %d: earliest offset %d, want %d", c.cfgs[to].NodeID, o.Offset, tc.cut)
			}
		})
	}
}

// moveTo moves partition tp, with one replica, to broker index to, and
// returns its earliest offset as the new leader answers it.
func (c *testCluster) moveTo(ctx context.Context, tp partition.TopicPartition, to int) kadm.ListedOffset {
	c.t.Helper()
	c.reassign(tp.Topic, tp.Partition, []uint64{c.cfgs[to].NodeID})
	c.waitMoved(tp.Topic, tp.Partition, []uint64{c.cfgs[to].NodeID})
	adm := kadm.NewClient(c.client())
	var o kadm.ListedOffset
	c.waitFor(20*time.Second, "earliest offset from the new leader", func() bool {
		starts, err := adm.ListStartOffsets(ctx, tp.Topic)
		if err != nil {
			return false
		}
		o, _ = starts.Lookup(tp.Topic, tp.Partition)
		return o.Err == nil && c.partitionLeader(tp) == to
	})
	return o
}

// TestReplicaBehindDeleteRecordsCatchesUp: a replica is down while its
// leader takes records, DeleteRecords sets the log start, and the leader
// checkpoints many times after. The restarted replica, sent the boundary
// snapshot, must end with the leader's log start and every batch from it.
func TestReplicaBehindDeleteRecordsCatchesUp(t *testing.T) {
	for _, tc := range deleteRecordsCuts {
		t.Run(tc.name, func(t *testing.T) {
			c := newTunedCluster(t, 3, func(rs *partition.RaftSettings) { rs.SnapshotBytes, rs.CatchUpEntries = 16<<10, 4 })
			c.waitReady()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			const topic = "cut"
			segment := "8192"
			c.createTopic(ctx, c.client(), topic, 1, 3, map[string]*string{"segment.bytes": &segment})
			tp := partition.TopicPartition{Topic: topic, Partition: 0}
			down := (c.partitionLeader(tp) + 1) % 3
			c.stop(down)
			cl := c.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
			produceBatches(ctx, t, cl, "record", 200, 5)
			lead := c.partitionLeader(tp)
			if base, _, _, ok := c.replicaView(lead, tp).Log.BatchInfo(tc.cut); !ok || (base != tc.cut) != tc.inside {
				t.Fatalf("offset %d: batch base %d, want inside a batch %v", tc.cut, base, tc.inside)
			}
			if rp := deleteRecordsAt(ctx, t, cl, c, lead, topic, 0, tc.cut); rp.ErrorCode != 0 || rp.LowWatermark != tc.cut {
				t.Fatalf("delete records: %+v", rp)
			}
			// More writes after the cut: checkpoints far above it.
			produceBatches(ctx, t, cl, "more", 200, 5)
			const end = 2 * 200 * 5
			c.start(down)
			c.waitFor(30*time.Second, "the restarted replica catches up", func() bool {
				v := c.replicaView(down, tp)
				return v != nil && v.HighWatermark == end
			})
			if got := c.replicaView(down, tp); got.LogStart != tc.cut {
				lv := c.replicaView(c.partitionLeader(tp), tp)
				t.Fatalf("leader's log [%d, %d), restarted replica's [%d, %d): want it to start at %d", lv.LogStart, lv.HighWatermark, got.LogStart, got.HighWatermark, tc.cut)
			}
		})
	}
}

// TestMoveAfterDeleteAllWithABatchInFlight moves an RF 1 partition whose
// leader took a DeleteRecords(-1) (to the high watermark) while a produced
// batch was in flight there, with a raft entry without records (an earlier
// DeleteRecords) between that batch and the last one applied. The
// boundary the leader saw when it proposed the move was that last batch;
// when the move applied, the batch in flight was the log's first and the
// boundary the entry before it. Had the partition lost its boundary, the
// new replica would be sent the latest snapshot rather than the boundary
// snapshot, and every record between the log start and that snapshot
// would be gone with the old replica.
func TestMoveAfterDeleteAllWithABatchInFlight(t *testing.T) {
	c := newTunedCluster(t, 3, func(rs *partition.RaftSettings) { rs.SnapshotBytes, rs.CatchUpEntries = 16<<10, 4 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const topic = "inflight"
	c.createTopic(ctx, c.client(), topic, 1, 1, nil)
	tp := partition.TopicPartition{Topic: topic, Partition: 0}
	lead := c.partitionLeader(tp)
	cl := c.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	produceBatches(ctx, t, cl, "record", 20, 5)
	if rp := deleteRecordsAt(ctx, t, cl, c, lead, topic, 0, 50); rp.ErrorCode != 0 || rp.LowWatermark != 50 {
		t.Fatalf("delete records: %+v", rp)
	}

	// A produce and, right behind it in the partition's mailbox,
	// DeleteRecords(-1): the batch is still in flight when the move to the
	// high watermark is proposed.
	b := c.brokers[lead]
	pid := b.Replicas().Get(tp).PID
	hw := b.Replicas().Get(tp).Machine.View().HighWatermark
	deleted := make(chan *partition.DeleteRecordsDone, 1)
	me, err := b.Actors().Spawn("test", "test/delete-all", func() actor.Actor {
		return actor.ReceiveFunc(func(ctx actor.Context) {
			if m, ok := ctx.Message().(*partition.DeleteRecordsDone); ok {
				deleted <- m
			}
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Actors().Root.Stop(me) })
	produced := c.produceBatchAsync(lead, pid, testBatch(t, "in flight"), -1, 100)
	b.Actors().Root.Send(pid, &partition.DeleteRecords{Ref: 2, Offset: -1, TimeoutTicks: 100, ReplyTo: me})
	for range 2 {
		select {
		case p := <-produced:
			if p.Err != nil || p.BaseOffset != hw {
				t.Fatalf("produce: %+v, want offset %d", p, hw)
			}
		case d := <-deleted:
			if d.Err != nil || d.LowWatermark != hw {
				t.Fatalf("delete records: %+v, want the log start at %d, where the batch in flight went", d, hw)
			}
		case <-ctx.Done():
			t.Fatal("no answer to the produce or the DeleteRecords")
		}
	}

	// Records after the cut, with checkpoints far above it.
	produceBatches(ctx, t, cl, "more", 200, 5)
	to := (lead + 1) % 3
	o := c.moveTo(ctx, tp, to)
	if o.Offset != hw {
		v := c.replicaView(to, tp)
		t.Fatalf("after moving the partition to broker %d: earliest offset %d, want %d (its log is [%d, %d)): %d acknowledged records gone",
			c.cfgs[to].NodeID, o.Offset, hw, v.LogStart, v.HighWatermark, o.Offset-hw)
	}
}
