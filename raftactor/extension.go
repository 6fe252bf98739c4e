package raftactor

import (
	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// Extension is a state machine that also takes its own messages inside its
// group's actor: a partition stamps offsets and checks producer sequences
// at propose time, against its applied state plus what it has in flight,
// which only works single-threaded with raft. Every hook runs in the
// group's actor.
type Extension interface {
	StateMachine
	// Receive takes a message the group's actor does not know itself.
	Receive(g *Handle, ctx actor.Context, msg any)
	// Persisted is called once entries this node appended are durable
	// locally (its Persist is answered), before the acknowledgements that
	// waited for them are delivered: acks=1 answers here.
	Persisted(g *Handle, ctx actor.Context, entries []*pb.Entry)
	// Applied is called after each Ready's committed entries went through
	// Apply: acks=all answers and fetch wake-ups happen here.
	Applied(g *Handle, ctx actor.Context)
	// Tick is called on every raft tick, after raft's own.
	Tick(g *Handle, ctx actor.Context)
	// LeaderChanged is called when this node's role, the group's term or
	// the leader this node knows changes, and when its actor stops,
	// restarts or halts (Running is then false). Everything this node had
	// in flight as leader may be lost.
	LeaderChanged(g *Handle, ctx actor.Context)
}

// MatchObserver is an Extension that wants to hear when the leader may
// have learned that a replica matches more of its log without that moving
// the commit index: after it stepped an append response. (The leader's own
// match moves before the entries it covers can be applied, so Applied
// covers it.) Called on followers too, where it has nothing to learn.
type MatchObserver interface {
	Matched(g *Handle, ctx actor.Context)
}

// Handle is what an Extension may do with its group's raft node. It is only
// valid inside the hook it was passed to.
type Handle struct {
	g *groupActor
}

// NodeID is this broker's id.
func (h *Handle) NodeID() uint64 { return h.g.d.cfg.NodeID }

// Group is the raft group id.
func (h *Handle) Group() uint64 { return h.g.d.cfg.Group }

// Running reports whether the raft node is up (not recovering or halted).
func (h *Handle) Running() bool { return h.g.rn != nil }

// IsLeader reports whether this node leads the group now.
func (h *Handle) IsLeader() bool {
	return h.g.rn != nil && h.g.rn.BasicStatus().RaftState == raft.StateLeader
}

// Term is the current raft term.
func (h *Handle) Term() uint64 {
	if h.g.rn == nil {
		return 0
	}
	return h.g.rn.BasicStatus().GetTerm()
}

// Leader is the leader this node knows of, 0 if none.
func (h *Handle) Leader() uint64 {
	if h.g.rn == nil {
		return 0
	}
	return h.g.rn.BasicStatus().Lead
}

// Transferring reports whether this node leads and is handing its
// leadership over (raft drops proposals until the transfer ends, when the
// transferee has won an election or an election timeout has passed).
func (h *Handle) Transferring() bool {
	return h.g.rn != nil && h.g.rn.BasicStatus().LeadTransferee != 0
}

// Applied is the index of the last applied entry.
func (h *Handle) Applied() uint64 { return h.g.d.applied }

// Status is the group's full raft status (allocates: not for hot paths).
func (h *Handle) Status() raft.Status { return h.g.rn.Status() }

// ProposeRaw appends entries with exactly these payloads, in order, as one
// proposal. An error means none of them were appended.
func (h *Handle) ProposeRaw(payloads [][]byte) error {
	if h.g.rn == nil || !h.g.leaderTermDurable() {
		return ErrNotReady
	}
	ents := make([]*pb.Entry, len(payloads))
	for i, p := range payloads {
		ents[i] = &pb.Entry{Data: p}
	}
	return h.g.rn.Step(&pb.Message{Type: pb.MsgProp.Enum(), From: new(h.g.d.cfg.NodeID), Entries: ents})
}

// WithProgress visits the leader's view of every replica, itself included
// (its own match is its durable log end), without allocating; nothing on a
// follower. active reports whether the leader heard from the replica within
// the current election timeout (CheckQuorum clears it at each one).
func (h *Handle) WithProgress(visit func(id, match uint64, active bool)) {
	if h.g.rn == nil {
		return
	}
	h.g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) { visit(id, pr.Match, pr.RecentActive) })
}

// Checkpoint takes a checkpoint now, as if the storage had asked for one
// (storage.CheckpointRequest): the state machine's snapshot at the applied
// index, flushed if it is a Flusher, is handed to the storage, and a
// LogKeeper hears (Release) once it is durable. A state machine that has
// log to give back calls it instead of waiting for the storage to want the
// WAL trimmed, which may never happen on a node that writes nothing more.
// Not for every tick: each one costs a flush and a WAL record. Call it from
// Tick or Receive, not from Applied (the Ready being handled then is not
// finished).
func (h *Handle) Checkpoint(ctx actor.Context) { h.g.checkpoint(ctx, true) }

// TransferLeader asks the leader to hand leadership to id; false when it
// is not asked because id is stopping (Config.Stopping) or the node is not
// running.
func (h *Handle) TransferLeader(id uint64) bool { return h.g.transferLeader(id) }

// Stopping reports whether node id announced that it is stopping
// (Config.Stopping).
func (h *Handle) Stopping(id uint64) bool { return h.g.stopping(id) }

// Restarts returns how many times node id's broker was seen to restart
// (Config.Restarts).
func (h *Handle) Restarts(id uint64) uint64 {
	if r := h.g.d.cfg.Restarts; r != nil {
		return r(id)
	}
	return 0
}

// Reachable reports whether node id is reachable (Config.Reachable; raft's
// RecentActive without it). The node itself always is.
func (h *Handle) Reachable(id uint64) bool {
	if id == h.NodeID() {
		return true
	}
	if r := h.g.d.cfg.Reachable; r != nil {
		return r(id)
	}
	active := false
	h.WithProgress(func(pid, _ uint64, a bool) {
		if pid == id {
			active = a
		}
	})
	return active
}

// ConfState is the group's membership as of the last applied entry.
func (h *Handle) ConfState() *pb.ConfState { return h.g.d.confState }

// ProposeConfChange proposes a membership change. Raft takes one at a time:
// a change proposed while another is not yet applied is dropped (appended
// as an empty entry), so a caller proposes the next only once ConfState
// shows the last.
func (h *Handle) ProposeConfChange(cc *pb.ConfChangeV2) error {
	if h.g.rn == nil || !h.g.leaderTermDurable() {
		return ErrNotReady
	}
	return h.g.rn.ProposeConfChange(cc)
}

// Commit is the group's commit index as this node knows it.
func (h *Handle) Commit() uint64 {
	if h.g.rn == nil {
		return 0
	}
	return h.g.rn.BasicStatus().GetCommit()
}

// ElectionTicks is the group's election timeout in ticks.
func (h *Handle) ElectionTicks() int { return h.g.d.cfg.ElectionTicks }
