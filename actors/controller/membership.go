package controller

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	pb "go.etcd.io/raft/v3/raftpb"
)

// The cluster's membership is the controller group's committed raft
// configuration: the state machine sees every conf change (as a
// raftactor.ConfChangeApplier) and keeps the voters and learners in the
// state, with the brokers that asked to leave and those that left.
//
// A broker joins as a learner (ConfChangeV2 AddLearnerNode, whose context
// is its JoinContext), is promoted to voter once caught up, and leaves by
// being drained (its partition replicas reassigned) and then removed. Node
// ids are never reused: a removed id stays in Removed for good. A removal
// is requested by the brokers whose config dropped the member
// (RemovalRequest) and starts (RemoveBroker) once a majority of the voters
// that stay asked: a removal cannot be undone, and one broker's config is
// too easily wrong (read half-written, or edited by mistake) to decide it.

// JoinContext is the context of the conf change that adds a broker as a
// learner: where its peers and clients reach it, so that it is registered
// by the same entry that adds it.
type JoinContext struct {
	NodeID    uint64 `json:"node_id"`
	RaftAddr  string `json:"raft_addr"`
	KafkaAddr string `json:"kafka_addr"`
}

// RemovalRequest records that broker By asks for the removal of member
// NodeID (a config reload dropped it from By's peers) or, with Withdraw,
// no longer does (By's config lists it again). The controller group's
// leader starts the removal (RemoveBroker) once a majority of the voters
// that stay asked (State.RemovalAgreed). Versions before it read an empty
// command, which changes nothing.
type RemovalRequest struct {
	NodeID   uint64 `json:"node_id"`
	By       uint64 `json:"by"`
	Withdraw bool   `json:"withdraw,omitempty"`
}

// RemoveBroker starts a broker's removal: the controller drains it and then
// removes it from the cluster. Only a member can be removed, and never the
// last voter. The controller group's leader proposes it once the removal
// is agreed (RemovalRequest) and the voters that stay are a live majority;
// versions before RemovalRequest had every broker whose reload dropped the
// member propose it, and such entries apply as they did.
type RemoveBroker struct {
	NodeID uint64 `json:"node_id"`
}

// Reassign sets the target replicas of a partition (Kafka's
// AlterPartitionReassignments). Target nil cancels a reassignment in
// progress: the target goes back to the replicas the partition had before.
type Reassign struct {
	Topic     TopicID  `json:"topic"`
	Partition int32    `json:"partition"`
	Target    []uint64 `json:"target"`
}

// CompleteReassignment is proposed once a partition's raft group's voters
// are exactly the target replicas: the assignment becomes the target. It is
// a no-op unless the reassignment is still the one seen (Moves) and its
// target the one proposed.
type CompleteReassignment struct {
	Group    uint64   `json:"group"`
	Replicas []uint64 `json:"replicas"`
	Moves    uint32   `json:"moves"`
}

// IsMember reports whether id is a voter or learner of the controller group.
func (s *State) IsMember(id uint64) bool {
	return slices.Contains(s.Voters, id) || slices.Contains(s.Learners, id)
}

// IsRemoved reports whether id was removed from the cluster (and may never
// come back).
func (s *State) IsRemoved(id uint64) bool { return slices.Contains(s.Removed, id) }

// IsDraining reports whether id was asked to leave and is still a member.
func (s *State) IsDraining(id uint64) bool { return slices.Contains(s.Draining, id) }

// Staying returns the voters that stay when member id leaves: the voters
// but id and those already draining.
func (s *State) Staying(id uint64) []uint64 {
	var out []uint64
	for _, v := range s.Voters {
		if v != id && !s.IsDraining(v) {
			out = append(out, v)
		}
	}
	return out
}

// RemovalAgreed reports whether a majority of the voters that stay when
// member id leaves (Staying) asked for its removal, and which of them have
// not asked. One broker's request thus removes nobody from three voters or
// more: the operator drops a broker from the peers of every broker that
// stays.
func (s *State) RemovalAgreed(id uint64) (agreed bool, missing []uint64) {
	staying := s.Staying(id)
	asked := 0
	for _, v := range staying {
		if slices.Contains(s.RemovalRequests[id], v) {
			asked++
		} else {
			missing = append(missing, v)
		}
	}
	return 2*asked > len(staying), missing
}

// removalQuorum returns nil if the controller group keeps a live quorum
// once member id leaves: the voters it leaves behind (the voters but id)
// and those that stay for good (Staying, which drops the other draining
// ones too) each have a majority that alive finds alive (all of them when
// alive is nil). Otherwise the removal would leave a group that cannot
// commit, for good if the dead brokers never come back; etcd refuses such
// a removal likewise (--strict-reconfig-check).
func (s *State) removalQuorum(id uint64, alive func(uint64) bool) error {
	for _, set := range [][]uint64{without(s.Voters, []uint64{id}), s.Staying(id)} {
		live := liveOf(set, alive)
		if 2*len(live) <= len(set) {
			return fmt.Errorf("of the voters %v that would remain without broker %d, only %v are alive: removing it now would leave the controller without a quorum",
				set, id, live)
		}
	}
	return nil
}

// liveOf returns the ids that alive finds alive (all of them when alive
// is nil).
func liveOf(ids []uint64, alive func(uint64) bool) []uint64 {
	if alive == nil {
		return ids
	}
	var out []uint64
	for _, id := range ids {
		if alive(id) {
			out = append(out, id)
		}
	}
	return out
}

// canHost reports whether broker id may be given a new replica: a member
// (before the membership is known, a registered broker) not leaving.
func (s *State) canHost(id uint64) bool {
	if s.IsRemoved(id) || s.IsDraining(id) {
		return false
	}
	if len(s.Voters) == 0 {
		_, ok := s.Brokers[id]
		return ok
	}
	return s.IsMember(id)
}

// Placeable returns the brokers new replicas may go to, ordered by id:
// registered voters that are not draining. Before the membership is known
// (a state restored from an older snapshot) every registered broker.
func (s *State) Placeable() []Broker {
	var out []Broker
	for _, b := range s.BrokerList() {
		if len(s.Voters) > 0 && !slices.Contains(s.Voters, b.NodeID) || s.IsDraining(b.NodeID) {
			continue
		}
		out = append(out, b)
	}
	return out
}

// hostingMembers is how many brokers the cluster has to host replicas:
// its voters that are not draining, registered or not, alive or not.
// Before the membership is known (a state restored from an older
// snapshot) it counts the registered brokers.
func (s *State) hostingMembers() int {
	if len(s.Voters) == 0 {
		return len(s.Placeable())
	}
	n := 0
	for _, id := range s.Voters {
		if !s.IsDraining(id) {
			n++
		}
	}
	return n
}

// livePlaceable returns the Placeable brokers that alive finds alive (all
// of them when alive is nil): where automatic placement puts new replicas,
// as Kafka's places them on unfenced brokers only.
func (s *State) livePlaceable(alive func(uint64) bool) []Broker {
	out := s.Placeable()
	if alive == nil {
		return out
	}
	return slices.DeleteFunc(out, func(b Broker) bool { return !alive(b.NodeID) })
}

// Target is the replica set a partition is moving to: its replicas without
// those being removed. It is Replicas when no reassignment is under way.
func (p Partition) Target() []uint64 { return without(p.Replicas, p.Removing) }

// Original is the replica list a partition had before the reassignment
// under way; Replicas when none is.
func (p Partition) Original() []uint64 {
	if p.Origin != nil {
		return p.Origin
	}
	return p.Replicas
}

// Reassigning reports whether a reassignment of the partition is under way.
func (p Partition) Reassigning() bool { return len(p.Adding) > 0 || len(p.Removing) > 0 }

// Bootstraps reports whether replica id founds the partition's raft group
// with its creation replicas as voters when it starts empty. Only the
// creation replicas do, and only until a reassignment completes: any other
// replica joins the running group as a learner, added by its leader; and a
// creation replica that was moved away and back had its data deleted, so
// founding again would fork the group. Before a completion every founder
// founds with the same voters and the same entries, and one that starts
// late cannot win an election against the longer logs of the others.
func (p Partition) Bootstraps(id uint64) bool {
	return p.Completed == 0 && slices.Contains(p.FoundingVoters(), id)
}

// FoundingVoters are the voters a founder bootstraps the partition's raft
// group with (Bootstraps): its creation replicas, the same for every
// founder. Not Replicas, which during a first reassignment names the
// move's target too: a founder starting then (its broker was down when
// the topic was created) would found another group, whose bootstrap
// entries differ from the others' at the same index and term, and never
// catch up. A partition from before Founders were kept has its Replicas.
func (p Partition) FoundingVoters() []uint64 {
	if p.Founders == nil {
		return p.Replicas
	}
	return p.Founders
}

func without(ids, drop []uint64) []uint64 {
	if len(drop) == 0 {
		return ids
	}
	out := make([]uint64, 0, len(ids))
	for _, id := range ids {
		if !slices.Contains(drop, id) {
			out = append(out, id)
		}
	}
	return out
}

// subset reports whether every id of ids is in of.
func subset(ids, of []uint64) bool {
	return !slices.ContainsFunc(ids, func(id uint64) bool { return !slices.Contains(of, id) })
}

// ApplyConfChange implements raftactor.ConfChangeApplier: the controller
// group's membership is the cluster's.
func (sm *StateMachine) ApplyConfChange(index, term uint64, cc *pb.ConfChangeV2, cs *pb.ConfState) {
	cur := sm.view.Load()
	next := *cur
	next.Applied, next.Term = index, term
	next.Voters = slices.Sorted(slices.Values(cs.GetVoters()))
	next.Learners = slices.Sorted(slices.Values(cs.GetLearners()))
	for _, c := range cc.GetChanges() {
		id := c.GetNodeId()
		switch c.GetType() {
		case pb.ConfChangeAddLearnerNode:
			var jc JoinContext
			if json.Unmarshal(cc.GetContext(), &jc) == nil && jc.NodeID == id && jc.RaftAddr != "" {
				next.Brokers = maps.Clone(cur.Brokers)
				next.Brokers[id] = Broker{NodeID: id, KafkaAddr: jc.KafkaAddr, RaftAddr: jc.RaftAddr, RegisteredAt: index}
			}
			sm.log.Info().Uint64("node_id", id).Str("raft_addr", jc.RaftAddr).Uint64("index", index).Msg("broker joined as learner")
		case pb.ConfChangeAddNode:
			sm.log.Info().Uint64("node_id", id).Uint64("index", index).Msg("broker is a voter")
		case pb.ConfChangeRemoveNode:
			if _, ok := next.Brokers[id]; ok {
				next.Brokers = maps.Clone(next.Brokers)
				delete(next.Brokers, id)
			}
			if !slices.Contains(cur.Removed, id) {
				next.Removed = append(slices.Clone(cur.Removed), id)
				slices.Sort(next.Removed)
			}
			next.Draining = without(cur.Draining, []uint64{id})
			next.RemovalRequests = withoutRequests(cur.RemovalRequests, id)
			sm.log.Info().Uint64("node_id", id).Uint64("index", index).Msg("broker removed from the cluster")
		}
	}
	sm.settle(&next, index)
	sm.view.Store(&next)
}

// applyRemoveBroker marks a member as draining.
func (sm *StateMachine) applyRemoveBroker(next, cur *State, index uint64, r *RemoveBroker) {
	if !cur.IsMember(r.NodeID) || cur.IsDraining(r.NodeID) {
		return
	}
	if slices.Contains(cur.Voters, r.NodeID) && len(without(cur.Voters, cur.Draining)) <= 1 {
		sm.log.Warn().Uint64("node_id", r.NodeID).Msg("not draining the last voter")
		return
	}
	next.Draining = append(slices.Clone(cur.Draining), r.NodeID)
	slices.Sort(next.Draining)
	if _, ok := cur.RemovalRequests[r.NodeID]; ok {
		next.RemovalRequests = maps.Clone(cur.RemovalRequests)
		delete(next.RemovalRequests, r.NodeID)
		if len(next.RemovalRequests) == 0 {
			next.RemovalRequests = nil // as a snapshot restores it
		}
	}
	sm.log.Info().Uint64("node_id", r.NodeID).Uint64("index", index).Msg("broker draining")
}

// applyRemovalRequest records or withdraws one broker's request for a
// member's removal. Only a member asks, for another member whose removal
// has not started: a removed broker may still propose before it stops,
// and a request for a draining one is moot.
func (sm *StateMachine) applyRemovalRequest(next, cur *State, index uint64, r *RemovalRequest) {
	asked := cur.RemovalRequests[r.NodeID]
	switch {
	case r.Withdraw:
		if !slices.Contains(asked, r.By) {
			return
		}
		asked = without(asked, []uint64{r.By})
	case slices.Contains(asked, r.By), r.By == r.NodeID, !cur.IsMember(r.By), !cur.IsMember(r.NodeID), cur.IsDraining(r.NodeID):
		return
	default:
		asked = append(slices.Clone(asked), r.By)
		slices.Sort(asked)
	}
	next.RemovalRequests = maps.Clone(cur.RemovalRequests)
	if next.RemovalRequests == nil {
		next.RemovalRequests = map[uint64][]uint64{}
	}
	if next.RemovalRequests[r.NodeID] = asked; len(asked) == 0 {
		delete(next.RemovalRequests, r.NodeID)
	}
	if len(next.RemovalRequests) == 0 {
		next.RemovalRequests = nil // as a snapshot restores it
	}
	msg := "broker removal requested"
	if r.Withdraw {
		msg = "broker removal request withdrawn"
	}
	sm.log.Info().Uint64("node_id", r.NodeID).Uint64("requested_by", r.By).Uint64("index", index).Msg(msg)
}

// withoutRequests returns requests without those for id and without id's
// own: a broker that left neither waits for a removal nor asks for one.
func withoutRequests(requests map[uint64][]uint64, id uint64) map[uint64][]uint64 {
	if len(requests) == 0 {
		return requests
	}
	var out map[uint64][]uint64
	for target, by := range requests {
		if by = without(by, []uint64{id}); target != id && len(by) > 0 {
			if out == nil {
				out = map[uint64][]uint64{}
			}
			out[target] = by
		}
	}
	return out
}

// applyReassign starts, changes or cancels a partition's reassignment.
// Replicas become the target followed by every replica leaving: all the
// brokers that may be in the group's raft configuration now (the replicas
// before this command, or the original ones of a move that waits its
// turn), so that none is stopped and deleted while it may still be a
// voter; only CompleteReassignment, once the group's voters are the
// target, drops them. Adding (target less the original replicas) and
// Removing are as Kafka reports them. A target naming a broker that cannot
// take a replica (not a member, removed, draining) is ignored: it was
// valid when proposed, and the membership changed since.
func (sm *StateMachine) applyReassign(next, cur *State, index uint64, r *Reassign) {
	t := cur.TopicByID(r.Topic)
	if t == nil || r.Partition < 0 || int(r.Partition) >= len(t.Partitions) {
		return
	}
	p := t.Partitions[r.Partition]
	orig := p.Original()
	target := r.Target
	if target == nil {
		target = orig
	}
	for _, id := range target {
		if !slices.Contains(p.Replicas, id) && !cur.canHost(id) {
			sm.log.Warn().Str("topic", t.Name).Int32("partition", p.Index).Uint64("node_id", id).Uint64("index", index).
				Msg("reassignment ignored: its target names a broker that is no longer a member")
			return
		}
	}
	// The brokers that may be in the group's raft configuration: those of
	// p, unless its move is waiting its turn, carried out as the
	// replicas it had before (InEffect), whose other replicas never
	// started. Below ClusterLevel 2 no broker records which moves ran.
	present := p.Replicas
	if cur.ClusterLevel >= movesPerBrokerLevel && p.Reassigning() && !p.Running {
		present = orig
	}
	np := p
	np.Replicas = slices.Clone(target)
	np.Adding, np.Removing, np.Origin, np.Running, np.Cancelled = nil, nil, nil, false, false
	for _, id := range present {
		if !slices.Contains(target, id) {
			np.Replicas = append(np.Replicas, id)
			np.Removing = append(np.Removing, id)
		}
	}
	for _, id := range target {
		if !slices.Contains(orig, id) {
			np.Adding = append(np.Adding, id)
		}
	}
	if np.Reassigning() {
		np.Origin = slices.Clone(orig)
		np.Cancelled = r.Target == nil
		np.Moves = p.Moves + 1
		np.MoveSeq = p.MoveSeq
		// A running move that started a replica beyond the ones it had
		// keeps its turn, whatever its new target adds: holding it would
		// stop and delete replicas that may be voters of its group now.
		// One that started none (a shrink) waits its turn again, as a new
		// move, so that a new target cannot add past the bound.
		np.Running = p.Running && !subset(p.Replicas, orig)
		if !p.Reassigning() {
			np.MoveSeq = cur.NextMove
			next.NextMove = cur.NextMove + 1
		}
	}
	sm.replacePartition(next, cur, t, np)
	sm.log.Info().Str("topic", t.Name).Int32("partition", p.Index).Uints64("replicas", np.Replicas).
		Uints64("adding", np.Adding).Uints64("removing", np.Removing).Uint64("index", index).Msg("partition reassignment")
}

// applyComplete ends a reassignment whose target the partition's group has
// reached.
func (sm *StateMachine) applyComplete(next, cur *State, index uint64, c *CompleteReassignment) {
	for _, t := range cur.Topics {
		for _, p := range t.Partitions {
			if p.Group != c.Group {
				continue
			}
			if !p.Reassigning() || !slices.Equal(p.Target(), c.Replicas) || p.Moves != c.Moves {
				return
			}
			np := p
			np.Replicas, np.Adding, np.Removing, np.Origin = slices.Clone(c.Replicas), nil, nil, nil
			np.Completed = p.Completed + 1
			np.Running, np.Cancelled = false, false
			sm.replacePartition(next, cur, t, np)
			sm.log.Info().Str("topic", t.Name).Int32("partition", p.Index).Uints64("replicas", np.Replicas).Uint64("index", index).Msg("partition reassignment complete")
			return
		}
	}
}

// replacePartition publishes a copy of t with partition p replaced.
func (sm *StateMachine) replacePartition(next, cur *State, t *Topic, p Partition) {
	nt := *t
	nt.Partitions = slices.Clone(t.Partitions)
	nt.Partitions[p.Index] = p
	next.Topics = maps.Clone(cur.Topics)
	next.Topics[t.Name] = &nt
	next.reindexTopics(cur, t.Name)
}

// Reassignments returns every partition with a reassignment under way, by
// topic name and partition: the moving partitions the state indexes
// (movesInOrder), not a walk of every partition.
func (s *State) Reassignments() []PartitionRef {
	out := slices.Clone(s.movesInOrder())
	slices.SortFunc(out, func(a, b PartitionRef) int {
		return cmp.Or(cmp.Compare(a.Topic.Name, b.Topic.Name), cmp.Compare(a.Partition.Index, b.Partition.Index))
	})
	return out
}

// PartitionRef is one partition with its topic.
type PartitionRef struct {
	Topic     *Topic
	Partition Partition
}
