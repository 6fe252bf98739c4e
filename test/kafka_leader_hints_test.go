package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestProduceLeaderHints: KIP-951. A Produce v10 (or a Fetch v16, by topic
// id) that reaches a replica which does not lead is answered
// NOT_LEADER_OR_FOLLOWER with the current leader, its epoch and its
// endpoint, so that clients move without waiting for a metadata refresh.
func TestProduceLeaderHints(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes, seeds := startCluster(t, 3)
	adm := clusterAdmin(t, seeds)
	const topic = "hinted"
	createReplicated(t, adm, topic, 3)
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, 20*time.Second, "every partition led by its preferred replica", func() bool {
		mt := topicMetadata(t, cl, topic)
		for _, p := range mt.Partitions {
			if p.Leader < 0 || len(p.Replicas) == 0 || p.Leader != p.Replicas[0] {
				return false
			}
		}
		return len(mt.Partitions) == 3
	})
	// Leaderships settle (elections, then hand-overs to the preferred
	// replicas) in the first seconds: ask until every answer is a hint.
	var last string
	waitFor(t, 20*time.Second, "every non-leader answers with the leader's hint", func() bool {
		mt := topicMetadata(t, cl, topic)
		for _, p := range mt.Partitions {
			for _, nd := range nodes {
				if int32(nd.id) == p.Leader {
					continue
				}
				req := kmsg.NewPtrProduceRequest()
				req.Version, req.Acks, req.TimeoutMillis = 10, -1, 5000
				req.Topics = []kmsg.ProduceRequestTopic{{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{
					{Partition: p.Partition, Records: idempotentBatch(-1, -1, -1, 1)}}}}
				resp := brokerRequest[*kmsg.ProduceResponse](t, cl, nd, req)
				rp := resp.Topics[0].Partitions[0]
				last = fmt.Sprintf("partition %d via broker %d: %s, current leader %+v, endpoints %+v; metadata says leader %d epoch %d",
					p.Partition, nd.id, codeName(rp.ErrorCode), rp.CurrentLeader, resp.Brokers, p.Leader, p.LeaderEpoch)
				if rp.ErrorCode != kerr.NotLeaderForPartition.Code || rp.CurrentLeader.LeaderID != p.Leader || rp.CurrentLeader.LeaderEpoch != p.LeaderEpoch ||
					len(resp.Brokers) != 1 || resp.Brokers[0].NodeID != p.Leader || resp.Brokers[0].Host == "" || resp.Brokers[0].Port <= 0 {
					return false
				}
				freq := kmsg.NewPtrFetchRequest()
				freq.Version, freq.ReplicaID, freq.MaxBytes = 16, -1, 1<<20
				freq.Topics = []kmsg.FetchRequestTopic{{TopicID: mt.TopicID, Partitions: []kmsg.FetchRequestTopicPartition{
					{Partition: p.Partition, CurrentLeaderEpoch: -1, LogStartOffset: -1, PartitionMaxBytes: 1 << 20}}}}
				fresp := brokerRequest[*kmsg.FetchResponse](t, cl, nd, freq)
				fp := fresp.Topics[0].Partitions[0]
				last = fmt.Sprintf("fetch of partition %d via broker %d: %s, current leader %+v, endpoints %+v; metadata says leader %d epoch %d",
					p.Partition, nd.id, codeName(fp.ErrorCode), fp.CurrentLeader, fresp.Brokers, p.Leader, p.LeaderEpoch)
				if fresp.Topics[0].TopicID != mt.TopicID || fp.ErrorCode != kerr.NotLeaderForPartition.Code || fp.CurrentLeader.LeaderID != p.Leader ||
					fp.CurrentLeader.LeaderEpoch != p.LeaderEpoch || len(fresp.Brokers) != 1 || fresp.Brokers[0].NodeID != p.Leader {
					return false
				}
			}
		}
		return true
	})
	t.Log(last)

	// A topic id no topic has.
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.ReplicaID, req.MaxBytes = 16, -1, 1<<20
	req.Topics = []kmsg.FetchRequestTopic{{TopicID: [16]byte{1, 2, 3}, Partitions: []kmsg.FetchRequestTopicPartition{{Partition: 0, CurrentLeaderEpoch: -1, LogStartOffset: -1, PartitionMaxBytes: 1 << 20}}}}
	if code := brokerRequest[*kmsg.FetchResponse](t, cl, nodes[0], req).Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicID.Code {
		t.Fatalf("fetch of an unknown topic id: %s, want UNKNOWN_TOPIC_ID", codeName(code))
	}
}
