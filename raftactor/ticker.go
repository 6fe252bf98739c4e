package raftactor

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Ticker is the one clock of a broker's raft groups: a goroutine that sends
// Tick to every subscribed actor each interval. Actors never read the clock
// or use receive timeouts; time reaches them as messages, so a busy actor
// simply sees its ticks later instead of racing a timer.
type Ticker struct {
	sender actor.SenderContext
	subs   atomic.Pointer[[]*actor.PID] // copied on write: subscriptions change rarely
	mu     sync.Mutex                   // serialises writers of subs
	stop   chan struct{}
	done   chan struct{}
}

var tick = &Tick{}

// NewTicker starts a ticker that sends through sender every interval.
func NewTicker(sender actor.SenderContext, interval time.Duration) *Ticker {
	t := &Ticker{sender: sender, stop: make(chan struct{}), done: make(chan struct{})}
	t.subs.Store(&[]*actor.PID{})
	go t.run(interval)
	return t
}

// Subscribe adds pid to the actors that receive Tick.
func (t *Ticker) Subscribe(pid *actor.PID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.subs.Load()
	next := make([]*actor.PID, len(old), len(old)+1)
	copy(next, old)
	next = append(next, pid)
	t.subs.Store(&next)
}

// Unsubscribe removes pid.
func (t *Ticker) Unsubscribe(pid *actor.PID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.subs.Load()
	next := make([]*actor.PID, 0, len(old))
	for _, p := range old {
		if !p.Equal(pid) {
			next = append(next, p)
		}
	}
	t.subs.Store(&next)
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
			for _, pid := range *t.subs.Load() {
				t.sender.Send(pid, tick)
			}
		}
	}
}
