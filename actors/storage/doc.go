/*
Package storage is the storage actor: the owner of the node's write-ahead
log (WAL), shared by every Raft group of the broker, with pipelined group
commit.

# What it owns

The WAL directory (by convention Dir(dataDir), that is <data_dir>/wal/), its
files and the one open file being appended to. Nothing else in the process
reads or writes them while the actor lives. Startup is

	w, states, err := storage.Open(storage.Dir(dataDir), storage.Options{
		Fsync: true, Log: log, Metrics: storage.NewMetrics(reg),
	})
	// hand states[group] to each group's raft.Storage, then:
	pid, err := sys.Spawn(storage.Kind, storage.Name, storage.NewActor(w, log))

and from then on the actor owns w.

# Messages

It takes:

  - *Persist: one Ready's entries, hard state and snapshot for one group,
    and the group's own files the Persist depends on too (Also: a
    partition's segments, which keep its entries' bodies).
  - *Checkpoint: a group's snapshot, after which its older records can go.
  - *Rewrite: a group's entries, written again as they were, so that the
    older files holding them no longer need a checkpoint past them (a
    follower whose entries cannot commit).
  - *Flush: make everything durable now, and wait for the removal of the
    files retention released (shutdown).

It sends:

  - *Persisted to Persist.ReplyTo, exactly once per Persist.
  - *Flushed to Flush.ReplyTo.
  - *CheckpointRequest to the last ReplyTo seen for a group that keeps the
    oldest WAL file from being deleted.

# The contract

 1. A Persist is atomic: it is one record, and after a crash recovery returns
    all of it or none of it.

 2. Persisted with a nil Err means the Persist's record has reached the OS
    and, when Persist.Sync was set and Options.Fsync is on, the disk. Only
    then may the group append the entries to its raft.Storage and send the
    messages that wait for persistence.

 3. Answers go out in the order the Persists arrived. Persists of one group
    are written in the order that group sent them, so a later Persist's
    entries overwrite an earlier one's from their first index on, exactly as
    in the group's raft log.

 4. Group commit is pipelined. The first Persist after a write makes the
    actor send itself a private flushNow; everything that reached the
    mailbox before it is written to the OS in one go. The fsync runs on a
    goroutine of its own (sync.go), at most one at a time, and reports back
    with a private synced message; while it runs, the actor goes on
    appending and writing, and the next fsync, started when this one ends,
    covers everything written meanwhile. The same job syncs the Also of
    every Persist it covers, in parallel with the WAL's fsync, and a
    Persist with an Also is answered only once a job synced it; a failed
    Sync of an Also fails the Persists it was for, and only them (their
    groups halt), while the WAL goes on. An fsync happens only if a waiting
    Persist asked for it (or a Checkpoint or Forget waits to be durable) and
    Options.Fsync is on. A Persist is answered once its record is written
    and, if it asked, an fsync of its file has covered it; answers still go
    out in arrival order, so one that needs no fsync waits behind an earlier
    one that does. Rolling to a new file waits for the fsync in flight and
    syncs the old file to its end before writing the new one, so that no
    record is answered on the strength of an fsync of a later file.

 5. Persisted with Err set means the group's durable state is unknown and the
    group must halt. After a failed write or fsync the WAL refuses every
    later write and every Persist not yet answered fails: a failed fsync may
    have dropped pages the OS had accepted, so nothing after it can be
    acknowledged. For the same reason fsync results are taken in order: a
    synchronous fsync (a roll, Flush, stopping) first waits for the one in
    flight.

 6. A Checkpoint must never pass the group's durable index (the sender
    ensures it). The actor writes it with the latest hard state it has for
    the group and makes it durable before it counts for deletion.

 7. Files are deleted oldest first and never the one being written. A file
    is deleted once every group with records in it has a durable checkpoint,
    in a later file, at or above the highest index those records mention.
    The unlinks run on a goroutine of the WAL's own, oldest first, with
    one directory fsync per batch, so no Persist waits for one; Flush and
    stopping wait for them. A file released but not yet unlinked when the
    process dies is replayed by recovery and released again.
    When a file is rolled, and whenever the WAL is larger than
    Options.BudgetBytes, the groups holding back the oldest file get a
    CheckpointRequest, at most once per group per roll; one asked before
    for the same file asks for a Rewrite too, which counts once the
    group's next checkpoint after it is durable. A group that holds the
    same oldest file over three rolls and for a minute (a halted one) is
    logged once and counted in StuckGroups until it lets go. The bytes a
    Persist says its group kept in its own files (KeptBytes) count toward
    the file's size and the budget as if they were in the WAL: they are
    what recovery replays after the last checkpoint.

 8. On stopping, and on restarting after a panic, the actor waits for the
    fsync in flight, then writes, fsyncs and answers everything appended
    (and on stopping closes the WAL). Stop it with Poison, not Stop, so that
    the Persists already in its mailbox are written and answered first.

# Recovery

Open reads every file in order and verifies every record (length, CRC-32C,
decoding). A torn or corrupt tail of the last file is cut off on disk at the
last good record, with a warning naming the file and offset; a bad record in
any other file, or a missing file, is an error, because dropping it would
silently lose the records after it. With Options.Fsync on, Open fsyncs the
last file once: a process that crashed may have left records there that the
OS has and the disk may not, and recovery returns them as durable. Replay
per group:

  - an update whose first entry has index i discards the entries at or
    above i, then appends its own;
  - an update's snapshot (one the leader sent) newer than the group's
    replaces it and the whole log, as raft's restore does;
  - a checkpoint newer than the group's snapshot replaces it and discards
    the entries at or below its index;
  - a hard state replaces the previous one.

The result, per group, is its latest hard state, its latest snapshot and the
entries after that snapshot. The record format is described in record.go.
*/
package storage
