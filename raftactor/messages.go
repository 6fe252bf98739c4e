package raftactor

import (
	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Tick advances the group's logical clock. One shared Ticker sends it to
// every group, numbered: N is the Ticker's count of ticks so far, so a
// group that slept through some (group.go: a follower that just heard from
// its leader) counts them all when the next one comes. A Tick sent by hand
// (the zero Tick) is one tick.
type Tick struct {
	N      uint64
	ticker *Ticker
}

// Step delivers messages from peers to the group.
type Step struct {
	Msgs []*pb.Message
}

// Propose asks the group to append Data to its log. The group answers ReplyTo
// (when set) with Proposed: with an error at once if the proposal was dropped,
// otherwise once the entry is applied on this node, or with ErrTimeout.
type Propose struct {
	ID      uint64 // chosen by the proposer, echoed in Proposed
	Data    []byte
	ReplyTo *actor.PID
}

// Proposed answers a Propose.
type Proposed struct {
	ID    uint64
	Index uint64 // raft index of the applied entry
	Err   error
}

// Unreachable reports that a message to peer To could not be delivered.
type Unreachable struct {
	To uint64
}

// SnapshotStatus reports whether a MsgSnap to peer To was delivered.
type SnapshotStatus struct {
	To     uint64
	Failed bool
}

// Campaign asks the group to start an election now (tests and tools only).
type Campaign struct{}

// TransferLeader asks a leader to hand leadership to To. It is ignored when
// To is stopping (Config.Stopping).
type TransferLeader struct {
	To uint64
}

// StepDown asks a leader to hand its leadership to the voter best placed to
// take it at once, because this broker is about to stop (stepdown.go). A
// group that does not lead, or has no voter to hand over to, ignores it.
type StepDown struct {
	// Alive reports whether a voter can take over now (nil: every voter
	// can); voters that are stopping never do.
	Alive func(id uint64) bool
}

// ProposeConfChange asks the group to change its membership. The group
// answers ReplyTo (when set) with Proposed at once: Err nil means raft took
// the proposal, not that it will be applied; the proposer watches the
// applied membership (raft drops a change proposed while another is still
// unapplied).
type ProposeConfChange struct {
	ID      uint64
	Change  *pb.ConfChangeV2
	ReplyTo *actor.PID
}
