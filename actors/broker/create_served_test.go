package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/flotilla/flotilla/actors/partition"
)

// TestCreatedTopicServedWhenAnswered: CreateTopics answers once the new
// partitions have leaders that serve (controller.CreateTopics), so that "a client
// that produces right after must not find them leaderless". On a single
// broker, a Fetch sent the moment CreateTopics answers must find every
// partition led: no NOT_LEADER_OR_FOLLOWER.
func TestCreatedTopicServedWhenAnswered(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := c.client()
	const partitions = 64
	for round := range 20 {
		topic := fmt.Sprintf("led-%d", round)
		// Not c.createTopic: a REQUEST_TIMED_OUT answer (partitions not
		// led within the timeout) must not pass for a created topic.
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
		offsets := map[int32]int64{}
		for p := range int32(partitions) {
			offsets[p] = 0
		}
		for p := range int32(partitions) {
			r := c.brokers[0].Replicas().Get(partition.TopicPartition{Topic: topic, Partition: p})
			if r == nil {
				t.Errorf("topic %s partition %d: no local replica when CreateTopics answered", topic, p)
			} else if v := r.Machine.View(); !v.Leader {
				t.Errorf("topic %s partition %d: local replica not leading when CreateTopics answered (leader id %d)", topic, p, v.LeaderID)
			}
		}
		// MaxWait 0: the answer is the state now. The topic's id from
		// the broker's controller state: no Metadata request first.
		id := c.brokers[0].Controller().View().Topics[topic].ID
		resp, _ := longPoll{topic: topic, id: id, offsets: offsets, epoch: -1, maxWait: 0, minBytes: 0}.run(ctx, t, cl)
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if rp.ErrorCode != 0 {
					t.Errorf("topic %s partition %d: error %d right after CreateTopics answered", topic, rp.Partition, rp.ErrorCode)
				}
			}
		}
	}
}
