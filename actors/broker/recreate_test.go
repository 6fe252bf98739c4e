package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/partition"
)

// TestFetchByIDOfRecreatedTopicServesNoOldRecords: a topic deleted and
// created again with the same name gets a new id and new raft groups. A
// Fetch v13+ names the new id, which the broker resolves to the name
// through its controller state; until the replica manager's next
// reconcile (every other tick), the replica registered under that name is
// still the deleted topic's. It must not answer for the new id: Kafka
// checks the partition's topic id (Partition.checkTopicId) and never
// serves one topic's log under another's.
func TestFetchByIDOfRecreatedTopicServesNoOldRecords(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tp := partition.TopicPartition{Topic: "re", Partition: 0}
	for round := range 5 {
		// A client of its own each round: kgo abandons the records of a
		// topic it saw recreated (UNKNOWN_TOPIC_ID) until it is purged.
		cl := c.client(kgo.RequiredAcks(kgo.AllISRAcks()))
		adm := kadm.NewClient(cl)
		c.createTopic(ctx, cl, "re", 1, 3, nil)
		for i := range 5 {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "re", Partition: 0, Value: fmt.Appendf(nil, "old-%d-%d", round, i)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		lead := -1
		c.waitFor(10*time.Second, "a leader of re/0", func() bool {
			for i := range c.brokers {
				if v := c.replicaView(i, tp); v != nil && v.Leader && v.HighWatermark >= 5 {
					lead = i
					return true
				}
			}
			return false
		})
		oldID := c.brokers[lead].Controller().View().Topics["re"].ID

		if _, err := adm.DeleteTopics(ctx, "re"); err != nil {
			t.Fatal(err)
		}
		create := kmsg.NewPtrCreateTopicsRequest()
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "re", 1, 3
		create.Topics = append(create.Topics, rt)
		create.TimeoutMillis = 0
		if _, err := create.RequestWith(ctx, cl); err != nil {
			t.Fatal(err)
		}
		// As soon as the old leader's broker knows the new topic, a client
		// that learnt the new id fetches it there.
		var newID [16]byte
		c.waitFor(10*time.Second, "the new topic on the old leader's broker", func() bool {
			top := c.brokers[lead].Controller().View().Topics["re"]
			if top == nil || top.ID == oldID {
				return false
			}
			newID = top.ID
			return true
		})
		req := kmsg.NewPtrFetchRequest()
		req.Version = 13
		req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes, req.SessionEpoch = -1, 0, 0, 1<<20, -1
		ft := kmsg.NewFetchRequestTopic()
		ft.TopicID = newID
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes, fp.CurrentLeaderEpoch, fp.LogStartOffset = 0, 0, 1<<20, -1, -1
		ft.Partitions = append(ft.Partitions, fp)
		req.Topics = append(req.Topics, ft)
		resp := rawRequest(t, c.brokers[lead].KafkaAddr(), req).(*kmsg.FetchResponse)
		p := resp.Topics[0].Partitions[0]
		if len(p.RecordBatches) > 0 {
			got := decodeRecords(t, p.RecordBatches)
			var vals []string
			for _, v := range got {
				vals = append(vals, string(v))
			}
			if strings.Contains(strings.Join(vals, ","), "old-") {
				t.Fatalf("round %d: a Fetch of the new topic id %x answered (hw %d) with the deleted topic's records %v", round, newID, p.HighWatermark, vals)
			}
		}
		t.Logf("round %d: fetch of the new id answered error %d, hw %d, %d bytes", round, p.ErrorCode, p.HighWatermark, len(p.RecordBatches))
		if _, err := adm.DeleteTopics(ctx, "re"); err != nil {
			t.Fatal(err)
		}
		c.waitFor(10*time.Second, "re gone everywhere", func() bool {
			for i := range c.brokers {
				if c.brokers[i].Replicas().Get(tp) != nil {
					return false
				}
			}
			return true
		})
	}
}

// TestLeadersBoardForgetsDeletedTopics: every broker keeps the
// leaderships its peers broadcast, of partitions it does not host too.
// Those of a deleted topic must go on every broker, not only on the ones
// that hosted it, or the board grows with every topic ever deleted.
func TestLeadersBoardForgetsDeletedTopics(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	createOn(ctx, t, cl, "brief", 1)
	group := c.brokers[0].Controller().View().Topics["brief"].Partitions[0].Group
	c.waitFor(10*time.Second, "every broker knows brief/0's leader", func() bool {
		for _, b := range c.brokers {
			if li, ok := b.Leaders().Get(group); !ok || li.Leader != 1 {
				return false
			}
		}
		return true
	})
	if _, err := kadm.NewClient(cl).DeleteTopics(ctx, "brief"); err != nil {
		t.Fatal(err)
	}
	c.waitFor(10*time.Second, "brief/0 off every broker's leaders board", func() bool {
		for _, b := range c.brokers {
			if _, ok := b.Leaders().Get(group); ok {
				return false
			}
		}
		return true
	})
}
