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
