package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
)

// leaderOf is what this broker knows of a raft group's leader and term: a
// replica's own raft status wins unless a peer announced a later term
// (during an election a replica knows there is no leader, where the last
// broadcast still names the dead one); a halted replica knows nothing. leader is 0 when unknown, or when
// it is a broker dead to this one (not heard from within the session
// timeout): clients are not sent to a fenced broker.
func (s *Service) leaderOf(group uint64) (leader, term uint64) {
	halted := false
	if st := s.Board.Get(group); st != nil {
		leader, term, halted = st.Leader, st.Term, st.Halted != ""
	}
	if s.Leaders != nil {
		// A halted replica knows no leader; a broadcast of its term knows
		// better, but for this broker's own (it led when it halted).
		if li, ok := s.Leaders.Get(group); ok && (li.Term > term || halted && li.Term == term && li.Leader != s.NodeID) {
			leader, term = li.Leader, li.Term
		}
	}
	if leader != 0 && s.Alive != nil && !s.Alive(leader) {
		leader = 0
	}
	return leader, term
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
	leader, term := s.leaderOf(t.Partitions[p].Group)
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
