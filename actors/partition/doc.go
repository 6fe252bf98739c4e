/*
Package partition is a partition's state machine. Every topic partition is
a Raft group; this package holds what its replicas apply the group's entries
to. Today that is plain code driven by its owner; the partition actor that
owns it (Raft apply, produce checks, fetch waiters, checkpoints) will live
here too.

# The log

Log is the partition's Kafka log, in one directory per partition, in
Kafka's layout:

	00000000000000000000.log        record batches, byte for byte as stored
	00000000000000000000.index      sparse offset index (last offset -> position)
	00000000000000000000.timeindex  sparse time index (max timestamp -> last offset)
	00000000000000000000.raft       dense Raft index: per batch its Raft index and term
	log.state                       recovery point and log start, written by Flush

A segment's name is its base offset. Batches are stored as the leader
stamped them (base offset, partition leader epoch = Raft term; both outside
the CRC) and are never rewritten. The .raft file lets the partition's
raft.Storage read any applied entry back from the segments
(EntryByRaftIndex), so a lagging follower catches up with ordinary appends
read from disk, and keeps the segment format able to serve as the Raft log
itself.

The contract with the Raft side:

 1. Append is called with every committed batch, in log order, from one
    goroutine, with the entry's Raft index and term. It asserts base offset
    == LogEnd() and an increasing Raft index; a failure means the state
    machine diverged and the partition must halt. Append never syncs.
 2. Flush makes everything appended before it durable and records a
    recovery point. A checkpoint must only name what a Flush covered.
 3. On restart, Open recovers the files (torn tails are cut, derived
    indexes rebuilt), then the partition calls TruncateTo(checkpointed log
    end) and AdvanceLogStart(checkpointed log start) and replays its WAL.
 4. The log start moves only through AdvanceLogStart, applied from a Raft
    proposal (retention via RetentionPoint, DeleteRecords), so all replicas
    agree. A replica that installs a snapshot beyond its log calls Reset.
 5. Read, EntryByRaftIndex and the timestamp queries run on any goroutine
    concurrently with Append (a Fetch never stalls Raft): see Log for the
    exact guarantee.

Batches are validated with ParseBatch (framing, magic 2, CRC-32C) and, for
client batches, ValidateProduced; compression is passed through untouched.

# Producer state

ProducerState tracks idempotent producers as Kafka does: per producer id
its epoch and its last five batches. The leader checks each produce batch
at propose time against the applied state plus its in-flight proposals
(Check, Proposed); every replica records applied batches (Applied); the
in-flight layer is dropped when leadership is lost (DiscardInFlight). The
applied layer is deterministic and goes into the partition's checkpoint
(MarshalBinary).
*/
package partition
