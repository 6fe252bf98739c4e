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

// LogKeeper is a StateMachine that keeps the bodies of its entries in a log
// of its own (a partition's segments are its Raft log), so that every body
// is written to disk once: the WAL then carries only the entries' headers
// and small references, and the hard states. A Persist that carries kept
// entries names the keeper as its Also: the storage actor syncs it in the
// same group commit as the WAL before answering.
type LogKeeper interface {
	// Keep writes entries raft is about to persist into the state
	// machine's log, in raft order, without syncing; entries from index i
	// on replace whatever it kept at i or above (a follower's conflicting
	// suffix). It returns what the WAL is to hold in their place: as many
	// entries, the ones whose bodies the log now keeps replaced by new
	// entries with references that Recover resolves, the others returned
	// as they came (they need no Sync). An error halts the group. Called
	// on the group's actor.
	Keep(ents []*pb.Entry) ([]*pb.Entry, error)
	// Sync makes durable everything Keep wrote before it was called. The
	// storage actor's fsync goroutine calls it (storage.Syncer), at most
	// one at a time, while Keep and Apply go on. An error fails the
	// Persists it was for, and so halts the group.
	Sync() error
	// Discard forgets what Keep wrote beyond the applied state: a leader's
	// snapshot, now durable, replaces the whole log. It is called just
	// before Restore of that snapshot. The entries that follow the
	// snapshot reach the WAL whole and are given to Keep only after it.
	Discard() error
	// Recover gives back, at startup and after Restore of the recovered
	// snapshot, the bodies of the entries the WAL returned: it resolves
	// their references from the state machine's log. It returns the
	// longest prefix it could resolve: a body that a crash took before it
	// was synced belonged to an entry nobody was told was durable, so it
	// and every entry after it are dropped (the keeper logs it), and the
	// log forgets what it holds beyond that prefix.
	Recover(ents []*pb.Entry) ([]*pb.Entry, error)
	// References returns what Keep returned for entries it kept before
	// and still keeps, without writing anything: the WAL's form of
	// entries the group writes to the WAL again (storage.Rewrite) when
	// its checkpoints cannot pass them. Called on the group's actor.
	References(ents []*pb.Entry) ([]*pb.Entry, error)
	// Release tells the keeper that a checkpoint at index is durable:
	// recovery never again needs what it keeps for entries at or below
	// index, which it may now delete (a partition's segments that
	// retention left below its log start). An error halts the group.
	Release(index uint64) error
}
