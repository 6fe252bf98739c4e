package raftactor

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Ticker is the one clock of a broker's raft groups: a goroutine that sends
// Tick to every subscribed actor each interval. Actors never read the clock
// or use receive timeouts; time reaches them as messages, so a busy actor
// simply sees its ticks later instead of racing a timer.
//
// A raft group may sleep through ticks that its raft node would only count
// (see Tick): the Ticker skips a subscriber until the tick it asked to be
// woken at, and the group catches up on the skipped ones when it next runs.
type Ticker struct {
	sender actor.SenderContext
	subs   atomic.Pointer[[]*subscription] // copied on write: subscriptions change rarely
	mu     sync.Mutex                      // serialises writers of subs
	now    atomic.Uint64                   // ticks so far
	stop   chan struct{}
	done   chan struct{}
}

// subscription is one subscriber of a Ticker.
type subscription struct {
	pid    *actor.PID
	ticker *Ticker
	// wakeAt, when not 0, is the first tick the subscriber is to be sent
	// again: it sleeps through the ticks before it.
	wakeAt atomic.Uint64
	// quiet, while the subscriber is a quiet raft group (quiesce.go), is
	// the peers whose loss wakes it; nil otherwise.
	quiet atomic.Pointer[[]uint64]
}

// NewTicker starts a ticker that sends through sender every interval.
func NewTicker(sender actor.SenderContext, interval time.Duration) *Ticker {
	t := &Ticker{sender: sender, stop: make(chan struct{}), done: make(chan struct{})}
	t.subs.Store(&[]*subscription{})
	go t.run(interval)
	return t
}

// Subscribe adds pid to the actors that receive Tick.
func (t *Ticker) Subscribe(pid *actor.PID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.subs.Load()
	next := make([]*subscription, len(old), len(old)+1)
	copy(next, old)
	next = append(next, &subscription{pid: pid, ticker: t})
	t.subs.Store(&next)
}

// Unsubscribe removes pid.
func (t *Ticker) Unsubscribe(pid *actor.PID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.subs.Load()
	next := make([]*subscription, 0, len(old))
	for _, s := range old {
		if !s.pid.Equal(pid) {
			next = append(next, s)
		}
	}
	t.subs.Store(&next)
}

// subscription returns pid's subscription, or nil.
func (t *Ticker) subscription(pid *actor.PID) *subscription {
	for _, s := range *t.subs.Load() {
		if s.pid.Equal(pid) {
			return s
		}
	}
	return nil
}

// WakePeer wakes every quiet raft group that depends on peer (its leader,
// or a follower of a quiet leader): the transport calls it when it loses
// peer, so that a follower elects a new leader, and a leader checks its
// quorum and its ISR, as if it had never gone quiet. Safe to call from any
// goroutine.
func (t *Ticker) WakePeer(peer uint64) {
	for _, s := range *t.subs.Load() {
		q := s.quiet.Load()
		if q == nil || !slices.Contains(*q, peer) {
			continue
		}
		if s.quiet.CompareAndSwap(q, nil) {
			t.sender.Send(s.pid, &wake{})
		}
	}
}

// Stop ends the ticker's goroutine.
func (t *Ticker) Stop() {
	close(t.stop)
	<-t.done
}

func (t *Ticker) run(interval time.Duration) {
	defer close(t.done)
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tk.C:
			t.fire()
		}
	}
}

// fire sends the next tick to every subscriber that is awake.
func (t *Ticker) fire() {
	n := t.now.Add(1)
	msg := &Tick{N: n, ticker: t}
	for _, s := range *t.subs.Load() {
		if n < s.wakeAt.Load() {
			continue // asleep: it counts this tick when it wakes
		}
		t.sender.Send(s.pid, msg)
	}
}
