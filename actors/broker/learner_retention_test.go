package broker

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
)

// TestLearnerBehindRetention: a partition on brokers 1-3 whose leader's
// retention has moved its log start far past offset 0, and whose latest
// checkpoint is far above that log start, moves to brokers 1, 2, 4. Broker
// 4 starts empty, so it is behind retention the moment it is added: it must
// be sent a snapshot at the leader's log start that it accepts although the
// conf change adding it comes after that point, take every retained batch
// from the leader's segments, and be promoted; the move completes and broker
// 4 holds the leader's retained log byte for byte.
func TestLearnerBehindRetention(t *testing.T) {
	// A checkpoint every 16 KiB of batches and a 4-entry memory tail: the
	// leader's latest checkpoint is always far above its log start.
	c := newTunedCluster(t, 4, func(rs *partition.RaftSettings) { rs.SnapshotBytes, rs.CatchUpEntries = 16<<10, 4 })
	c.waitReady()

	const topic = "retained-move"
	created := ask[*controller.CreateTopicsDone](c, 0, c.brokers[0].ControllerActor(), func(r *actor.PID) any {
		return &controller.CreateTopics{ReplyTo: r, TimeoutTicks: 500, Topics: []controller.TopicSpec{{
			Name: topic, Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{{1, 2, 3}},
			Configs: map[string]string{"segment.bytes": "8192", "retention.bytes": "65536"},
		}}}
	})
	if err := created.Results[0].Err; err != nil {
		t.Fatalf("create topic: %v", err)
	}
	tp := partition.TopicPartition{Topic: topic, Partition: 0}
	view := func(i int) *partition.View { return c.replicaView(i, tp) }
	c.waitFor(20*time.Second, "broker 1 leads the partition", func() bool {
		v := view(0)
		return v != nil && v.Leader
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const n = retainedRecords
	produceRetained(ctx, t, c.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0)), 1)
	c.waitFor(20*time.Second, "retention moves the leader's log start", func() bool {
		v := view(0)
		return v != nil && v.LogStart > n/2
	})

	target := []uint64{1, 2, 4}
	c.reassign(topic, 0, target)
	c.checkVoters(tp, target)
	c.waitMoved(topic, 0, target)

	var lead, got *partition.View
	c.waitFor(20*time.Second, "broker 4's replica has the leader's log", func() bool {
		lead, got = view(0), view(3)
		return lead != nil && got != nil && got.HighWatermark == n && lead.HighWatermark == n && got.LogStart == lead.LogStart
	})
	sameLog(t, "broker 4", lead, got, n)
}
