package broker

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/raftactor"
)

// TestNewPartitionsServedByTheirPreferredReplicaAtOnce: a topic created
// through a broker that hosts no replica of some of its partitions and
// only a follower of others (four brokers, replication factor 2) is
// served the moment CreateTopics answers: a Produce with acks=all sent at
// once to each partition's leader as that broker's Metadata names it
// meets no error on any partition, nor does a ListOffsets before it (what
// a consumer sends first; a leader that does not serve yet refuses it at
// once rather than hold it as it holds a Produce). And each partition is led by its
// preferred replica (the first of its assignment) in term 2, the term of
// the first election after the group's founding (term 1): it won that
// election itself, and no leadership transfer followed, which would have
// left a later term and refused produce requests while it ran.
func TestNewPartitionsServedByTheirPreferredReplicaAtOnce(t *testing.T) {
	// The default tick, not the tests' 20 ms: under -race on a loaded
	// machine a leader would otherwise often miss its follower for an
	// election timeout (200 ms) and step down (CheckQuorum), a later
	// term for reasons that are not this test's.
	c := newTestCluster(t, 4, func(cfg *configs.Config) { cfg.Raft.TickMs = 50 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := c.client()
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl); err != nil {
		t.Fatal(err) // the client learns every broker
	}
	const (
		rounds     = 10
		partitions = 64
		front      = 4 // the broker every request of a round goes to
	)
	hosted := map[string]int{} // how the partitions stand to the front broker
	for round := range rounds {
		topic := fmt.Sprintf("fresh-%d", round)
		create := kmsg.NewPtrCreateTopicsRequest()
		create.TimeoutMillis = 30_000
		ct := kmsg.NewCreateTopicsRequestTopic()
		ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, partitions, 2
		create.Topics = append(create.Topics, ct)
		cresp, err := create.RequestWith(ctx, cl.Broker(front))
		if err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
		if err := kerr.ErrorForCode(cresp.Topics[0].ErrorCode); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}

		meta := kmsg.NewPtrMetadataRequest()
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(topic)
		meta.Topics = append(meta.Topics, mt)
		mresp, err := meta.RequestWith(ctx, cl.Broker(front))
		if err != nil {
			t.Fatal(err)
		}
		if len(mresp.Topics) != 1 {
			t.Fatalf("metadata of %s: %d topics", topic, len(mresp.Topics))
		}
		if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
			t.Fatalf("round %d: metadata of %s right after CreateTopics answered: %v", round, topic, err)
		}
		byLeader := map[int32][]int32{}
		for _, mp := range mresp.Topics[0].Partitions {
			if err := kerr.ErrorForCode(mp.ErrorCode); err != nil || mp.Leader < 0 {
				t.Errorf("round %d: metadata of %s/%d: leader %d, %v", round, topic, mp.Partition, mp.Leader, err)
				continue
			}
			switch i := slices.Index(mp.Replicas, front); {
			case i < 0:
				hosted["none"]++
			case mp.Leader == front:
				hosted["leader"]++
			default:
				hosted["follower"]++
			}
			byLeader[mp.Leader] = append(byLeader[mp.Leader], mp.Partition)
			view := c.brokers[front-1].Controller().View().Topics[topic]
			if want := view.Partitions[mp.Partition].Replicas[0]; uint64(mp.Leader) != want || mp.LeaderEpoch != 2 {
				t.Errorf("round %d: %s/%d led by broker %d in term %d; want its preferred replica %d in term 2",
					round, topic, mp.Partition, mp.Leader, mp.LeaderEpoch, want)
			}
		}

		// What a consumer asks first, which a leader that has not
		// applied an entry of its term refuses at once.
		for leader, ps := range byLeader {
			list := kmsg.NewPtrListOffsetsRequest()
			list.ReplicaID = -1
			lt := kmsg.NewListOffsetsRequestTopic()
			lt.Topic = topic
			for _, p := range ps {
				lp := kmsg.NewListOffsetsRequestTopicPartition()
				lp.Partition, lp.Timestamp, lp.CurrentLeaderEpoch = p, -1, -1
				lt.Partitions = append(lt.Partitions, lp)
			}
			list.Topics = append(list.Topics, lt)
			lresp, err := list.RequestWith(ctx, cl.Broker(int(leader)))
			if err != nil {
				t.Fatalf("list offsets on broker %d: %v", leader, err)
			}
			for _, rt := range lresp.Topics {
				for _, rp := range rt.Partitions {
					if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
						t.Errorf("round %d: list offsets of %s/%d on broker %d, its leader as broker %d named it: %v",
							round, topic, rp.Partition, leader, front, err)
					}
				}
			}
		}
		for leader, ps := range byLeader {
			produce := kmsg.NewPtrProduceRequest()
			produce.Acks, produce.TimeoutMillis = -1, 10_000
			pt := kmsg.NewProduceRequestTopic()
			pt.Topic = topic
			for _, p := range ps {
				pp := kmsg.NewProduceRequestTopicPartition()
				pp.Partition, pp.Records = p, testBatch(t, "first")
				pt.Partitions = append(pt.Partitions, pp)
			}
			produce.Topics = append(produce.Topics, pt)
			presp, err := produce.RequestWith(ctx, cl.Broker(int(leader)))
			if err != nil {
				t.Fatalf("produce to broker %d: %v", leader, err)
			}
			for _, rt := range presp.Topics {
				for _, rp := range rt.Partitions {
					if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
						t.Errorf("round %d: produce to %s/%d on broker %d, its leader as broker %d named it: %v",
							round, topic, rp.Partition, leader, front, err)
					}
				}
			}
		}
	}
	if hosted["none"] == 0 || hosted["follower"] == 0 {
		t.Fatalf("the front broker's replicas of the partitions: %v; the test needs partitions it does not host and partitions it only follows", hosted)
	}
	t.Logf("partitions by their replica on the front broker: %v", hosted)
}

// lateFirstAcks is the raft transport of broker node, which acknowledges
// the first entries of partition groups (their founding conf changes and
// their first leader's empty entry) late: where node's replica is needed
// to commit that entry, the leader serves only delay after node's replica
// knows it leads.
type lateFirstAcks struct {
	node  uint64
	delay time.Duration
	next  raftactor.Transport
}

func (t *lateFirstAcks) Send(ctx actor.SenderContext, group uint64, msgs []*pb.Message) {
	late := func(m *pb.Message) bool {
		return group != controller.ControllerGroup && m.GetFrom() == t.node && m.GetType() == pb.MessageType_MsgAppResp && m.GetIndex() <= 3
	}
	if !slices.ContainsFunc(msgs, late) {
		t.next.Send(ctx, group, msgs)
		return
	}
	now := slices.DeleteFunc(slices.Clone(msgs), late)
	later := slices.DeleteFunc(slices.Clone(msgs), func(m *pb.Message) bool { return !late(m) })
	if len(now) > 0 {
		t.next.Send(ctx, group, now)
	}
	root := ctx.ActorSystem().Root
	time.AfterFunc(t.delay, func() { t.next.Send(root, group, later) })
}

// TestCreateTopicsAnswersOnceLeadersServe: CreateTopics sent to a broker
// that hosts a follower of every new partition answers once each leader
// serves, not once the follower knows who leads: a follower learns that
// from the leader's first append, before the leader has applied an entry
// of its term, and until then the leader refuses ListOffsets and Fetch
// with NOT_LEADER_OR_FOLLOWER. Here the follower's acknowledgement of that
// entry, which the leader needs (two replicas), comes late, so that a
// ListOffsets sent as soon as CreateTopics answered would meet a leader
// not serving yet if the answer came too early.
func TestCreateTopicsAnswersOnceLeadersServe(t *testing.T) {
	const front = 3 // follows every partition
	c := &testCluster{wrapTransport: func(self uint64) func(raftactor.Transport) raftactor.Transport {
		return func(next raftactor.Transport) raftactor.Transport {
			if self != front {
				return next
			}
			return &lateFirstAcks{node: self, delay: 100 * time.Millisecond, next: next}
		}
	}}
	startCluster(t, 3, c)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.client()
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl); err != nil {
		t.Fatal(err)
	}
	const partitions = 16
	for round := range 5 {
		topic := fmt.Sprintf("followed-%d", round)
		create := kmsg.NewPtrCreateTopicsRequest()
		create.TimeoutMillis = 30_000
		ct := kmsg.NewCreateTopicsRequestTopic()
		ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, -1, -1
		for p := range int32(partitions) {
			ra := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
			ra.Partition, ra.Replicas = p, []int32{p%2 + 1, front}
			ct.ReplicaAssignment = append(ct.ReplicaAssignment, ra)
		}
		create.Topics = append(create.Topics, ct)
		cresp, err := create.RequestWith(ctx, cl.Broker(front))
		if err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
		if err := kerr.ErrorForCode(cresp.Topics[0].ErrorCode); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
		// The leaders as the front broker knows them, at once: from the
		// raft status of its replicas, which Metadata reads too.
		byLeader := map[int32][]int32{}
		for p := range int32(partitions) {
			view := c.brokers[front-1].Controller().View().Topics[topic]
			st := c.brokers[front-1].Board().Get(view.Partitions[p].Group)
			if st == nil || st.Leader == 0 {
				t.Fatalf("round %d: %s/%d has no leader on the front broker when CreateTopics answered", round, topic, p)
			}
			byLeader[int32(st.Leader)] = append(byLeader[int32(st.Leader)], p)
		}
		for leader, ps := range byLeader {
			list := kmsg.NewPtrListOffsetsRequest()
			list.ReplicaID = -1
			lt := kmsg.NewListOffsetsRequestTopic()
			lt.Topic = topic
			for _, p := range ps {
				lp := kmsg.NewListOffsetsRequestTopicPartition()
				lp.Partition, lp.Timestamp, lp.CurrentLeaderEpoch = p, -1, -1
				lt.Partitions = append(lt.Partitions, lp)
			}
			list.Topics = append(list.Topics, lt)
			lresp, err := list.RequestWith(ctx, cl.Broker(int(leader)))
			if err != nil {
				t.Fatalf("list offsets on broker %d: %v", leader, err)
			}
			for _, rt := range lresp.Topics {
				for _, rp := range rt.Partitions {
					if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
						t.Errorf("round %d: list offsets of %s/%d on broker %d right after CreateTopics answered: %v", round, topic, rp.Partition, leader, err)
					}
				}
			}
		}
	}
}
