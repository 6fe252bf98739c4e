package raftactor

import (
	"slices"

	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
)

// A partition-like group (a partition, an offsets-topic partition) moves to
// new replicas by changing its raft membership one step at a time, driven
// by its leader: the assignment says which replicas the group should have
// (Kafka's view during a reassignment: the target followed by the original
// replicas being removed), and the leader brings its ConfState there.
//
//  1. a member that is not an assigned replica is removed (a cancelled
//     add, a stale member), and so is a learner being removed;
//  2. a target replica that is not a member is added as a learner;
//  3. a learner of the target that has caught up is promoted;
//  4. once every target replica is a voter, each voter being removed is
//     removed; the leader itself hands its leadership to a caught-up
//     target voter (the first target replica preferred) instead, and the
//     new leader removes it.
//
// A voter is removed (in 1 and 4) only if the voters left keep a majority
// of reachable ones (Handle.Reachable: a frame from its broker lately),
// and unreachable voters go first: removing a live voter while another is
// down would take the group's quorum away until the down one came back.
//
// Each step is a ConfChangeV2 with one change, which raft applies without
// a joint configuration. Raft drops a conf change proposed while another
// is unapplied, so a step is proposed only once the previous one shows in
// the ConfState, or after a few election timeouts. Every step is decided
// from the applied ConfState and the assignment alone, so a new leader
// resumes where the old one stopped.

// Reconciler carries out a group's reassignment on its leader. The zero
// value is ready; Log is where it reports its steps.
type Reconciler struct {
	Log zerolog.Logger

	calls     uint64
	term      uint64
	pending   step // proposed and not yet seen in the ConfState
	pendingAt uint64
	peers     []peerProgress // scratch
}

// stepKind is what a reconciliation step does.
type stepKind uint8

const (
	stepNone stepKind = iota
	stepRemove
	stepAddLearner
	stepPromote
	stepTransfer
)

func (k stepKind) String() string {
	switch k {
	case stepRemove:
		return "remove"
	case stepAddLearner:
		return "add-learner"
	case stepPromote:
		return "promote"
	case stepTransfer:
		return "transfer-leadership"
	}
	return "none"
}

// step is one membership change (or leadership transfer) of node.
type step struct {
	kind stepKind
	node uint64
}

// peerProgress is the leader's view of one member: its match, raft's
// RecentActive, and whether it is reachable (Handle.Reachable).
type peerProgress struct {
	id, match uint64
	active    bool
	reachable bool
}

// pendingTimeouts is how many election timeouts a step may take to show
// in the ConfState before it is taken as lost and decided again.
const pendingTimeouts = 3

// InConf reports whether the group's voters are exactly target, with no
// learners and no joint configuration: the end of a reassignment to target,
// and what a group outside one looks like. It does not allocate, so that
// idle groups can check it on every tick.
func InConf(cs *pb.ConfState, target []uint64) bool {
	if len(cs.GetLearners()) > 0 || len(cs.GetVotersOutgoing()) > 0 || len(cs.GetLearnersNext()) > 0 {
		return false
	}
	voters := cs.GetVoters()
	if len(voters) != len(target) {
		return false
	}
	for _, id := range target {
		if !slices.Contains(voters, id) {
			return false
		}
	}
	return true
}

// Target is the voters a group's reassignment ends with: replicas without
// the removing ones among them, in a new slice.
func Target(replicas, removing []uint64) []uint64 {
	return slices.DeleteFunc(slices.Clone(replicas), func(id uint64) bool { return slices.Contains(removing, id) })
}

// Reconcile takes the next step towards the assignment (replicas, and the
// removing ones among them) on the leader, unless a step is still under
// way, and reports whether the group's voters are exactly the target
// (replicas without removing), with no learners. Call it from the
// Extension's Tick hook while this node leads, whenever a reassignment is
// under way or the ConfState does not match the replicas (InConf).
func (r *Reconciler) Reconcile(h *Handle, replicas, removing []uint64) bool {
	r.calls++
	if !h.IsLeader() {
		r.pending = step{}
		return false
	}
	if t := h.Term(); t != r.term {
		r.term, r.pending = t, step{}
	}
	cs := h.ConfState()
	target := Target(replicas, removing)
	if r.pending.kind != stepNone {
		timeout := uint64(pendingTimeouts * max(h.ElectionTicks(), 1))
		if !shown(cs, r.pending) && r.calls-r.pendingAt < timeout {
			return false
		}
		r.pending = step{}
	}
	if InConf(cs, target) {
		return true
	}
	r.peers = r.peers[:0]
	h.WithProgress(func(id, match uint64, active bool) {
		r.peers = append(r.peers, peerProgress{id: id, match: match, active: active})
	})
	for i := range r.peers {
		r.peers[i].reachable = h.Reachable(r.peers[i].id)
	}
	s := nextStep(cs, h.NodeID(), h.Commit(), replicas, target, r.peers)
	if s.kind == stepNone {
		return false
	}
	r.take(h, s, target)
	return false
}

// take proposes s.
func (r *Reconciler) take(h *Handle, s step, target []uint64) {
	ev := r.Log.Info().Str("step", s.kind.String()).Uint64("node_id", s.node).Uints64("voters", h.ConfState().GetVoters()).
		Uints64("learners", h.ConfState().GetLearners()).Uints64("target", target).Uint64("term", r.term)
	if s.kind == stepTransfer {
		h.TransferLeader(s.node)
		r.pending, r.pendingAt = s, r.calls
		ev.Msg("reassignment: leader being removed hands over its leadership")
		return
	}
	t := pb.ConfChangeRemoveNode
	switch s.kind {
	case stepAddLearner:
		t = pb.ConfChangeAddLearnerNode
	case stepPromote:
		t = pb.ConfChangeAddNode
	}
	cc := &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: t.Enum(), NodeId: new(s.node)}}}
	if err := h.ProposeConfChange(cc); err != nil {
		// Raft refuses while a leadership transfer is under way; the next
		// tick tries again, so this is not worth a warning each time.
		r.Log.Debug().Err(err).Str("step", s.kind.String()).Uint64("node_id", s.node).Msg("reassignment: conf change not proposed")
		return
	}
	r.pending, r.pendingAt = s, r.calls
	ev.Msg("reassignment: conf change proposed")
}

// shown reports whether s is reflected in cs.
func shown(cs *pb.ConfState, s step) bool {
	voter, learner := slices.Contains(cs.GetVoters(), s.node), slices.Contains(cs.GetLearners(), s.node)
	switch s.kind {
	case stepAddLearner:
		return learner || voter
	case stepPromote:
		return voter
	case stepRemove:
		return !voter && !learner
	}
	return false // a transfer shows as this node no longer leading
}

// nextStep decides the next step of the leader self towards the
// assignment (replicas, and their Target), given the applied ConfState, the
// leader's commit index and its view of every member; stepNone when there
// is nothing to do now (done, in a joint configuration raft is leaving by
// itself, or waiting for a learner to catch up).
func nextStep(cs *pb.ConfState, self, commit uint64, replicas, target []uint64, peers []peerProgress) step {
	if len(cs.GetVotersOutgoing()) > 0 || len(cs.GetLearnersNext()) > 0 {
		return step{}
	}
	voters, learners := cs.GetVoters(), cs.GetLearners()
	caughtUp := func(id uint64) bool {
		for _, p := range peers {
			if p.id == id {
				return p.active && p.match >= commit
			}
		}
		return false
	}
	reachable := func(id uint64) bool {
		if id == self {
			return true
		}
		for _, p := range peers {
			if p.id == id {
				return p.reachable
			}
		}
		return false
	}
	// removeVoter picks the voter to remove among those leaving (not self):
	// an unreachable one first, and a reachable one only if the voters left
	// still have a reachable majority. Removing a live voter while another
	// is down can leave the group without a quorum, offline until the down
	// one comes back, where Kafka, dropping replicas the moment the target
	// is in sync, keeps the partition available.
	removeVoter := func(leaving func(id uint64) bool) step {
		for _, id := range voters {
			if id != self && leaving(id) && !reachable(id) {
				return step{stepRemove, id}
			}
		}
		live := 0
		for _, id := range voters {
			if reachable(id) {
				live++
			}
		}
		for _, id := range voters {
			if id != self && leaving(id) && 2*(live-1) > len(voters)-1 {
				return step{stepRemove, id}
			}
		}
		return step{}
	}
	// 1. members that are no longer wanted.
	for _, id := range learners {
		if !slices.Contains(target, id) {
			return step{stepRemove, id}
		}
	}
	if s := removeVoter(func(id uint64) bool { return !slices.Contains(replicas, id) }); s.kind != stepNone {
		return s
	}
	// 2. target replicas that are not members yet.
	for _, id := range target {
		if !slices.Contains(voters, id) && !slices.Contains(learners, id) {
			return step{stepAddLearner, id}
		}
	}
	// 3. learners of the target that caught up.
	for _, id := range target {
		if slices.Contains(learners, id) && caughtUp(id) {
			return step{stepPromote, id}
		}
	}
	// 4. the replicas leaving, once every target replica votes.
	for _, id := range target {
		if !slices.Contains(voters, id) {
			return step{}
		}
	}
	leaving := func(id uint64) bool { return !slices.Contains(target, id) }
	if slices.ContainsFunc(voters, func(id uint64) bool { return id != self && leaving(id) }) {
		return removeVoter(leaving)
	}
	if !slices.Contains(target, self) {
		for _, id := range target {
			if caughtUp(id) {
				return step{stepTransfer, id}
			}
		}
	}
	return step{}
}
