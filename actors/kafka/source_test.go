package kafka

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	raftpb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// deadThree finds broker 3 dead and the others alive.
func deadThree(id uint64) bool { return id != 3 }

// liveCluster is three registered brokers, topic "t" whose partitions are
// on [3], [1 3] and [2 1], and the offsets topic on [3]; the leaderships
// are known from the brokers' broadcasts only: 3 leads t/0 (term 4), t/1
// (term 2) and the offsets partition, 2 leads t/2 (term 5).
func liveCluster(t *testing.T) (*controller.StateMachine, *partition.Leaders) {
	t.Helper()
	sm := controller.NewStateMachine(zerolog.Nop())
	sm.MarkCaughtUp()
	index := uint64(0)
	apply := func(c *controller.Command) {
		index++
		sm.Apply(index, 1, c.Encode())
	}
	for id := uint64(1); id <= 3; id++ {
		apply(&controller.Command{RegisterBroker: &controller.RegisterBroker{NodeID: id, KafkaAddr: fmt.Sprintf("127.0.0.1:%d", 9090+id)}})
	}
	apply(&controller.Command{CreateTopic: &controller.CreateTopic{Name: "t", ID: controller.NewTopicID(), Replicas: [][]uint64{{3}, {1, 3}, {2, 1}}}})
	apply(&controller.Command{CreateTopic: &controller.CreateTopic{Name: controller.OffsetsTopic, ID: controller.NewTopicID(), Replicas: [][]uint64{{3}}}})
	view := sm.View()
	ps := view.Topics["t"].Partitions
	if len(ps) != 3 || view.Topics[controller.OffsetsTopic] == nil {
		t.Fatalf("topics not created: %+v", view.Topics)
	}
	leaders := partition.NewLeaders()
	leaders.Note([]netactor.LeaderInfo{
		{Group: ps[0].Group, Leader: 3, Term: 4, ISR: []uint64{3}},
		{Group: ps[1].Group, Leader: 3, Term: 2, ISR: []uint64{3, 1}},
		{Group: ps[2].Group, Leader: 2, Term: 5, ISR: []uint64{2, 1}},
		{Group: view.Topics[controller.OffsetsTopic].Partitions[0].Group, Leader: 3, Term: 1, ISR: []uint64{3}},
	})
	return sm, leaders
}

// metadataOfT returns the ids of the brokers src's Metadata lists and its
// answer for the partitions of topic "t".
func metadataOfT(t *testing.T, src *ClusterSource) ([]int32, []kmsg.MetadataResponseTopicPartition) {
	t.Helper()
	var brokers []int32
	for _, b := range src.Cluster().Brokers {
		brokers = append(brokers, b.NodeID)
	}
	topics := src.Topics(TopicQuery{Names: []string{"t"}})
	if len(topics) != 1 || topics[0].ErrorCode != 0 {
		t.Fatalf("topics %+v, want t without a topic error", topics)
	}
	return brokers, responseTopic(&topics[0], false).Partitions
}

// TestMetadataAnswersDeadBrokerAsFenced: a broker this one has not heard
// from within the session timeout is answered as Kafka answers a fenced
// one: out of the broker list, its replicas offline and out of the ISRs,
// and a partition it led without a newer leader known LEADER_NOT_AVAILABLE
// at the epoch last known (an epoch going back would make clients keep
// the dead leader).
func TestMetadataAnswersDeadBrokerAsFenced(t *testing.T) {
	sm, leaders := liveCluster(t)
	type want struct {
		leader, epoch int32
		isr, offline  []int32
	}
	tests := []struct {
		name    string
		alive   func(uint64) bool
		brokers []int32
		parts   []want
	}{
		{"every broker alive", nil, []int32{1, 2, 3}, []want{
			{3, 4, []int32{3}, nil},
			{3, 2, []int32{3, 1}, nil},
			{2, 5, []int32{2, 1}, nil},
		}},
		{"broker 3 dead", deadThree, []int32{1, 2}, []want{
			{-1, 4, nil, []int32{3}},
			{-1, 2, []int32{1}, []int32{3}},
			{2, 5, []int32{2, 1}, nil},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &ClusterSource{Machine: sm, Board: raftactor.NewStatusBoard(), Replicas: partition.NewReplicas(), Leaders: leaders, Alive: tc.alive, Log: zerolog.Nop()}
			brokers, parts := metadataOfT(t, src)
			if !slices.Equal(brokers, tc.brokers) {
				t.Errorf("brokers %v, want %v", brokers, tc.brokers)
			}
			for i, w := range tc.parts {
				p := parts[i]
				code := int16(0)
				if w.leader < 0 {
					code = kerr.LeaderNotAvailable.Code
				}
				if p.Leader != w.leader || p.LeaderEpoch != w.epoch || p.ErrorCode != code ||
					!slices.Equal(p.ISR, w.isr) || !slices.Equal(p.OfflineReplicas, w.offline) {
					t.Errorf("t/%d: leader %d epoch %d error %d isr %v offline %v; want leader %d epoch %d error %d isr %v offline %v",
						i, p.Leader, p.LeaderEpoch, p.ErrorCode, p.ISR, p.OfflineReplicas, w.leader, w.epoch, code, w.isr, w.offline)
				}
			}
		})
	}
}

// TestMetadataNamesStoppingBrokerWhileItLeads: a broker that announced a
// clean stop is answered as Kafka answers one in controlled shutdown: in
// the broker list and the leader of what it still leads, in no ISR but
// its own partitions', and fenced once it leads nothing. Hiding it at
// once answered its partitions LEADER_NOT_AVAILABLE until their new
// leader was known here.
func TestMetadataNamesStoppingBrokerWhileItLeads(t *testing.T) {
	stoppingThree := func(id uint64) bool { return id == 3 }
	stoppingOne := func(id uint64) bool { return id == 1 }
	type want struct {
		leader       int32
		isr, offline []int32
	}
	for _, tc := range []struct {
		name     string
		stopping func(uint64) bool
		alive    func(uint64) bool
		brokers  []int32
		parts    []want
	}{
		{"the stopping broker leads", stoppingThree, nil, []int32{1, 2, 3}, []want{
			{3, []int32{3}, nil},
			{3, []int32{3, 1}, nil},
			{2, []int32{2, 1}, nil},
		}},
		{"the stopping broker leads nothing", stoppingOne, nil, []int32{2, 3}, []want{
			{3, []int32{3}, nil},
			{3, []int32{3}, []int32{1}},
			{2, []int32{2}, []int32{1}},
		}},
		{"the stopping broker is dead", stoppingThree, deadThree, []int32{1, 2}, []want{
			{-1, nil, []int32{3}},
			{-1, []int32{1}, []int32{3}},
			{2, []int32{2, 1}, nil},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sm, leaders := liveCluster(t)
			src := &ClusterSource{Machine: sm, Board: raftactor.NewStatusBoard(), Replicas: partition.NewReplicas(), Leaders: leaders,
				Alive: tc.alive, Stopping: tc.stopping, Log: zerolog.Nop()}
			brokers, parts := metadataOfT(t, src)
			if !slices.Equal(brokers, tc.brokers) {
				t.Errorf("brokers %v, want %v", brokers, tc.brokers)
			}
			for i, w := range tc.parts {
				p := parts[i]
				if p.Leader != w.leader || !slices.Equal(p.ISR, w.isr) || !slices.Equal(p.OfflineReplicas, w.offline) {
					t.Errorf("t/%d: leader %d isr %v offline %v; want leader %d isr %v offline %v",
						i, p.Leader, p.ISR, p.OfflineReplicas, w.leader, w.isr, w.offline)
				}
			}
		})
	}
}

// TestDescribeClusterListsFencedOnlyWhenAsked: DescribeCluster leaves a
// dead broker out, and v2+ lists it marked fenced when asked (KIP-1073).
func TestDescribeClusterListsFencedOnlyWhenAsked(t *testing.T) {
	sm, leaders := liveCluster(t)
	src := &ClusterSource{Machine: sm, Board: raftactor.NewStatusBoard(), Replicas: partition.NewReplicas(), Leaders: leaders, Alive: deadThree, Log: zerolog.Nop()}
	for _, tc := range []struct {
		version int16
		fenced  bool
		want    string
	}{
		{0, true, "1 2"},
		{2, false, "1 2"},
		{2, true, "1 2 3(fenced)"},
	} {
		req := kmsg.NewPtrDescribeClusterRequest()
		req.Version, req.IncludeFencedBrokers = tc.version, tc.fenced
		if tc.version >= 1 {
			req.EndpointType = endpointBrokers
		}
		got := ""
		for _, b := range describeClusterResponse(req, src).Brokers {
			if got != "" {
				got += " "
			}
			got += fmt.Sprint(b.NodeID)
			if b.IsFenced {
				got += "(fenced)"
			}
		}
		if got != tc.want {
			t.Errorf("v%d include fenced %v: brokers %q, want %q", tc.version, tc.fenced, got, tc.want)
		}
	}
}

// TestClientsNotSentToDeadBroker: FindCoordinator and KIP-951's leader
// hints never name a broker this one finds dead.
func TestClientsNotSentToDeadBroker(t *testing.T) {
	sm, leaders := liveCluster(t)
	for _, tc := range []struct {
		name      string
		alive     func(uint64) bool
		wantCoord int16 // FindCoordinator's error
		wantHint  bool  // a hint for t/0 and t/1
	}{
		{"every broker alive", nil, 0, true},
		{"broker 3 dead", deadThree, kerr.CoordinatorNotAvailable.Code, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Service{NodeID: 1, Machine: sm, Board: raftactor.NewStatusBoard(), Leaders: leaders, Alive: tc.alive}
			if b, code := s.coordinatorOf("g"); code != tc.wantCoord || code == 0 && b.NodeID != 3 {
				t.Errorf("coordinator %d, error %d; want error %d", b.NodeID, code, tc.wantCoord)
			}
			view := sm.View()
			for p := int32(0); p < 2; p++ {
				if b, _, ok := s.currentLeader(view, "t", p); ok != tc.wantHint || ok && b.NodeID != 3 {
					t.Errorf("t/%d: hint %v (%d), want %v", p, ok, b.NodeID, tc.wantHint)
				}
			}
			if b, _, ok := s.currentLeader(view, "t", 2); !ok || b.NodeID != 2 {
				t.Errorf("t/2: hint %v (%d), want broker 2", ok, b.NodeID)
			}
		})
	}
}

// TestHaltedFollowerDoesNotHideTheLeader: a replica of this broker that
// halted (a storage failure) knows nothing of its partition's leadership
// any more; the live leader's broadcast of the same term answers for it.
// The halted status's "no leader" used to win, so this broker answered
// the partition leaderless, and gave no KIP-951 hint, for as long as the
// leader lived.
func TestHaltedFollowerDoesNotHideTheLeader(t *testing.T) {
	sm, leaders := liveCluster(t)
	board := raftactor.NewStatusBoard()
	p := sm.View().Topics["t"].Partitions[2] // on [2 1], led by 2 at term 5
	g := p.Group
	board.Publish(&raftactor.GroupStatus{Group: g, Name: "t-2", Role: "halted", Term: 5, Halted: "write segment: no space left on device"})
	src := &ClusterSource{Machine: sm, Board: board, Replicas: partition.NewReplicas(), Leaders: leaders, Log: zerolog.Nop()}
	topics := src.Topics(TopicQuery{Names: []string{"t"}})
	if p := responseTopic(&topics[0], false).Partitions[2]; p.Leader != 2 {
		t.Errorf("Metadata of t/2 on the broker with the halted follower: leader %d, error %d; want 2", p.Leader, p.ErrorCode)
	}
	s := &Service{NodeID: 1, Machine: sm, Board: board, Leaders: leaders}
	if leader, _ := s.leaderOf(p); leader != 2 {
		t.Errorf("leaderOf(t/2) = %d, want 2", leader)
	}
}

// TestHaltedLeaderDoesNotNameItself: a broker whose leader replica halted
// does not go on naming itself the leader from its own last broadcast,
// which it keeps on its leaders board. Nor does it when the replica's
// actor died (PublishStopped): its status has no term, and the broadcast's
// higher term named this broker until a peer's news replaced it.
func TestHaltedLeaderDoesNotNameItself(t *testing.T) {
	sm, leaders := liveCluster(t)
	p := sm.View().Topics["t"].Partitions[2] // broadcast: led by 2 at term 5
	for _, tc := range []struct {
		name    string
		publish func(*raftactor.StatusBoard)
	}{
		{"halted", func(b *raftactor.StatusBoard) {
			b.Publish(&raftactor.GroupStatus{Group: p.Group, Name: "t-2", Role: "halted", Term: 5, Halted: "write segment: no space left on device"})
		}},
		{"died", func(b *raftactor.StatusBoard) { b.PublishStopped(p.Group, "t-2") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			board := raftactor.NewStatusBoard()
			tc.publish(board)
			src := &ClusterSource{Self: 2, Machine: sm, Board: board, Replicas: partition.NewReplicas(), Leaders: leaders, Log: zerolog.Nop()}
			topics := src.Topics(TopicQuery{Names: []string{"t"}})
			if kp := responseTopic(&topics[0], false).Partitions[2]; kp.Leader != -1 || kp.LeaderEpoch != 5 {
				t.Errorf("Metadata of t/2 on broker 2, whose leader replica stopped: leader %d epoch %d; want -1, epoch 5", kp.Leader, kp.LeaderEpoch)
			}
			s := &Service{NodeID: 2, Machine: sm, Board: board, Leaders: leaders}
			if leader, _ := s.leaderOf(p); leader == 2 {
				t.Error("leaderOf(t/2) on broker 2 is broker 2, whose replica stopped")
			}
		})
	}
}

// TestLocalReplicaThatKnowsNoLeader: a local replica that knows no leader
// of the term of the peers' broadcast hides that leader only while it
// campaigns (the leader died, as far as it knows) or knows a later term
// (an election is under way), unless the election is a leadership
// transfer: the outgoing leader leads until its successor is known. A
// follower that has not heard from its leader yet, a replica of a broker
// just restarted, used to hide it too: the restarted broker answered every
// partition it hosts LEADER_NOT_AVAILABLE, and kgo parked each for 5 s;
// so did every replica during a transfer. This broker's own leadership is
// never taken from its broadcast: its replica knows better.
func TestLocalReplicaThatKnowsNoLeader(t *testing.T) {
	sm, leaders := liveCluster(t)
	p := sm.View().Topics["t"].Partitions[2] // broadcast: led by 2 at term 5
	g := p.Group
	for _, tc := range []struct {
		name       string
		self       uint64
		role       string
		term       uint64
		outgoing   uint64 // at term 5
		wantLeader int32
	}{
		{"restarted follower", 1, "follower", 5, 0, 2},
		// A pre-vote keeps the term: a follower that missed heartbeats, or
		// woke from a quiet group's sleep, while its leader lives.
		{"pre-candidate", 1, "pre-candidate", 5, 0, 2},
		{"candidate of a later term", 1, "candidate", 6, 0, -1},
		{"follower of a later term", 1, "follower", 6, 0, -1},
		{"the broadcast's leader, stepped down", 2, "follower", 5, 0, -1},
		{"the broadcast's leader, stepped down, pre-voting", 2, "pre-candidate", 5, 0, -1},
		{"pre-candidate of a later term", 1, "pre-candidate", 6, 0, -1},
		{"the transferee", 1, "candidate", 6, 2, 2},
		{"a voter for the transferee", 3, "follower", 6, 2, 2},
		{"the outgoing leader", 2, "follower", 6, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			board := raftactor.NewStatusBoard()
			st := &raftactor.GroupStatus{Group: g, Name: "t-2", Role: tc.role, Term: tc.term}
			if tc.outgoing != 0 {
				st.Outgoing, st.OutgoingTerm = tc.outgoing, 5
			}
			board.Publish(st)
			src := &ClusterSource{Self: tc.self, Machine: sm, Board: board, Replicas: partition.NewReplicas(), Leaders: leaders, Log: zerolog.Nop()}
			topics := src.Topics(TopicQuery{Names: []string{"t"}})
			if p := responseTopic(&topics[0], false).Partitions[2]; p.Leader != tc.wantLeader {
				t.Errorf("Metadata of t/2: leader %d, error %d; want %d", p.Leader, p.ErrorCode, tc.wantLeader)
			}
			s := &Service{NodeID: tc.self, Machine: sm, Board: board, Leaders: leaders}
			if leader, _ := s.leaderOf(p); int32(leader) != max(tc.wantLeader, 0) {
				t.Errorf("leaderOf(t/2) = %d, want %d", leader, max(tc.wantLeader, 0))
			}
		})
	}
}

// TestMetadataISRWithinReplicas: no ISR member Metadata answers is out of
// the replicas it answers, as in Kafka, whose record completing a
// reassignment takes the removed replicas out of the ISR. A leader's
// broadcast from before the controller completed a move still names the
// replica removed; answered as it was, every broker reported e.g.
// replicas [2 3 4] with ISR [1 2 3] until the leader's next broadcast.
func TestMetadataISRWithinReplicas(t *testing.T) {
	sm, leaders := liveCluster(t)
	g := sm.View().Topics["t"].Partitions[1].Group // on [1 3], led by 3 at term 2
	leaders.Note([]netactor.LeaderInfo{{Group: g, Leader: 3, Term: 2, ISR: []uint64{1, 2, 3}}})
	src := &ClusterSource{Machine: sm, Board: raftactor.NewStatusBoard(), Replicas: partition.NewReplicas(), Leaders: leaders, Log: zerolog.Nop()}
	_, parts := metadataOfT(t, src)
	if p := parts[1]; p.Leader != 3 || !slices.Equal(p.ISR, []int32{1, 3}) {
		t.Errorf("t/1 on %v: leader %d, ISR %v; want leader 3, ISR [1 3]", p.Replicas, p.Leader, p.ISR)
	}
}

// TestMetadataLeaderWithinReplicas: a leader Metadata names is among the
// replicas it answers, and in the ISR it answers, as in Kafka, whose
// record completing a reassignment elects a new leader when it takes the
// current one out. A leader's last broadcast from before a move that took
// it out names it until its successor's first broadcast arrives: a
// broker that does not host the partition answered e.g. leader 2,
// replicas [1 3], ISR [1 3] until then.
func TestMetadataLeaderWithinReplicas(t *testing.T) {
	sm, leaders := liveCluster(t)
	g := sm.View().Topics["t"].Partitions[1].Group // on [1 3]
	leaders.Note([]netactor.LeaderInfo{{Group: g, Leader: 2, Term: 3, ISR: []uint64{1, 2, 3}}})
	src := &ClusterSource{Machine: sm, Board: raftactor.NewStatusBoard(), Replicas: partition.NewReplicas(), Leaders: leaders, Log: zerolog.Nop()}
	_, parts := metadataOfT(t, src)
	if p := parts[1]; p.ErrorCode != kerr.LeaderNotAvailable.Code || p.Leader != -1 || p.LeaderEpoch != 3 || !slices.Equal(p.ISR, []int32{1, 3}) {
		t.Errorf("t/1 on %v: error %d leader %d epoch %d ISR %v; want LEADER_NOT_AVAILABLE, leader -1 epoch 3 ISR [1 3]",
			p.Replicas, p.ErrorCode, p.Leader, p.LeaderEpoch, p.ISR)
	}
}

// TestClientsNotSentToLeaderOutsideReplicas: FindCoordinator and KIP-951's
// hints name no leader Metadata refuses to name, one out of the
// partition's replicas (a broadcast from before a move took it out):
// Kafka's FindCoordinator takes the leader from Metadata and is
// COORDINATOR_NOT_AVAILABLE without one (KafkaApis.getCoordinator). Both
// named broker 2 here, while Metadata answered LEADER_NOT_AVAILABLE.
func TestClientsNotSentToLeaderOutsideReplicas(t *testing.T) {
	sm, leaders := liveCluster(t)
	view := sm.View()
	og := view.Topics[controller.OffsetsTopic].Partitions[0].Group // on [3]
	g := view.Topics["t"].Partitions[1].Group                      // on [1 3]
	leaders.Note([]netactor.LeaderInfo{
		{Group: og, Leader: 2, Term: 2, ISR: []uint64{2, 3}},
		{Group: g, Leader: 2, Term: 3, ISR: []uint64{1, 2, 3}},
	})
	src := &ClusterSource{Machine: sm, Board: raftactor.NewStatusBoard(), Replicas: partition.NewReplicas(), Leaders: leaders, Log: zerolog.Nop()}
	for _, tp := range []struct {
		topic string
		part  int
	}{{controller.OffsetsTopic, 0}, {"t", 1}} {
		topics := src.Topics(TopicQuery{Names: []string{tp.topic}})
		if p := responseTopic(&topics[0], false).Partitions[tp.part]; p.ErrorCode != kerr.LeaderNotAvailable.Code {
			t.Fatalf("Metadata of %s/%d: error %d leader %d, want LEADER_NOT_AVAILABLE", tp.topic, tp.part, p.ErrorCode, p.Leader)
		}
	}
	s := &Service{NodeID: 1, Machine: sm, Board: raftactor.NewStatusBoard(), Leaders: leaders}
	if b, code := s.coordinatorOf("g"); code != kerr.CoordinatorNotAvailable.Code {
		t.Errorf("coordinator %d, error %d; want COORDINATOR_NOT_AVAILABLE", b.NodeID, code)
	}
	if b, _, ok := s.currentLeader(view, "t", 1); ok {
		t.Errorf("t/1 on [1 3]: hint names broker %d", b.NodeID)
	}
}

// TestMetadataISRBeforeTheLeadersBroadcast: a broker whose own replica
// knows a partition's leader before that leader's first broadcast
// answers the ISR Kafka would: after an election, the ISR broadcast at
// the earlier term with the new leader in it (a clean election keeps the
// ISR); for a partition whose leader was never heard of, its replicas
// that are alive (Kafka creates a partition with its live replicas in
// sync). Answering the leader alone made every new partition, and every
// partition after a leader change, look under-replicated there until the
// broadcast came.
func TestMetadataISRBeforeTheLeadersBroadcast(t *testing.T) {
	sm, _ := liveCluster(t)
	ps := sm.View().Topics["t"].Partitions // on [3], [1 3] and [2 1]
	for _, tc := range []struct {
		name      string
		part      int
		broadcast *netactor.LeaderInfo // the latest heard of, nil for none
		leader    uint64               // this broker's replica's, of term
		term      uint64
		alive     func(uint64) bool
		isr       []int32
	}{
		{"elected after the broadcast's leader", 2, &netactor.LeaderInfo{Leader: 2, Term: 5, ISR: []uint64{2, 1}}, 1, 6, nil, []int32{1, 2}},
		{"elected out of the broadcast's ISR", 1, &netactor.LeaderInfo{Leader: 3, Term: 2, ISR: []uint64{3}}, 1, 3, nil, []int32{1, 3}},
		{"elected, the broadcast's leader dead", 1, &netactor.LeaderInfo{Leader: 3, Term: 2, ISR: []uint64{3, 1}}, 1, 3, deadThree, []int32{1}},
		{"never broadcast", 2, nil, 2, 1, nil, []int32{2, 1}},
		{"never broadcast, a replica dead", 1, nil, 1, 1, deadThree, []int32{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := ps[tc.part].Group
			leaders := partition.NewLeaders()
			if tc.broadcast != nil {
				li := *tc.broadcast
				li.Group = g
				leaders.Note([]netactor.LeaderInfo{li})
			}
			board := raftactor.NewStatusBoard()
			board.Publish(&raftactor.GroupStatus{Group: g, Role: "follower", Term: tc.term, Leader: tc.leader})
			src := &ClusterSource{Self: 1, Machine: sm, Board: board, Replicas: partition.NewReplicas(), Leaders: leaders, Alive: tc.alive, Log: zerolog.Nop()}
			_, parts := metadataOfT(t, src)
			if p := parts[tc.part]; p.Leader != int32(tc.leader) || p.LeaderEpoch != int32(tc.term) || !slices.Equal(p.ISR, tc.isr) {
				t.Errorf("t/%d on %v: leader %d epoch %d ISR %v; want leader %d epoch %d ISR %v", tc.part, p.Replicas, p.Leader, p.LeaderEpoch, p.ISR, tc.leader, tc.term, tc.isr)
			}
		})
	}
}

// TestNoISRWithoutANamedLeader: a leader this broker's own replica knows,
// never broadcast, that Metadata does not name (dead to this broker, or
// out of the replicas) keeps no ISR: the partition is answered without a
// leader and with nobody in sync, as a partition Kafka shows leaderless
// while a live replica is in its ISR does not exist (it elects that one).
// Every live replica was answered in the ISR, and a shrink keeping them
// was over for ListPartitionReassignments while nothing led.
func TestNoISRWithoutANamedLeader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		leader uint64 // of broker 1's replica of t/1, on [1 3]
		alive  func(uint64) bool
	}{
		{"leader dead", 3, deadThree},
		{"leader out of the replicas", 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sm, _ := liveCluster(t)
			view := sm.View()
			tt := view.Topics["t"]
			board := raftactor.NewStatusBoard()
			board.Publish(&raftactor.GroupStatus{Group: tt.Partitions[1].Group, Role: "follower", Term: 7, Leader: tc.leader})
			src := &ClusterSource{Self: 1, Machine: sm, Board: board, Replicas: partition.NewReplicas(), Leaders: partition.NewLeaders(), Alive: tc.alive, Log: zerolog.Nop()}
			_, parts := metadataOfT(t, src)
			if p := parts[1]; p.Leader != -1 || p.LeaderEpoch != 7 || len(p.ISR) != 0 {
				t.Errorf("t/1: leader %d epoch %d ISR %v; want leader -1 epoch 7, no ISR", p.Leader, p.LeaderEpoch, p.ISR)
			}
			// A shrink of t/1 to [1] is stuck while nothing leads.
			shrink := controller.Command{Reassign: &controller.Reassign{Topic: tt.ID, Partition: 1, Target: []uint64{1}}}
			sm.Apply(view.Applied+1, 1, shrink.Encode())
			view = sm.View()
			s := &Service{NodeID: 1, Machine: sm, Board: board, Replicas: partition.NewReplicas(), Leaders: partition.NewLeaders(), Alive: tc.alive}
			if p := view.Topics["t"].Partitions[1]; !p.Reassigning() || !s.reassignmentListed(view.Topics["t"], p) {
				t.Errorf("shrink of t/1 to [1] (reassigning %v) not listed, with no leader", p.Reassigning())
			}
		})
	}
}

// TestTopicHiddenOnlyWhileBeingCreated: a topic being created is
// LEADER_NOT_AVAILABLE as a whole until every partition it was created
// with has a leader; then this broker shows it for good and tells the
// controller, once. A broker that never saw it led (restarted, or added
// later) hides it only while the controller's state says it is being
// created: a topic from before the flag, or marked led, shows its
// leaderless partitions one by one. The topics the controller marked are
// forgotten locally.
func TestTopicHiddenOnlyWhileBeingCreated(t *testing.T) {
	sm := controller.NewStateMachine(zerolog.Nop())
	sm.MarkCaughtUp()
	index := uint64(0)
	apply := func(c *controller.Command) {
		index++
		sm.Apply(index, 1, c.Encode())
	}
	for id := uint64(1); id <= 2; id++ {
		apply(&controller.Command{RegisterBroker: &controller.RegisterBroker{NodeID: id, KafkaAddr: fmt.Sprintf("127.0.0.1:%d", 9090+id)}})
	}
	newID, oldID, nextID := controller.NewTopicID(), controller.NewTopicID(), controller.NewTopicID()
	apply(&controller.Command{CreateTopic: &controller.CreateTopic{Name: "new", ID: newID, Replicas: [][]uint64{{1}, {2}}, Creating: true}})
	apply(&controller.Command{CreateTopic: &controller.CreateTopic{Name: "old", ID: oldID, Replicas: [][]uint64{{1}, {2}}}})
	groups := []uint64{sm.View().Topics["new"].Partitions[0].Group, sm.View().Topics["new"].Partitions[1].Group}

	sys, ctl, marks := markRecorder(t)
	leaders := partition.NewLeaders()
	source := func() *ClusterSource {
		return &ClusterSource{Self: 1, Machine: sm, Board: raftactor.NewStatusBoard(), Replicas: partition.NewReplicas(),
			Leaders: leaders, Controller: ctl, Sender: sys.Root, Log: zerolog.Nop()}
	}
	topicError := func(src *ClusterSource, name string) int16 {
		t.Helper()
		topics := src.Topics(TopicQuery{Names: []string{name}})
		if len(topics) != 1 || len(topics[0].Partitions) != 2 {
			t.Fatalf("topic %s: %+v", name, topics)
		}
		return topics[0].ErrorCode
	}
	noMark := func() {
		t.Helper()
		select {
		case id := <-marks:
			t.Fatalf("unexpected MarkTopicLed for %v", id)
		default:
		}
	}

	src := source()
	leaders.Note([]netactor.LeaderInfo{{Group: groups[0], Leader: 1, Term: 1}})
	if code := topicError(src, "new"); code != kerr.LeaderNotAvailable.Code {
		t.Fatalf("new with one partition led: topic error %d, want LEADER_NOT_AVAILABLE", code)
	}
	if code := topicError(src, "old"); code != 0 {
		t.Fatalf("old (created before the flag), leaderless: topic error %d, want 0", code)
	}
	leaders.Note([]netactor.LeaderInfo{{Group: groups[1], Leader: 2, Term: 1}})
	for range 2 {
		if code := topicError(src, "new"); code != 0 {
			t.Fatalf("new with every partition led: topic error %d, want 0", code)
		}
	}
	select {
	case id := <-marks:
		if id != newID {
			t.Fatalf("MarkTopicLed for %v, want %v", id, newID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the controller was not told that new was led")
	}
	leaders.Note([]netactor.LeaderInfo{{Group: groups[1], Leader: 0, Term: 2}}) // partition 1 loses its leader
	if code := topicError(src, "new"); code != 0 {
		t.Fatalf("new, seen led here, then partition 1 leaderless: topic error %d, want 0", code)
	}
	noMark()
	// A broker that never saw new led follows the controller's state.
	if code := topicError(source(), "new"); code != kerr.LeaderNotAvailable.Code {
		t.Fatalf("new on a broker that never saw it led, the controller not told: topic error %d, want LEADER_NOT_AVAILABLE", code)
	}
	apply(&controller.Command{TopicLed: &controller.TopicLed{ID: newID}})
	if code := topicError(source(), "new"); code != 0 {
		t.Fatalf("new on a broker that never saw it led, marked led by the controller: topic error %d, want 0", code)
	}

	// The next topic seen led prunes new, which the controller marked.
	apply(&controller.Command{CreateTopic: &controller.CreateTopic{Name: "next", ID: nextID, Replicas: [][]uint64{{1}, {2}}, Creating: true}})
	for _, p := range sm.View().Topics["next"].Partitions {
		leaders.Note([]netactor.LeaderInfo{{Group: p.Group, Leader: 1, Term: 1}})
	}
	if code := topicError(src, "next"); code != 0 {
		t.Fatalf("next with every partition led: topic error %d, want 0", code)
	}
	if _, ok := src.led.Load(newID); ok {
		t.Error("the topic the controller marked is still remembered locally")
	}
	if _, ok := src.led.Load(nextID); !ok {
		t.Error("the topic seen led is not remembered locally")
	}
}

// TestAutoCreateAskedOnceAndOffsetsTopicAsInternal: Metadata naming a
// missing topic asks the controller for it once while the creation is
// under way, not on every retry of the client, and again after
// autoCreateRetry (the controller may have refused it); the offsets topic
// is asked for with its own settings, which the controller requires.
func TestAutoCreateAskedOnceAndOffsetsTopicAsInternal(t *testing.T) {
	sm, leaders := liveCluster(t)
	sm.Apply(sm.View().Applied+1, 1, (&controller.Command{DeleteTopic: &controller.DeleteTopic{ID: sm.View().Topics[controller.OffsetsTopic].ID}}).Encode())
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	asked := make(chan controller.TopicSpec, 16)
	ctl := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*controller.CreateTopics); ok {
			for _, spec := range m.Topics {
				asked <- spec
			}
		}
	}))
	now := time.Unix(1000, 0)
	src := &ClusterSource{Machine: sm, Board: raftactor.NewStatusBoard(), Replicas: partition.NewReplicas(), Leaders: leaders,
		Controller: ctl, Sender: sys.Root, AutoCreate: func() bool { return true }, OffsetsPartitions: 7,
		Now: func() time.Time { return now }, Log: zerolog.Nop()}
	metadata := func(names ...string) {
		t.Helper()
		for _, tp := range src.Topics(TopicQuery{Names: names, AllowAutoCreate: true}) {
			if tp.ErrorCode != kerr.LeaderNotAvailable.Code {
				t.Fatalf("missing topic %s: error %d, want LEADER_NOT_AVAILABLE", tp.Name, tp.ErrorCode)
			}
		}
	}
	// expect waits for the specs asked for, in order, and then for nothing
	// more to arrive (the sends are asynchronous).
	expect := func(want ...controller.TopicSpec) {
		t.Helper()
		for _, w := range want {
			select {
			case got := <-asked:
				if !reflect.DeepEqual(got, w) {
					t.Fatalf("asked for %+v, want %+v", got, w)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s not asked for", w.Name)
			}
		}
		select {
		case got := <-asked:
			t.Fatalf("asked again for %+v", got)
		case <-time.After(50 * time.Millisecond):
		}
	}
	fresh := controller.TopicSpec{Name: "fresh", Partitions: -1, ReplicationFactor: -1}
	offsets := controller.TopicSpec{Name: controller.OffsetsTopic, Partitions: 7, ReplicationFactor: -1, Internal: true}

	metadata("fresh", controller.OffsetsTopic)
	expect(fresh, offsets)
	for range 3 {
		now = now.Add(100 * time.Millisecond)
		metadata("fresh", controller.OffsetsTopic)
	}
	expect()
	now = now.Add(autoCreateRetry)
	metadata("fresh")
	expect(fresh)
	if len(src.asked) != 1 {
		t.Errorf("%d auto-creations remembered, want 1 (the offsets topic's is past autoCreateRetry)", len(src.asked))
	}
}

// TestNotCaughtUpAnswersLeaderNotAvailable: until the controller state
// has caught up, Metadata tells nothing of its topics but
// LEADER_NOT_AVAILABLE (no ids, no partitions: they may be a deleted
// topic's), auto-creates nothing (a name missing from it may exist), and a
// partition without a local replica is NOT_LEADER_OR_FOLLOWER, never
// UNKNOWN_TOPIC_OR_PARTITION.
func TestNotCaughtUpAnswersLeaderNotAvailable(t *testing.T) {
	live, leaders := liveCluster(t)
	data, err := live.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sm := controller.NewStateMachine(zerolog.Nop())
	if err := sm.Restore(&raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{Index: new(live.View().Applied)}}); err != nil {
		t.Fatal(err)
	}
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	asked := make(chan *controller.CreateTopics, 16)
	ctl := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *controller.CreateTopics:
			asked <- m
		case flushAsked:
			asked <- nil
		}
	}))
	src := &ClusterSource{Machine: sm, Board: raftactor.NewStatusBoard(), Replicas: partition.NewReplicas(), Leaders: leaders,
		Controller: ctl, Sender: sys.Root, AutoCreate: func() bool { return true }, Log: zerolog.Nop()}
	svc := &Service{NodeID: 1, Machine: sm, Board: raftactor.NewStatusBoard(), Leaders: leaders, Replicas: partition.NewReplicas()}
	id := sm.View().Topics["t"].ID
	tests := []struct {
		name string
		q    TopicQuery
		want []Topic
	}{
		{"all", TopicQuery{All: true}, []Topic{{Name: controller.OffsetsTopic}, {Name: "t"}}},
		{"names", TopicQuery{Names: []string{"t", "fresh"}, AllowAutoCreate: true}, []Topic{{Name: "t"}, {Name: "fresh"}}},
		{"ids", TopicQuery{IDs: [][16]byte{id, {1}}}, []Topic{{Name: "t", ID: id}, {ID: [16]byte{1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.want {
				tc.want[i].ErrorCode = kerr.LeaderNotAvailable.Code
			}
			if got := src.Topics(tc.q); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	codes := func() []int16 {
		return []int16{svc.missingCode("t", 0), svc.missingCode("fresh", 0), svc.missingCode("t", 7)}
	}
	if got, want := codes(), []int16{kerr.NotLeaderForPartition.Code, kerr.NotLeaderForPartition.Code, kerr.NotLeaderForPartition.Code}; !slices.Equal(got, want) {
		t.Errorf("missing replicas before catching up: %v, want %v", got, want)
	}

	sm.MarkCaughtUp()
	if got := src.Topics(TopicQuery{IDs: [][16]byte{id}}); len(got) != 1 || got[0].ErrorCode != 0 || len(got[0].Partitions) != 3 {
		t.Fatalf("caught up: %+v, want t's metadata", got)
	}
	if got, want := codes(), []int16{kerr.NotLeaderForPartition.Code, kerr.UnknownTopicOrPartition.Code, kerr.UnknownTopicOrPartition.Code}; !slices.Equal(got, want) {
		t.Errorf("missing replicas once caught up: %v, want %v", got, want)
	}
	// Behind any auto-creation sent before, from the same sender.
	sys.Root.Send(ctl, flushAsked{})
	if m := <-asked; m != nil {
		t.Fatalf("auto-created %+v before catching up", m.Topics)
	}
}

// flushAsked is answered after the messages sent before it.
type flushAsked struct{}

// TestReplicaOfReusedNameIsNotServed: the replicas are registered by name
// and the manager catches up with the controller state every other tick,
// so right after a topic is deleted and created again with the same name
// the replica under the name is the deleted topic's. Produce, Fetch,
// ListOffsets and OffsetForLeaderEpoch must answer as if it were missing
// (a Fetch by id UNKNOWN_TOPIC_ID, as Kafka's checkTopicId), never serve
// the new topic from it, nor a long-polling Fetch of the old id from the
// new topic's replica.
func TestReplicaOfReusedNameIsNotServed(t *testing.T) {
	sm, id := ordersState(t)
	old := controller.NewTopicID()
	sm.Apply(sm.View().Applied+1, 1, (&controller.Command{CreateTopic: &controller.CreateTopic{Name: "gone", ID: controller.NewTopicID(), Replicas: [][]uint64{{1}}}}).Encode())
	sm.Apply(sm.View().Applied+1, 1, (&controller.Command{DeleteTopic: &controller.DeleteTopic{ID: sm.View().Topics["gone"].ID}}).Encode())
	stale := &partition.Replica{TopicPartition: partition.TopicPartition{Topic: "orders", Partition: 0}, TopicID: old}
	current := &partition.Replica{TopicPartition: partition.TopicPartition{Topic: "orders", Partition: 1}, TopicID: id}
	gone := &partition.Replica{TopicPartition: partition.TopicPartition{Topic: "gone", Partition: 0}, TopicID: old}
	replicas := partition.NewReplicas()
	replicas.Publish(map[partition.TopicPartition]*partition.Replica{stale.TopicPartition: stale, current.TopicPartition: current, gone.TopicPartition: gone})
	s := &Service{NodeID: 1, Machine: sm, Replicas: replicas}
	var byName [16]byte
	tests := []struct {
		name  string
		topic string
		id    [16]byte
		p     int32
		want  *partition.Replica
		code  int16
	}{
		{"by name, the topic's", "orders", byName, 1, current, 0},
		{"by name, another topic's", "orders", byName, 0, nil, kerr.NotLeaderForPartition.Code},
		{"by name, a deleted topic's", "gone", byName, 0, nil, kerr.UnknownTopicOrPartition.Code},
		{"by id, the topic's", "orders", id, 1, current, 0},
		{"by id, another topic's", "orders", id, 0, nil, kerr.UnknownTopicID.Code},
		{"by the old id, the name now another topic's", "orders", old, 1, nil, kerr.UnknownTopicID.Code},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, code := s.replica(tc.topic, tc.id, tc.p)
			if r != tc.want || code != tc.code {
				t.Fatalf("got replica %+v, code %d; want %+v, %d", r, code, tc.want, tc.code)
			}
		})
	}
}

// TestTopicLedHintRepeated: while the controller's state still has a topic
// being created that this broker sees led, the front door tells the
// controller again every markLedEvery: the proposal its first hint led to
// may have been lost (a leader change), and until the controller records
// it, brokers that did not see the topic led hide it.
func TestTopicLedHintRepeated(t *testing.T) {
	sm := controller.NewStateMachine(zerolog.Nop())
	sm.MarkCaughtUp()
	sm.Apply(1, 1, (&controller.Command{RegisterBroker: &controller.RegisterBroker{NodeID: 1, KafkaAddr: "127.0.0.1:9091"}}).Encode())
	id := controller.NewTopicID()
	sm.Apply(2, 1, (&controller.Command{CreateTopic: &controller.CreateTopic{Name: "new", ID: id, Replicas: [][]uint64{{1}}, Creating: true}}).Encode())
	leaders := partition.NewLeaders()
	leaders.Note([]netactor.LeaderInfo{{Group: sm.View().Topics["new"].Partitions[0].Group, Leader: 1, Term: 1}})

	sys, ctl, marks := markRecorder(t)
	src := &ClusterSource{Self: 1, Machine: sm, Board: raftactor.NewStatusBoard(), Replicas: partition.NewReplicas(),
		Leaders: leaders, Controller: ctl, Sender: sys.Root, Log: zerolog.Nop()}
	got := 0
	for deadline := time.Now().Add(5 * markLedEvery); got < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("%d MarkTopicLed hints in %v for a topic the controller still has being created, want a second one", got, 5*markLedEvery)
		}
		if topics := src.Topics(TopicQuery{Names: []string{"new"}}); topics[0].ErrorCode != 0 {
			t.Fatalf("new, led: topic error %d", topics[0].ErrorCode)
		}
		select {
		case <-marks:
			got++
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// markRecorder starts an actor system with a stand-in for the controller
// actor that passes on the ids of the MarkTopicLed hints it gets.
func markRecorder(t *testing.T) (*actors.System, *actor.PID, <-chan controller.TopicID) {
	t.Helper()
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	marks := make(chan controller.TopicID, 64)
	ctl := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*controller.MarkTopicLed); ok {
			marks <- m.ID
		}
	}))
	return sys, ctl, marks
}
