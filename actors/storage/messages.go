package storage

import (
	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Persist asks the storage actor to make one Ready's state durable for one
// group: entries first, then the hard state, in a single WAL record. The
// storage actor answers ReplyTo with Persisted once the record is written (and
// fsynced when Sync is set), grouping every Persist that arrived together into
// one write and one fsync.
type Persist struct {
	Group       uint64
	Incarnation uint64 // of the raft actor that sent it; echoed in Persisted
	Seq         uint64 // per-incarnation sequence number; echoed in Persisted
	Entries     []*pb.Entry
	HardState   *pb.HardState // nil when unchanged
	Snapshot    *pb.Snapshot  // a snapshot received from the leader; nil when none
	Sync        bool          // fsync before answering (raft.Ready.MustSync)
	// KeptBytes is the size of the entry bodies the group's state machine
	// keeps in its own log in place of the WAL (raftactor.LogKeeper). They
	// count toward the WAL file's size and the WAL's budget as if they
	// were written here, so that checkpoints, which bound what recovery
	// replays, come as often as if they were.
	KeptBytes int64
	// Also is a group's own file, or set of files, that the Persist's
	// durability depends on too (the segments that keep its entries'
	// bodies); nil for none. When the Persist asks for an fsync, the
	// storage actor syncs Also in the same group commit as the WAL, and
	// answers with its error if that sync fails.
	Also    Syncer
	ReplyTo *actor.PID
}

// Syncer is what a Persist's Also names: files of a group's own. The
// storage actor calls Sync from the goroutine that fsyncs the WAL, in
// parallel with that fsync and with the other groups' Syncs, never twice
// at once for the same Persist's Also; a Sync makes durable what was
// written before it was called.
type Syncer interface {
	Sync() error
}

// Persisted answers a Persist. Err is set when the write failed; the group
// must then stop: its durable state is unknown.
type Persisted struct {
	Group       uint64
	Incarnation uint64
	Seq         uint64
	Err         error
}

// Checkpoint records that a group's state up to Snapshot's index is captured
// by the snapshot, so WAL records at or below that index are no longer needed
// for the group. It is written after the group's earlier Persists and needs
// no answer. The group's latest hard state is rewritten beside it so that the
// files before it can be deleted.
type Checkpoint struct {
	Group    uint64
	Snapshot *pb.Snapshot
	// ReplyTo, when set, gets Checkpointed once the checkpoint is durable.
	ReplyTo *actor.PID
}

// Checkpointed tells a group that its checkpoint at Index is durable: after
// a crash, recovery starts from it or from a later one, so nothing the
// group keeps for entries at or below Index is needed any more.
type Checkpointed struct {
	Group uint64
	Index uint64
}

// CheckpointRequest is sent by the storage actor to a group's actor (the last
// ReplyTo it saw for that group) when the group holds back the deletion of the
// oldest WAL file. The group answers with a Checkpoint when it can.
type CheckpointRequest struct {
	Group uint64
	// Index is the highest raft index the group's records in the oldest
	// file mention: a checkpoint below it does not release the file.
	Index uint64
	// Rewrite is set when the group was asked before, in an earlier
	// file, and still holds the oldest one back. A group whose applied
	// index stays below Index (a follower's entries that cannot commit
	// while its group has no quorum) then sends a Rewrite of its entries
	// after its checkpoint's index, before that Checkpoint.
	Rewrite bool
}

// Rewrite asks the storage actor to write a group's entries again, exactly
// as they were persisted (a LogKeeper's references, not its bodies), from
// some index to the group's last: the group's checkpoints cannot pass
// them, and once they are durable in the current file, the older files
// that hold them need only a checkpoint below them. The group sends it only
// with no Persist in flight, and sends its Checkpoint after it. Replay takes
// it as any update: the same entries replace themselves. No answer.
type Rewrite struct {
	Group   uint64
	Entries []*pb.Entry
}

// Flush asks the storage actor to fsync whatever it has written and answer
// ReplyTo with Flushed; used on shutdown.
type Flush struct {
	ReplyTo *actor.PID
}

// Flushed answers Flush.
type Flushed struct {
	Err error
}

// Forget tells the storage actor that a group is gone for good (its
// partition was deleted; group ids are never reused). A tombstone record
// makes recovery drop the group's state, and the group's records stop
// holding back the deletion of old WAL files. No answer.
type Forget struct {
	Group uint64
}
