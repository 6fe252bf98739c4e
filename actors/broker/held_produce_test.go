package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/raftactor"
)

// TestProduceHeldThroughAFailedTransfer: a produce request that arrives
// while the leader hands its leadership over is held (awaitLeader); when
// the transfer fails (the transferee is down: raft gives up after an
// election timeout) the same leader serves it, and it succeeds. It used
// to be stamped (base offset, leader epoch) in place before raft dropped
// its proposal, and served again with those bytes: INVALID_RECORD, which
// clients do not retry, for a valid batch. Found by a soak of the fault
// tests (the kill test lost hundreds of records to it).
func TestProduceHeldThroughAFailedTransfer(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Kafka.ReplicaLagTimeMaxMs = 1000 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "held"
	c.createTopic(ctx, c.client(), topic, 1, 3, nil)
	tp := partition.TopicPartition{Topic: topic, Partition: 0}
	leader := -1
	c.waitFor(20*time.Second, "a leader", func() bool {
		for i, b := range c.brokers {
			if r := b.Replicas().Get(tp); r != nil && r.Machine.View().Leader {
				leader = i
				return true
			}
		}
		return false
	})
	lead := c.brokers[leader].Replicas().Get(tp)
	// One record first, so that the next batch is stamped with a base
	// offset other than 0.
	if d := <-c.produceAsync(leader, lead.PID, "first", 1, 500); d.Err != nil {
		t.Fatalf("first produce: %v", d.Err)
	}
	down := (leader + 1) % 3
	c.crash(down)
	// Hand over to the crashed broker: raft keeps the transfer pending, and
	// drops proposals, for an election timeout.
	c.brokers[leader].Actors().Root.Send(lead.PID, &raftactor.TransferLeader{To: uint64(down + 1)})
	d := <-c.produceAsync(leader, lead.PID, "second", 1, 500)
	t.Logf("answer: offset %d, err %v; leader now %v", d.BaseOffset, d.Err, lead.Machine.View().Leader)
	if errors.Is(d.Err, kerr.InvalidRecord) {
		t.Fatalf("a valid batch held during a failed leadership transfer was refused: %v", d.Err)
	}
	if d.Err != nil && !errors.Is(d.Err, kerr.NotLeaderForPartition) {
		t.Fatalf("unexpected error %v", d.Err)
	}
}
