package storage

import (
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
)

// Kind and Name are the storage actor's kind and stable name for
// actors.System.Spawn.
const (
	Kind = "storage"
	Name = "storage"
)

// flushNow is the message the storage actor sends itself to end a batch:
// every message that reached the mailbox before it is written to the OS
// together.
type flushNow struct{}

// synced is the message the fsync goroutine sends the storage actor when
// the fsync with this id has ended.
type synced struct{ id uint64 }

// waiter is a Persist whose record is appended and whose answer waits for
// the record to be written and, if it asked, fsynced.
type waiter struct {
	p    *Persist
	at   position // the end of its record
	sync bool     // it waits for an fsync
	err  error    // the append, or the sync of also, failed for this Persist alone
	came time.Time
	// also is the Persist's Also when it waits for an fsync; alsoJob the
	// sync job that syncs it, and alsoDone set once one did.
	also     Syncer
	alsoJob  uint64
	alsoDone bool
}

// storageActor owns the WAL. See the package documentation for its contract.
type storageActor struct {
	w   *WAL
	log zerolog.Logger

	// waiting holds the Persists not yet answered, in arrival order.
	waiting   []waiter
	scheduled bool // a flushNow is in the mailbox

	// replyTo is the last actor seen persisting each group: where
	// CheckpointRequests go.
	replyTo map[uint64]*actor.PID
	// checkpointReply is, per group, the ReplyTo of its last Checkpoint:
	// where Checkpointed goes.
	checkpointReply map[uint64]*actor.PID
	// asked is, per group, the file being written when the group was last
	// asked to checkpoint: it is asked at most once per roll.
	asked   map[uint64]uint64
	lastSeq uint64
	// holds are the groups seen holding back the oldest file, and since
	// when, until they no longer do.
	holds map[uint64]*hold
}

// hold is a group seen holding back the oldest WAL file.
type hold struct {
	oldest uint64 // the oldest file
	seq    uint64 // the file being written when the group was first seen holding it
	since  time.Time
	stuck  bool // reported: it held the file over stuckRolls rolls and stuckFor
}

// A group is reported as stuck once it has held back the same oldest file
// over stuckRolls rolls, asked to checkpoint at each, and for stuckFor: a
// group that can checkpoint releases it at the first ask, or at the second
// with a rewrite, but under a flood of writes with small files three rolls
// take less time than a checkpoint.
const (
	stuckRolls = 3
	stuckFor   = time.Minute
)

// NewActor returns the producer of the storage actor, which owns w from then
// on: nothing else may call w's methods, and the actor closes w when it
// stops (after which w.Close returns how that went). A restart (after a
// panic) keeps w and everything appended to it.
func NewActor(w *WAL, log zerolog.Logger) actor.Producer {
	return func() actor.Actor {
		return &storageActor{
			w:               w,
			log:             log,
			replyTo:         make(map[uint64]*actor.PID),
			checkpointReply: make(map[uint64]*actor.PID),
			asked:           make(map[uint64]uint64),
			holds:           make(map[uint64]*hold),
		}
	}
}

// Receive implements actor.Actor.
func (a *storageActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.lastSeq = a.w.seq()
		sys, self := ctx.ActorSystem(), ctx.Self()
		a.w.setNotify(func(id uint64) { sys.Root.Send(self, &synced{id: id}) })
		// Recovery may have left files that are already covered, or a WAL
		// over its budget.
		a.maintain(ctx)
	case *Persist:
		a.persist(ctx, m)
	case *Checkpoint:
		a.checkpoint(ctx, m)
	case *Rewrite:
		if err := a.w.AppendRewrite(m.Group, m.Entries); err != nil {
			// No one waits for a rewrite; the group is asked again later.
			a.log.Error().Err(err).Uint64("raft_group", m.Group).Msg("appending a rewrite failed")
		} else {
			a.schedule(ctx)
		}
	case *Forget:
		delete(a.replyTo, m.Group)
		delete(a.checkpointReply, m.Group)
		if err := a.w.AppendForget(m.Group); err != nil {
			a.log.Error().Err(err).Uint64("raft_group", m.Group).Msg("appending a tombstone failed")
		} else {
			a.schedule(ctx)
		}
	case *flushNow:
		a.scheduled = false
		a.w.flush() // a failure is sticky: advance answers it
		a.advance(ctx)
	case *synced:
		a.w.reap(m.id) // a failure is sticky: advance answers it
		a.advance(ctx)
	case *Flush:
		err := a.commit(ctx)
		// Files released by retention are gone too once Flushed says so;
		// one that could not be removed is not a durability failure (the
		// remover logs it).
		a.w.waitRemoved()
		if m.ReplyTo != nil {
			ctx.Send(m.ReplyTo, &Flushed{Err: err})
		}
	case *actor.Restarting:
		// The records of the waiting Persists are whole in the buffer
		// (a record is appended in one Write): commit them rather than
		// leave their groups waiting for an answer that never comes.
		a.commit(ctx)
	case *actor.Stopping:
		a.commit(ctx)
		if err := a.w.Close(); err != nil {
			a.log.Error().Err(err).Msg("closing the WAL failed")
		} else {
			a.log.Info().Msg("WAL closed")
		}
	}
}

func (a *storageActor) persist(ctx actor.Context, p *Persist) {
	if p.ReplyTo != nil {
		a.replyTo[p.Group] = p.ReplyTo
	}
	err := a.w.AppendUpdate(p.Group, p.Entries, p.HardState, p.Snapshot)
	if err == nil {
		a.w.countKept(p.KeptBytes)
	}
	wt := waiter{p: p, at: a.w.end(), sync: p.Sync && a.w.opts.Fsync, err: err, came: time.Now()}
	if wt.sync {
		wt.also = p.Also
	}
	a.waiting = append(a.waiting, wt)
	a.schedule(ctx)
}

func (a *storageActor) checkpoint(ctx actor.Context, c *Checkpoint) {
	if c.ReplyTo != nil {
		a.checkpointReply[c.Group] = c.ReplyTo
	}
	if err := a.w.AppendCheckpoint(c.Group, c.Snapshot); err != nil {
		// No one waits for a checkpoint; the group is asked again later.
		a.log.Error().Err(err).Uint64("raft_group", c.Group).Msg("appending a checkpoint failed")
		return
	}
	// The WAL syncs a batch with a checkpoint in it whatever the Persists
	// asked for: a checkpoint counts only once it is durable.
	a.schedule(ctx)
}

// schedule makes sure a flushNow is queued behind what is in the mailbox.
func (a *storageActor) schedule(ctx actor.Context) {
	if !a.scheduled {
		a.scheduled = true
		ctx.Send(ctx.Self(), &flushNow{})
	}
}

// advance moves the pipeline on after a write or an fsync: it answers the
// Persists that are now written and durable enough, starts the next fsync
// if anything waits for one and none is in flight, and runs retention.
func (a *storageActor) advance(ctx actor.Context) {
	a.settleReaped()
	a.answer(ctx)
	if a.needSync() {
		also, of := a.alsoToSync()
		job, err := a.w.startSync(also)
		if err != nil {
			a.answer(ctx) // the write before the fsync failed
		}
		if job != nil {
			for _, i := range of {
				a.waiting[i].alsoJob = job.id
			}
		}
	}
	if a.w.err == nil {
		a.maintain(ctx)
	}
}

// commit writes and fsyncs everything now, on the actor's goroutine, and
// answers every waiter.
func (a *storageActor) commit(ctx actor.Context) error {
	a.w.wait()
	a.settleReaped()
	also, _ := a.alsoToSync() // none with fsync off: only a waiter that syncs has an Also
	for _, s := range also {
		a.settleSync(s, 0, s.Sync())
	}
	err := a.w.Commit(true)
	a.answer(ctx)
	if err == nil {
		a.maintain(ctx)
	}
	return err
}

// needSync reports whether an fsync is wanted: a waiter asked for one, or a
// checkpoint or tombstone counts only once durable.
func (a *storageActor) needSync() bool {
	if len(a.w.pending) > 0 {
		return true
	}
	for _, wt := range a.waiting {
		if wt.sync && wt.err == nil {
			return true
		}
	}
	return false
}

// alsoToSync returns the distinct Also of the waiters that wait for theirs
// to be synced and no job syncs yet, and those waiters' indexes.
func (a *storageActor) alsoToSync() ([]Syncer, []int) {
	var also []Syncer
	var of []int
	for i, wt := range a.waiting {
		if wt.also == nil || wt.alsoDone || wt.alsoJob != 0 || wt.err != nil {
			continue
		}
		of = append(of, i)
		if !slices.Contains(also, wt.also) {
			also = append(also, wt.also)
		}
	}
	return also, of
}

// settleReaped records the outcome of the Syncs of the jobs reaped since
// the last call in the waiters they covered.
func (a *storageActor) settleReaped() {
	for _, job := range a.w.takeReaped() {
		a.settleAlso(job)
	}
}

// settleAlso records the outcome of job's Syncs in the waiters it covered.
func (a *storageActor) settleAlso(job *syncJob) {
	for k, s := range job.also {
		a.settleSync(s, job.id, job.alsoErr[k])
	}
}

// settleSync records err, the outcome of a Sync of s by the job with id job
// (0: one run on the actor), in the waiters that waited for it.
func (a *storageActor) settleSync(s Syncer, job uint64, err error) {
	for i := range a.waiting {
		wt := &a.waiting[i]
		if wt.also != s || wt.alsoJob != job || wt.alsoDone || wt.err != nil {
			continue
		}
		if err != nil {
			wt.err = fmt.Errorf("sync group %d's own files: %w", wt.p.Group, err)
			continue
		}
		wt.alsoDone = true
	}
}

// answer sends Persisted, in arrival order, to the waiters whose records are
// written and, when they asked, fsynced. Once the WAL has failed, every
// waiter left gets its error: a failed fsync may have dropped pages the OS
// had accepted, so nothing not acknowledged by then can be.
func (a *storageActor) answer(ctx actor.Context) {
	written, durable, failure := a.w.written(), a.w.durable(), a.w.err
	n, failed := 0, 0
	cause := failure
	for ; n < len(a.waiting); n++ {
		wt := a.waiting[n]
		err := wt.err
		if err == nil {
			err = failure
		}
		if err == nil && (written.before(wt.at) || wt.sync && durable.before(wt.at) || wt.also != nil && !wt.alsoDone) {
			break // it waits, and so do the ones after it
		}
		if err != nil {
			failed++
			if cause == nil {
				cause = err
			}
		}
		if len(wt.p.Entries) > 0 {
			a.w.metrics.observePersist(time.Since(wt.came))
		}
		if wt.p.ReplyTo != nil {
			ctx.Send(wt.p.ReplyTo, &Persisted{Group: wt.p.Group, Incarnation: wt.p.Incarnation, Seq: wt.p.Seq, Err: err})
		}
	}
	if failed > 0 {
		a.log.Error().Err(cause).Int("persists_failed", failed).
			Int("answered", n).Msg("WAL write failed; the groups of the failed persists halt")
	}
	for _, p := range a.w.takeSettled() {
		if pid := a.checkpointReply[p.group]; pid != nil && !p.forget {
			ctx.Send(pid, &Checkpointed{Group: p.group, Index: p.mark.index})
		}
	}
	rest := copy(a.waiting, a.waiting[n:])
	clear(a.waiting[rest:])
	a.waiting = a.waiting[:rest]
}

// maintain deletes covered files and asks the groups that hold back the
// oldest file to checkpoint, once per group per roll, when a file was just
// rolled or the WAL is over budget.
func (a *storageActor) maintain(ctx actor.Context) {
	released := a.w.deleteCovered() // the WAL's remover logs its failures
	seq := a.w.seq()
	rolled := seq != a.lastSeq
	a.lastSeq = seq
	if !rolled && !a.w.overBudget() {
		if released > 0 {
			a.trackHolds(a.w.holdingBack(), seq)
		}
		return
	}
	holding := a.w.holdingBack()
	a.trackHolds(holding, seq)
	var asked []uint64
	for _, group := range holding {
		pid := a.replyTo[group]
		if pid == nil || a.asked[group] == seq {
			continue
		}
		a.asked[group] = seq
		ctx.Send(pid, &CheckpointRequest{Group: group, Index: a.w.segs[0].groups[group], Rewrite: a.holds[group].seq < seq})
		a.w.metrics.checkpointRequested()
		asked = append(asked, group)
	}
	if len(asked) > 0 {
		a.log.Info().Str("oldest_file", a.w.oldestName()).Uints64("raft_groups", asked).
			Int64("wal_bytes", a.w.total).Msg("asked groups holding back the oldest WAL file to checkpoint")
	}
}

// trackHolds notes which groups hold back the oldest file (holding), with
// seq the file being written. A group that has held the same file over
// stuckRolls rolls and for stuckFor does not checkpoint (it halted, or cannot
// checkpoint past its records): it is logged once, with when it was first
// seen, and counted in the stuck groups metric until it lets the file go.
// Holds are checked when a file rolls (or the WAL is over budget), so a
// group past both floors is reported at the next roll. Nothing else can
// release the file: the WAL grows until the group recovers or the broker
// restarts.
func (a *storageActor) trackHolds(holding []uint64, seq uint64) {
	oldest := a.w.segs[0].seq
	now := a.w.opts.now()
	for group, h := range a.holds {
		if h.oldest == oldest && slices.Contains(holding, group) {
			continue
		}
		delete(a.holds, group)
		if h.stuck {
			a.log.Info().Uint64("raft_group", group).Time("since", h.since).Dur("held_for_ms", now.Sub(h.since)).
				Msg("raft group no longer holds back WAL files")
		}
	}
	stuck := 0
	for _, group := range holding {
		h := a.holds[group]
		if h == nil {
			h = &hold{oldest: oldest, seq: seq, since: now}
			a.holds[group] = h
		}
		if seq-h.seq < stuckRolls || now.Sub(h.since) < stuckFor {
			continue
		}
		stuck++
		if !h.stuck {
			h.stuck = true
			a.log.Error().Uint64("raft_group", group).Time("since", h.since).Uint64("rolls", seq-h.seq).
				Str("oldest_file", a.w.oldestName()).Int("files", len(a.w.segs)).Int64("wal_bytes", a.w.total).
				Bool("asked", a.replyTo[group] != nil).
				Msg("raft group holds back WAL files and does not checkpoint (halted, or stuck); the WAL grows until it recovers or the broker restarts")
		}
	}
	a.w.metrics.setStuckGroups(stuck)
}
