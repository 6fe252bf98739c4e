package kafka

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.etcd.io/raft/v3"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/raftactor"
)

// leaderOf is the leader this broker names for partition p, and the term
// (knownLeader): 0 when unknown or not named (namesLeader). Every answer that
// names a leader outside Metadata (FindCoordinator, KIP-951's hints,
// ElectLeaders, the offline count) answers from it, so that none names a
// broker Metadata answers LEADER_NOT_AVAILABLE for: Kafka's FindCoordinator
// takes the offsets partition's leader from its metadata cache, and is
// COORDINATOR_NOT_AVAILABLE without one (KafkaApis.getCoordinator).
func (s *Service) leaderOf(p controller.Partition) (leader, term uint64) {
	leader, term, _, _ = knownLeader(s.Board, s.Leaders, s.NodeID, p.Group)
	if !namesLeader(p, leader, s.Alive) {
		leader = 0
	}
	return leader, term
}

// namesLeader reports whether leader, known of partition p, is one this broker
// names: one of p's replicas, and alive to this broker (nil alive finds
// every broker alive). A leader out of the replicas is stale, a broadcast
// from before the move that took it out completed: Kafka never names one,
// as the record completing a reassignment elects a new leader among the
// replicas kept (PartitionChangeBuilder.build, tryElection). Clients are
// not sent to a fenced broker. A stopping broker that still leads is
// alive, and named.
func namesLeader(p controller.Partition, leader uint64, alive func(uint64) bool) bool {
	return leader != 0 && slices.Contains(p.Replicas, leader) && (alive == nil || alive(leader))
}

// partitionLeadership is what this broker, self, knows of partition p of
// topic t's leadership, whether or not the leader is alive: its own
// replica's view where it leads and serves (the ISR it keeps by Kafka's
// time rule; not a replica of another topic once named t.Name), else
// knownLeader's, which is how the brokers that do not lead it know. A
// leader whose ISR was never broadcast has p's replicas in sync: Kafka
// creates a partition with its live replicas in its ISR
// (ReplicationControlManager.createTopic); the callers take out those dead
// to this broker. It holds only of a leader this broker names
// (namesLeader, with alive): Kafka never shows a partition without a
// leader while live replicas are in its ISR, as it elects one of them.
// Metadata and ListPartitionReassignments answer from it, so that both
// see the same ISR.
func partitionLeadership(board *raftactor.StatusBoard, leaders *partition.Leaders, replicas *partition.Replicas, self uint64,
	alive func(uint64) bool, t *controller.Topic, p controller.Partition) (leader, term uint64, isr []uint64, known bool) {
	if r := partition.Lookup(replicas, partition.TopicPartition{Topic: t.Name, Partition: p.Index}, t.ID); r != nil {
		if v := r.Machine.View(); v.Leader && len(v.ISR) > 0 {
			return v.LeaderID, uint64(v.Epoch), v.ISR, true
		}
	}
	leader, term, isr, known = knownLeader(board, leaders, self, p.Group)
	if isr == nil && namesLeader(p, leader, alive) {
		isr = p.Replicas
	}
	return leader, term, isr, known
}

// knownLeader is what this broker, self, knows of a raft group's
// leadership from its own replica's raft status (board) and its peers'
// broadcasts (leaders, nil for none), whether or not the leader is alive:
// its leader (0 for none), the term (known false when nothing is known)
// and the ISR, which only a leader knows and broadcasts. While a transfer
// of the leadership is under way and the replica knows no leader yet, the
// outgoing one is the leader, at its term (raftactor.GroupStatus.Outgoing).
// The local status wins over a broadcast of an earlier term, and of the
// same term when it is campaigning: after a leader dies its followers know
// there is no leader (they campaign), where the last broadcast still names
// the dead one. A pre-candidate only asks whether it may campaign, without
// a new term, as a follower that missed a few heartbeats or woke from a
// quiet group's sleep does while its leader lives: the broadcast of its
// term still names the leader (one that died is soon followed by a real
// campaign, at a higher term). A follower that knows no leader at the term of a broadcast
// has not heard from that term's leader yet (a replica just restarted) and
// the broadcast knows better, as it does for a halted replica, which knows
// nothing; but never of this broker's own leadership, which its own
// replica knows: it led when it halted, died or stepped down, and leads
// no more.
//
// The ISR is the broadcast's. When only this broker's own replica knows
// the leader of the term, it is the ISR of the latest broadcast, of an
// earlier term, with the new leader in it: Kafka keeps the ISR through a
// clean election (PartitionChangeBuilder.tryElection sets it only for an
// unclean one), and answering the leader alone made every partition look
// under-replicated after a leader change until the first broadcast. It is
// nil when the group's leader was never broadcast (partitionLeadership).
func knownLeader(board *raftactor.StatusBoard, leaders *partition.Leaders, self, group uint64) (leader, term uint64, isr []uint64, known bool) {
	st := board.Get(group)
	unaware := false // knows no leader of its term, and is not campaigning
	if st != nil {
		leader, term = st.Leading()
		known = true
		unaware = leader == 0 && (st.Halted != "" || st.Role == raftactor.RoleName(raft.StateFollower) ||
			st.Role == raftactor.RoleName(raft.StatePreCandidate))
	}
	if leaders == nil {
		return leader, term, isr, known
	}
	li, ok := leaders.Get(group)
	if ok && li.Leader == self && st != nil && st.Halted != "" {
		// This broker's own broadcast, of a replica that led and halted
		// since; one whose actor died (PublishStopped) shows no term, so
		// the broadcast's would otherwise win. The epoch is the last known.
		return 0, max(term, li.Term), nil, true
	}
	if ok && (st == nil || li.Term > term ||
		li.Term == term && (leader != 0 || unaware && li.Leader != self)) {
		return li.Leader, li.Term, li.ISR, true
	}
	if ok && leader != 0 {
		isr = li.ISRWith(leader)
	}
	return leader, term, isr, known
}

// brokerOf returns the advertised endpoint of a registered broker.
func brokerOf(view *controller.State, id uint64) (Broker, bool) {
	b, ok := view.Brokers[id]
	if !ok {
		return Broker{}, false
	}
	kb, err := NewBroker(b.NodeID, b.KafkaAddr)
	return kb, err == nil
}

// currentLeader returns the leader this broker knows of for a partition it
// cannot serve, for KIP-951's hints: none (ok false) when unknown, when it
// is this broker itself, or when it is not registered.
func (s *Service) currentLeader(view *controller.State, topic string, p int32) (b Broker, epoch int32, ok bool) {
	t := view.Topics[topic]
	if t == nil || p < 0 || int(p) >= len(t.Partitions) {
		return Broker{}, 0, false
	}
	leader, term := s.leaderOf(t.Partitions[p])
	if leader == 0 || leader == s.NodeID {
		return Broker{}, 0, false
	}
	b, ok = brokerOf(view, leader)
	return b, int32(term), ok
}

// leaderHints adds KIP-951's hints to a Produce response (v10+): for each
// partition answered NOT_LEADER_OR_FOLLOWER, its current leader and epoch,
// and that leader's endpoint, so that the client moves its batches there
// at once instead of waiting for its next metadata refresh.
func (s *Service) leaderHints(resp *kmsg.ProduceResponse) {
	if resp.Version < 10 {
		return
	}
	view := s.Machine.View()
	added := map[int32]bool{}
	for ti := range resp.Topics {
		rt := &resp.Topics[ti]
		for pi := range rt.Partitions {
			rp := &rt.Partitions[pi]
			if rp.ErrorCode != kerr.NotLeaderForPartition.Code {
				continue
			}
			b, epoch, ok := s.currentLeader(view, rt.Topic, rp.Partition)
			if !ok {
				continue
			}
			rp.CurrentLeader = kmsg.ProduceResponseTopicPartitionCurrentLeader{LeaderID: b.NodeID, LeaderEpoch: epoch}
			if !added[b.NodeID] {
				added[b.NodeID] = true
				resp.Brokers = append(resp.Brokers, kmsg.ProduceResponseBroker{NodeID: b.NodeID, Host: b.Host, Port: b.Port, Rack: b.Rack})
			}
		}
	}
}

// fetchLeaderHints adds KIP-951's hints to a Fetch response (v16+), for
// partitions answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH, so
// that a consumer moves to the new leader without a metadata refresh.
// names are the request's topic names (resolved from ids at v13+).
func (s *Service) fetchLeaderHints(resp *kmsg.FetchResponse, names []string) {
	if resp.Version < 16 {
		return
	}
	view := s.Machine.View()
	added := map[int32]bool{}
	for ti := range resp.Topics {
		rt := &resp.Topics[ti]
		for pi := range rt.Partitions {
			rp := &rt.Partitions[pi]
			if rp.ErrorCode != kerr.NotLeaderForPartition.Code && rp.ErrorCode != kerr.FencedLeaderEpoch.Code {
				continue
			}
			b, epoch, ok := s.currentLeader(view, names[ti], rp.Partition)
			if !ok {
				continue
			}
			rp.CurrentLeader = kmsg.FetchResponseTopicPartitionCurrentLeader{LeaderID: b.NodeID, LeaderEpoch: epoch}
			if !added[b.NodeID] {
				added[b.NodeID] = true
				resp.Brokers = append(resp.Brokers, kmsg.FetchResponseBroker{NodeID: b.NodeID, Host: b.Host, Port: b.Port, Rack: b.Rack})
			}
		}
	}
}
