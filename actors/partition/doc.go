/*
Package partition is a partition's state machine. Every topic partition is
a Raft group; this package holds what its replicas apply the group's entries
to, the leader's produce path, and the replica manager that starts and stops
partition groups.

# Actors

A partition replica is a raftactor group actor (kind "raft", name
"raft/<topic>/<partition>") whose state machine is a Machine, a
raftactor.Extension: it runs inside the group's actor, so produce checks
happen single-threaded with Raft. It takes:

  - Produce: on the ready leader, validates the batches, checks producer
    sequences against applied state plus in-flight batches, stamps the base
    offset (applied log end plus in-flight) and the leader epoch (= term),
    and proposes one entry per batch. acks=1 is answered when the leader has
    persisted the entry, acks=all when it is applied (and, if
    min.insync.replicas is above a majority, matched by that many replicas;
    NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrinks below it first); a
    duplicate of one of the producer's last five batches is answered with
    its original offset.
  - WatchFetch: a Fetch long poll asks to be woken (FetchReady) when the
    high watermark passes its offset, leadership changes, or its deadline.

Readiness barrier: a new leader serves nothing until it has applied an
entry of its own term. Every waiter fails with NOT_LEADER_OR_FOLLOWER when
leadership or the term changes. Apply never rejects and never reads the
clock; a batch whose offset is not the log end halts the partition loudly
(its actor panics, restarts from the checkpoint, and is stopped by its
supervisor if it happens again). Readers see only committed, applied
batches: Fetch reads up to the log's high watermark through the published
View without messaging the actor.

The replica manager (kind "partitions", name "partitions") compares the
controller's applied assignments with the replicas it runs every other tick,
starts new partition groups as its children (every replica bootstraps the
group with the assignment's replicas) and stops deleted ones, removing their
data and tombstoning their group in the WAL. Replicas publishes the running
set for the Kafka connections.

# The log

Log is the partition's Kafka log, in one directory per partition, in
Kafka's layout:

	00000000000000000000.log        record batches, byte for byte as stored
	00000000000000000000.index      sparse offset index (last offset -> position)
	00000000000000000000.timeindex  sparse time index (max timestamp -> last offset)
	00000000000000000000.raft       dense Raft index: per batch its Raft index and term
	log.state                       recovery point and log start (at most the first segment's base), written by Flush

A segment's name is its base offset. Batches are stored as the leader
stamped them (base offset, partition leader epoch = Raft term; both outside
the CRC) and are never rewritten. The .raft file lets the partition's
raft.Storage read any applied entry back from the segments
(EntryByRaftIndex), so a lagging follower catches up with ordinary appends
read from disk.

The segments are the partition's Raft log: a batch is written into them
when Raft persists its entry, before it is committed, and becomes visible
to readers when it is applied. The contract with the Raft side:

 1. Append is called with every batch Raft persists, in log order, from one
    goroutine, with the entry's Raft index and term; it writes at the
    written end (WrittenEnd), above the high watermark, where readers do
    not see it. It asserts base offset == WrittenEnd() and an increasing
    Raft index. When Raft overwrites a conflicting suffix, TruncateRaft
    removes the batches from that index on; it never removes a committed
    one. Commit is called with each batch as it is applied, in order: the
    batch at the high watermark must be that entry's, and the high
    watermark (LogEnd) moves past it. Any of these failing means the state
    machine diverged and the partition must halt. Append never syncs.
 2. Sync makes everything appended before it durable, each batch with its
    Raft index; the persist of the entries is acknowledged only after it.
    Flush does as much and more (index files, a recovery point) for a
    checkpoint, which must only name what a Flush covered.
 3. On restart, Open recovers the files (torn tails are cut, a batch
    without its Raft index entry among them; derived indexes rebuilt) and
    keeps every batch it recovered, the uncommitted tail included, all of
    it visible. The partition then calls SetHighWatermark(checkpointed log
    end) and AdvanceLogStart(checkpointed log start); the batches above
    the checkpoint are uncommitted again, their entries are read back with
    EntryByRaftIndex, and Raft commits or truncates them. Before that the
    partition checks the segments against the checkpoint (BatchInfo: the
    batch ending at its log end must be its last one): TruncateTo or Reset
    drop what a leader's snapshot replaced. An actor restart to a snapshot
    older than a log-start move calls RewindLogStart first.
 4. The log start moves only through AdvanceLogStart, applied from a Raft
    proposal (retention via RetentionPoint, DeleteRecords), so all replicas
    agree. It retires the segments wholly below the new start: readers no
    longer see them, but their files stay, since deleting them is Raft log
    compaction and the WAL may still name their batches. A start at the
    written end rolls the active segment first, so that it is retired too
    and an empty one takes the next batch (a replica that has kept batches
    above the start rolls later, at its size: segment boundaries may differ
    between replicas, their logs do not). The partition calls
    ReleaseSegments(i) once a checkpoint at Raft index i is durable in the
    WAL, which deletes the retired segments whose batches all lie at or
    below i; having retired segments (applying a move, or restoring a
    checkpoint after a restart), it asks its group for that checkpoint at
    its next tick rather than wait for the WAL to grow. Flush records a log
    start no higher than the first segment on disk, so that after a crash
    the restored checkpoint's log end is never below the log start. A
    replica that installs a snapshot beyond its log calls Reset once the
    snapshot is durable.
 5. Read, EntryByRaftIndex and the timestamp queries run on any goroutine
    concurrently with Append (a Fetch never stalls Raft): see Log for the
    exact guarantee.

Batches are validated with ParseBatch (framing, magic 2, CRC-32C) and, for
client batches, as Kafka's LogValidator validates them: ValidateProduced
for the header, then one walk over an uncompressed batch's records that
decodes each and checks its timestamp against the topic's
message.timestamp.before/after.max.ms (validateRecords); a compressed
batch's timestamps are judged by its header, its records are read (as a
stream, checkCompressedCount) only when it claims more records than it
has compressed bytes, and compression is passed through untouched. That
read can take hundreds of milliseconds, which the raft actor must spend
on heartbeats: the Kafka connection makes it (CountRecords) and passes
the verdict in Produce.Count, which the leader answers in its turn.
The leader stamps a client batch before proposing it, recomputing the CRC
that followers check again: LogAppendTime topics get the broker's time;
CreateTime topics the CreateTime type and, uncompressed, the records'
largest timestamp (a compressed batch keeps the producer's maxTimestamp:
produce does not decompress it for that).
The timestamp queries read a compressed batch's records as a stream
(eachRecord): memory bounded by the codec's window whatever the batch
decompresses to, at most maxWalkBytes read, past which they answer for the
batch from its header.

# Producer state

ProducerState tracks idempotent producers as Kafka does: per producer id
its epoch and its last five batches. The leader checks each produce batch
at propose time against the applied state plus its in-flight proposals
(Check, Proposed); every replica records applied batches (Applied); the
in-flight layer is dropped when leadership is lost (DiscardInFlight). The
applied layer is deterministic and goes into the partition's checkpoint
(MarshalBinary).

Producers expire as in Kafka (producer.id.expiration.ms): every
MachineOptions.ProducerExpiryTicks the leader, if an applied producer's
last batch is older than the expiration by its clock, proposes an entry
carrying that cutoff, and every replica forgets the producers of its
applied state at or before it (ExpireProducers). The in-flight layer plays
no part in it, or the replicas would differ.
*/
package partition
