package storage

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
)

// Kind and Name are the storage actor's kind and stable name for
// actors.System.Spawn.
const (
	Kind = "storage"
	Name = "storage"
)

// flushNow is the message the storage actor sends itself to end a group
// commit: every message that reached the mailbox before it is in the batch.
type flushNow struct{}

// waiter is a Persist whose record is appended and whose answer waits for
// the group commit.
type waiter struct {
	p   *Persist
	err error // the append failed for this Persist alone
}

// storageActor owns the WAL. See the package documentation for its contract.
type storageActor struct {
	w   *WAL
	log zerolog.Logger

	waiting   []waiter
	sync      bool // some waiter asked for an fsync
	scheduled bool // a flushNow is in the mailbox

	// replyTo is the last actor seen persisting each group: where
	// CheckpointRequests go.
	replyTo map[uint64]*actor.PID
	// asked is, per group, the file being written when the group was last
	// asked to checkpoint: it is asked at most once per roll.
	asked   map[uint64]uint64
	lastSeq uint64
}

// NewActor returns the producer of the storage actor, which owns w from then
// on: nothing else may call w's methods, and the actor closes w when it
// stops. A restart (after a panic) keeps w and everything appended to it.
func NewActor(w *WAL, log zerolog.Logger) actor.Producer {
	return func() actor.Actor {
		return &storageActor{
			w:       w,
			log:     log,
			replyTo: make(map[uint64]*actor.PID),
			asked:   make(map[uint64]uint64),
		}
	}
}

// Receive implements actor.Actor.
func (a *storageActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.lastSeq = a.w.seq()
		// Recovery may have left files that are already covered, or a WAL
		// over its budget.
		a.maintain(ctx)
	case *Persist:
		a.persist(ctx, m)
	case *Checkpoint:
		a.checkpoint(ctx, m)
	case *Forget:
		delete(a.replyTo, m.Group)
		if err := a.w.AppendForget(m.Group); err != nil {
			a.log.Error().Err(err).Uint64("group", m.Group).Msg("appending a tombstone failed")
		} else {
			a.schedule(ctx)
		}
	case *flushNow:
		a.scheduled = false
		a.commit(ctx, a.sync)
	case *Flush:
		err := a.commit(ctx, true)
		if m.ReplyTo != nil {
			ctx.Send(m.ReplyTo, &Flushed{Err: err})
		}
	case *actor.Restarting:
		// The records of the waiting Persists are whole in the buffer
		// (a record is appended in one Write): commit them rather than
		// leave their groups waiting for an answer that never comes.
		a.commit(ctx, true)
	case *actor.Stopping:
		a.commit(ctx, true)
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
	a.waiting = append(a.waiting, waiter{p: p, err: err})
	a.sync = a.sync || p.Sync
	a.schedule(ctx)
}

func (a *storageActor) checkpoint(ctx actor.Context, c *Checkpoint) {
	if err := a.w.AppendCheckpoint(c.Group, c.Snapshot); err != nil {
		// No one waits for a checkpoint; the group is asked again later.
		a.log.Error().Err(err).Uint64("group", c.Group).Msg("appending a checkpoint failed")
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

// commit ends the group commit: one flush, at most one fsync, then the
// answers in arrival order, then retention.
func (a *storageActor) commit(ctx actor.Context, sync bool) error {
	err := a.w.Commit(sync)
	failed, cause := 0, err
	for i, wt := range a.waiting {
		perr := wt.err
		if perr == nil {
			perr = err
		}
		if perr != nil {
			failed++
			if cause == nil {
				cause = perr
			}
		}
		if wt.p.ReplyTo != nil {
			ctx.Send(wt.p.ReplyTo, &Persisted{Group: wt.p.Group, Incarnation: wt.p.Incarnation, Seq: wt.p.Seq, Err: perr})
		}
		a.waiting[i] = waiter{}
	}
	if failed > 0 {
		a.log.Error().Err(cause).Int("persists_failed", failed).
			Int("batch", len(a.waiting)).Msg("WAL write failed; the groups of the failed persists halt")
	}
	a.waiting = a.waiting[:0]
	a.sync = false
	if err == nil {
		a.maintain(ctx)
	}
	return err
}

// maintain deletes covered files and asks the groups that hold back the
// oldest file to checkpoint, once per group per roll, when a file was just
// rolled or the WAL is over budget.
func (a *storageActor) maintain(ctx actor.Context) {
	if _, err := a.w.deleteCovered(); err != nil {
		a.log.Warn().Err(err).Msg("deleting a covered WAL file failed; retrying after the next commit")
	}
	seq := a.w.seq()
	rolled := seq != a.lastSeq
	a.lastSeq = seq
	if !rolled && !a.w.overBudget() {
		return
	}
	var asked []uint64
	for _, group := range a.w.holdingBack() {
		pid := a.replyTo[group]
		if pid == nil || a.asked[group] == seq {
			continue
		}
		a.asked[group] = seq
		ctx.Send(pid, &CheckpointRequest{Group: group})
		a.w.metrics.checkpointRequested()
		asked = append(asked, group)
	}
	if len(asked) > 0 {
		a.log.Info().Str("oldest_file", a.w.oldestName()).Uints64("groups", asked).
			Int64("wal_bytes", a.w.total).Msg("asked groups holding back the oldest WAL file to checkpoint")
	}
}
