package partition

import (
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/flotilla/flotilla/raftactor"
)

// A raft commit is a majority. A topic whose min.insync.replicas is above
// that promises more to an acks=all producer: its batch is answered once
// it is applied and min.insync.replicas replicas, the leader included,
// match its raft index. Until then it is held. If the ISR falls below
// min.insync.replicas meanwhile, it is answered NOT_ENOUGH_REPLICAS_AFTER_APPEND,
// as Kafka does; timeouts and leadership changes fail it as they fail a
// batch in flight.

// matchedIndex is the highest raft index that at least n of the replicas
// whose matches are given have; 0 if there are fewer than n. It reorders
// matches.
func matchedIndex(matches []uint64, n int) uint64 {
	if n <= 0 || len(matches) < n {
		return 0
	}
	slices.Sort(matches)
	return matches[len(matches)-n]
}

// settle decides the held batches, in raft index order, given the raft
// index that enough replicas match and the ISR's size: the first done are
// matched; the rest fail when the ISR is below the quorum, and wait
// otherwise.
func settle(held []*inflight, matched uint64, isr, quorum int) (done int, fail bool) {
	for done < len(held) && held[done].index <= matched {
		done++
	}
	return done, isr < quorum
}

// settleHeld answers the held batches that enough replicas now match and
// fails the rest if the ISR is too small for them. Called wherever the
// leader's view of its replicas may have moved: Applied, Matched, Tick.
func (m *Machine) settleHeld(h *raftactor.Handle, ctx actor.Context) {
	if len(m.held) == 0 {
		return
	}
	m.matches = m.matches[:0]
	h.WithProgress(m.addMatch)
	// The voters may have grown (a reassignment) so that a majority is now
	// enough for new batches (matchQuorum 0); those held were committed by
	// the old majority and still need min.insync.replicas.
	quorum := max(m.matchQuorum, m.o.Settings.MinInsyncReplicas)
	matched := matchedIndex(m.matches, quorum)
	done, fail := settle(m.held, matched, len(m.isr), quorum)
	for _, in := range m.held[:done] {
		for _, w := range in.waiters {
			m.answer(ctx, in, w)
		}
	}
	if done > 0 {
		n := copy(m.held, m.held[done:])
		clear(m.held[n:])
		m.held = m.held[:n]
	}
	if fail {
		m.failHeld(ctx, fmt.Errorf("%w: %d replicas in sync, min.insync.replicas is %d", kerr.NotEnoughReplicasAfterAppend, len(m.isr), quorum))
	}
}

// failHeld answers every held batch with err.
func (m *Machine) failHeld(ctx actor.Context, err error) {
	for i, in := range m.held {
		for _, w := range in.waiters {
			ctx.Send(w.replyTo, &ProduceDone{Ref: w.ref, BaseOffset: -1, LogAppendTime: -1, LogStartOffset: m.log.LogStart(), Err: err})
		}
		m.held[i] = nil
	}
	m.held = m.held[:0]
}

// expireHeld times out the waiters of held batches. The batches stay held:
// an idempotent producer's retry of one waits on it again.
func (m *Machine) expireHeld(ctx actor.Context) {
	for _, in := range m.held {
		m.expireWaiters(ctx, in)
	}
}

// expireWaiters answers REQUEST_TIMED_OUT to the waiters of in whose
// deadline has passed.
func (m *Machine) expireWaiters(ctx actor.Context, in *inflight) {
	kept := in.waiters[:0]
	for _, w := range in.waiters {
		if m.ticks >= w.deadline {
			ctx.Send(w.replyTo, &ProduceDone{Ref: w.ref, BaseOffset: -1, LogAppendTime: -1, LogStartOffset: m.log.LogStart(), Err: kerr.RequestTimedOut})
		} else {
			kept = append(kept, w)
		}
	}
	in.waiters = kept
}

// holdDuplicate makes a retry of a held batch wait for it; false if the
// original is not held.
func (m *Machine) holdDuplicate(base int64, w waiter) bool {
	for _, in := range m.held {
		if in.key.base == base {
			in.waiters = append(in.waiters, w)
			return true
		}
	}
	return false
}

// Matched implements raftactor.MatchObserver: a follower's answer may
// complete a held batch without moving the commit index.
func (m *Machine) Matched(h *raftactor.Handle, ctx actor.Context) {
	m.settleHeld(h, ctx)
}

// caughtUpTracker applies Kafka's rule for when a follower was last caught
// up with its leader (Replica.updateFetchState) to samples of the raft
// progress: a follower that matches the leader's durable end at a sample
// is caught up then; one that matches the end the leader had at the
// previous sample was caught up at that sample, as Kafka counts a fetch
// that reaches the log end of the follower's previous fetch. Without the
// second rule a follower that keeps up with a steady stream of appends,
// always the few milliseconds of a round trip behind, is seldom seen at
// the very end, and left the ISR under load (with min.insync.replicas 2,
// acks=all producers then got NOT_ENOUGH_REPLICAS from a healthy cluster).
// A follower raft has not heard from lately (a dead one's match stays at
// the end of an idle log) is never counted caught up.
type caughtUpTracker struct {
	at       map[uint64]uint64 // replica → last tick at which it had what the leader had then
	prevEnd  uint64            // the leader's durable end at the previous sample
	prevTick uint64
	havePrev bool
}

// replicaProgress is one replica's raft progress as the leader sees it.
type replicaProgress struct {
	id, match uint64
	active    bool
	// stopping is true when the replica's broker is stopping cleanly: it
	// leaves the ISR at once, as Kafka's controlled shutdown takes a
	// broker out of the ISRs.
	stopping bool
}

// reset forgets every sample: a new leadership starts from what its
// replicas show it.
func (c *caughtUpTracker) reset() { *c = caughtUpTracker{} }

// sample records the progress seen at tick now by leader self and returns
// the ISR, sorted: self and the replicas (members of replicas) caught up
// within lag ticks.
func (c *caughtUpTracker) sample(now, self uint64, replicas []uint64, progress []replicaProgress, lag uint64) []uint64 {
	if c.at == nil {
		c.at = map[uint64]uint64{}
	}
	var end uint64
	for _, p := range progress {
		if p.id == self {
			end = p.match
		}
	}
	var isr []uint64
	for _, p := range progress {
		if !slices.Contains(replicas, p.id) {
			continue // a member leaving, or not yet assigned
		}
		if p.stopping {
			delete(c.at, p.id)
			continue
		}
		switch {
		case p.id == self || p.match >= end && p.active:
			c.at[p.id] = now
		case c.havePrev && p.match >= c.prevEnd && p.active:
			c.at[p.id] = max(c.at[p.id], c.prevTick)
		}
		if last, ok := c.at[p.id]; ok && now-last <= lag {
			isr = append(isr, p.id)
		}
	}
	c.prevEnd, c.prevTick, c.havePrev = end, now, true
	slices.Sort(isr)
	return isr
}
