package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/raftactor"
)

// leaderLog watches the brokers' logs, per topic, for the leaderships
// handed to a preferred replica (PreferLeader), and for leaders that
// stepped down for want of a quorum (raft's CheckQuorum): on a machine so
// loaded that a leader did not hear from its follower for an election
// timeout (the whole suite under -race), through no fault of how the
// partition started.
type leaderLog struct {
	mu        sync.Mutex
	transfers map[string]int
	stalled   map[string]bool
}

func (l *leaderLog) Write(p []byte) (int, error) {
	transfer := bytes.Contains(p, []byte("transferring leadership to the preferred replica"))
	stalled := bytes.Contains(p, []byte("since quorum is not active"))
	if !transfer && !stalled {
		return len(p), nil
	}
	var line struct {
		Topic string `json:"topic"`
	}
	if json.Unmarshal(p, &line) == nil && line.Topic != "" {
		l.mu.Lock()
		if transfer {
			l.transfers[line.Topic]++
		}
		l.stalled[line.Topic] = l.stalled[line.Topic] || stalled
		l.mu.Unlock()
	}
	return len(p), nil
}

func (l *leaderLog) of(topic string) (transfers int, stalled bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.transfers[topic], l.stalled[topic]
}

// TestNewPartitionsServedByTheirPreferredReplicaAtOnce: a topic created
// through a broker that hosts no replica of some of its partitions and
// only a follower of others (four brokers, replication factor 2) is
// served the moment CreateTopics answers: a Produce with acks=all sent at
// once to each partition's leader as that broker's Metadata names it
// meets no error on any partition, nor does a ListOffsets before it (what
// a consumer sends first; a leader that does not serve yet refuses it at
// once rather than hold it as it holds a Produce). Each partition is led
// by its preferred replica (the first of its assignment), and no
// leadership was handed to it: it won the first election itself, in term
// 2 (the founding's is 1) unless that election took longer than an
// election timeout on a stalled machine. A topic one of whose leaders
// stepped down for want of a quorum (the machine stalled) does not count,
// and another is created in its place.
func TestNewPartitionsServedByTheirPreferredReplicaAtOnce(t *testing.T) {
	logs := &leaderLog{transfers: map[string]int{}, stalled: map[string]bool{}}
	c := &testCluster{logLevel: zerolog.InfoLevel, logs: func(uint64) io.Writer {
		out := &zerolog.FilteredLevelWriter{Writer: zerolog.LevelWriterAdapter{Writer: zerolog.NewTestWriter(t)}, Level: testLogLevel}
		return zerolog.MultiLevelWriter(out, logs)
	}}
	// The default tick, not the tests' 20 ms: under -race a leader would
	// often miss its follower for that short an election timeout.
	startCluster(t, 4, c, func(cfg *configs.Config) { cfg.Raft.TickMs = 50 })
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
	terms := map[int32]int{}   // partitions by the term of their leader
	counted := 0
	for attempt := 0; counted < rounds; attempt++ {
		if attempt == 2*rounds {
			t.Fatalf("%d of %d topics had a leader step down for want of a quorum: the machine is too loaded to tell", attempt-counted, attempt)
		}
		topic := fmt.Sprintf("fresh-%d", attempt)
		errs := createAndUse(ctx, t, c, cl, topic, partitions, front, hosted, terms)
		transfers, stalled := logs.of(topic)
		if stalled {
			t.Logf("%s: a leader stepped down for want of a quorum (the machine stalled); not counted: %d errors", topic, len(errs))
			continue
		}
		counted++
		for _, err := range errs {
			t.Error(err)
		}
		if transfers > 0 {
			t.Errorf("%s: %d leaderships handed to the preferred replica", topic, transfers)
		}
	}
	if hosted["none"] == 0 || hosted["follower"] == 0 {
		t.Fatalf("the front broker's replicas of the partitions: %v; the test needs partitions it does not host and partitions it only follows", hosted)
	}
	t.Logf("partitions by their replica on the front broker: %v; by their leader's term: %v", hosted, terms)
}

// createAndUse creates topic with its partitions on two replicas each
// through broker front, reads its Metadata there, and at once sends each
// leader Metadata names a ListOffsets and an acks=all Produce for its
// partitions. It returns what went wrong, and counts in hosted how the
// partitions stand to front (not hosted, led or followed there), in terms
// their leaders' terms.
func createAndUse(ctx context.Context, t *testing.T, c *testCluster, cl *kgo.Client, topic string, partitions int32, front int32, hosted map[string]int, terms map[int32]int) []error {
	t.Helper()
	var errs []error
	create := kmsg.NewPtrCreateTopicsRequest()
	create.TimeoutMillis = 30_000
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, partitions, 2
	create.Topics = append(create.Topics, ct)
	cresp, err := create.RequestWith(ctx, cl.Broker(int(front)))
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
	mresp, err := meta.RequestWith(ctx, cl.Broker(int(front)))
	if err != nil {
		t.Fatal(err)
	}
	if len(mresp.Topics) != 1 {
		t.Fatalf("metadata of %s: %d topics", topic, len(mresp.Topics))
	}
	if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
		return append(errs, fmt.Errorf("metadata of %s right after CreateTopics answered: %w", topic, err))
	}
	byLeader := map[int32][]int32{}
	view := c.brokers[front-1].Controller().View().Topics[topic]
	for _, mp := range mresp.Topics[0].Partitions {
		if err := kerr.ErrorForCode(mp.ErrorCode); err != nil || mp.Leader < 0 {
			errs = append(errs, fmt.Errorf("metadata of %s/%d: leader %d, %v", topic, mp.Partition, mp.Leader, err))
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
		terms[mp.LeaderEpoch]++
		if want := view.Partitions[mp.Partition].Replicas[0]; uint64(mp.Leader) != want {
			errs = append(errs, fmt.Errorf("%s/%d led by broker %d in term %d; want its preferred replica %d",
				topic, mp.Partition, mp.Leader, mp.LeaderEpoch, want))
		}
	}

	// What a consumer asks first, which a leader that has not applied an
	// entry of its term refuses at once.
	for leader, ps := range byLeader {
		for p, err := range listLatest(ctx, t, cl, leader, topic, ps) {
			errs = append(errs, fmt.Errorf("list offsets of %s/%d on broker %d, its leader as broker %d named it: %w",
				topic, p, leader, front, err))
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
					errs = append(errs, fmt.Errorf("produce to %s/%d on broker %d, its leader as broker %d named it: %w",
						topic, rp.Partition, leader, front, err))
				}
			}
		}
	}
	return errs
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
			for p, err := range listLatest(ctx, t, cl, leader, topic, ps) {
				t.Errorf("round %d: list offsets of %s/%d on broker %d right after CreateTopics answered: %v", round, topic, p, leader, err)
			}
		}
	}
}

// listLatest asks broker leader for the latest offsets of topic's
// partitions ps, as a consumer does first, and returns the error of each
// partition refused.
func listLatest(ctx context.Context, t *testing.T, cl *kgo.Client, leader int32, topic string, ps []int32) map[int32]error {
	t.Helper()
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
	resp, err := list.RequestWith(ctx, cl.Broker(int(leader)))
	if err != nil {
		t.Fatalf("list offsets on broker %d: %v", leader, err)
	}
	refused := map[int32]error{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				refused[rp.Partition] = err
			}
		}
	}
	return refused
}
