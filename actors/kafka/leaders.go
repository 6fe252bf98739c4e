package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
)

// leaderOf is what this broker knows of a raft group's leader and term: a
// replica's own raft status wins unless a peer announced a later term
// (during an election a replica knows there is no leader, where the last
// broadcast still names the dead one). leader is 0 when unknown.
func (s *Service) leaderOf(group uint64) (leader, term uint64) {
	if st := s.Board.Get(group); st != nil {
		leader, term = st.Leader, st.Term
	}
	if s.Leaders == nil {
		return leader, term
	}
	if li, ok := s.Leaders.Get(group); ok && li.Term > term {
		leader, term = li.Leader, li.Term
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
		t := view.Topics[rt.Topic]
		for pi := range rt.Partitions {
			rp := &rt.Partitions[pi]
			if rp.ErrorCode != kerr.NotLeaderForPartition.Code || t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.Partitions) {
				continue
			}
			leader, term := s.leaderOf(t.Partitions[rp.Partition].Group)
			b, ok := brokerOf(view, leader)
			if leader == 0 || leader == s.NodeID || !ok {
				continue
			}
			rp.CurrentLeader = kmsg.ProduceResponseTopicPartitionCurrentLeader{LeaderID: b.NodeID, LeaderEpoch: int32(term)}
			if !added[b.NodeID] {
				added[b.NodeID] = true
				resp.Brokers = append(resp.Brokers, kmsg.ProduceResponseBroker{NodeID: b.NodeID, Host: b.Host, Port: b.Port, Rack: b.Rack})
			}
		}
	}
}
