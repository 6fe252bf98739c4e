package broker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawMetadata asks the broker listening at addr, over a connection of its
// own, for the metadata of topics (Metadata v12): a kgo client would retry
// a topic-level error instead of showing it.
func rawMetadata(t *testing.T, addr string, topics ...string) *kmsg.MetadataResponse {
	t.Helper()
	return rawRequest(t, addr, metadataRequest(topics...)).(*kmsg.MetadataResponse)
}

// metadataRequest is a Metadata v12 request for topics.
func metadataRequest(topics ...string) *kmsg.MetadataRequest {
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 12
	for _, name := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
	}
	return req
}

// ledPartitions counts the partitions of md's first topic that have a
// leader.
func ledPartitions(md *kmsg.MetadataResponse) int {
	led := 0
	for _, p := range md.Topics[0].Partitions {
		if p.Leader >= 0 {
			led++
		}
	}
	return led
}

// waitCreationFinished waits until every running broker has applied the
// controller's record that the topic's creation finished.
func (c *testCluster) waitCreationFinished(name string) {
	c.t.Helper()
	c.waitFor(15*time.Second, "topic "+name+" created on every broker", func() bool {
		for _, b := range c.brokers {
			if b == nil {
				continue
			}
			if t := b.Controller().View().Topics[name]; t == nil || t.Creating {
				return false
			}
		}
		return true
	})
}

// TestRestartedBrokerDoesNotHideTopicWithLeaderlessPartition: a topic
// whose partitions all had leaders once is not answered as a whole
// LEADER_NOT_AVAILABLE by a broker restarted while one of its partitions
// has no leader (its only replica's broker is down): the other partitions
// are led and in use, and the Java client drops every partition of a topic
// answered with a topic-level error. Kafka reports a topic-level error
// only while the topic is being created.
func TestRestartedBrokerDoesNotHideTopicWithLeaderlessPartition(t *testing.T) {
	c := newTestCluster(t, 3, shortSession)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "solo", 3, 1, nil)
	c.waitFor(15*time.Second, "every partition led, on broker 1", func() bool {
		md := rawMetadata(t, c.brokers[0].KafkaAddr(), "solo")
		return md.Topics[0].ErrorCode == 0 && ledPartitions(md) == 3
	})

	c.stop(2) // broker 3: the partition it holds has no leader from now on
	c.waitFor(15*time.Second, "broker 2 finds broker 3's partition leaderless", func() bool {
		md := rawMetadata(t, c.brokers[1].KafkaAddr(), "solo")
		return md.Topics[0].ErrorCode == 0 && ledPartitions(md) == 2
	})
	c.waitCreationFinished("solo")
	c.stop(0) // a rolling restart of broker 1
	c.start(0)

	var last *kmsg.MetadataResponse
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		last = rawMetadata(t, c.brokers[0].KafkaAddr(), "solo")
		if last.Topics[0].ErrorCode == 0 && ledPartitions(last) == 2 {
			return
		}
	}
	for _, p := range last.Topics[0].Partitions {
		t.Logf("partition %d: error %d leader %d epoch %d replicas %v", p.Partition, p.ErrorCode, p.Leader, p.LeaderEpoch, p.Replicas)
	}
	t.Fatalf("15 s after its restart broker 1 still answers topic solo with topic-level error %d (want 0, with the two led partitions usable)", last.Topics[0].ErrorCode)
}

// TestRestartedBrokerShowsTopicsAtOnce: right after a restart, once its
// controller state has caught up (until then it tells nothing of any
// topic) and before the leaders' broadcasts arrive, a broker answers an
// existing topic with its partitions (some perhaps leaderless for a
// moment), not with a topic-level LEADER_NOT_AVAILABLE as for a topic
// being created.
func TestRestartedBrokerShowsTopicsAtOnce(t *testing.T) {
	c := newTestCluster(t, 3, shortSession)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "solo", 6, 1, nil)
	c.waitFor(15*time.Second, "every partition led, on broker 1", func() bool {
		md := rawMetadata(t, c.brokers[0].KafkaAddr(), "solo")
		return md.Topics[0].ErrorCode == 0 && ledPartitions(md) == 6
	})
	c.waitCreationFinished("solo")
	c.stop(0)
	c.start(0)
	c.waitFor(15*time.Second, "broker 1's controller state caught up", c.brokers[0].Controller().CaughtUp)
	md := rawMetadata(t, c.brokers[0].KafkaAddr(), "solo")
	if md.Topics[0].ErrorCode != 0 || len(md.Topics[0].Partitions) != 6 {
		t.Fatalf("first answer after the restart: topic error %d with %d partitions, want 0 with 6", md.Topics[0].ErrorCode, len(md.Topics[0].Partitions))
	}
}
