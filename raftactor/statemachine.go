package raftactor

import pb "go.etcd.io/raft/v3/raftpb"

// StateMachine is what a group's committed log drives: the controller's
// metadata, a partition's log. The group's actor calls it from its own
// goroutine only, in log order.
type StateMachine interface {
	// Apply applies one committed normal entry. Data is the proposer's bytes
	// (nil for the leader's empty entry of a new term). Apply never fails:
	// every check happened before the proposal.
	Apply(index, term uint64, data []byte)
	// Snapshot returns the state as of the last applied entry.
	Snapshot() ([]byte, error)
	// Restore replaces the state with a snapshot's. An empty snapshot (index
	// 0, no data) means the empty initial state: a restarted group resets to
	// it when it has never snapshotted, and replays the whole log.
	Restore(snap *pb.Snapshot) error
}

// ConfChangeApplier is a StateMachine that wants to see the group's
// membership changes (the controller keeps the cluster's membership in its
// state). ApplyConfChange is called, in log order with Apply, after raft
// applied the conf change cc at index; cs is the resulting configuration.
type ConfChangeApplier interface {
	ApplyConfChange(index, term uint64, cc *pb.ConfChangeV2, cs *pb.ConfState)
}

// Flusher is a StateMachine whose state lives in files of its own (a
// partition's segments), which Snapshot describes but does not make durable.
// Flush makes durable everything applied before it was called. The group
// calls it on a goroutine of its own, while Apply goes on, before a
// snapshot counts as a checkpoint for the storage: no fsync runs in the
// raft actor. Between checkpoints, snapshots only bound the in-memory log.
type Flusher interface {
	Flush() error
}
