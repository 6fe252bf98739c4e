package netactor

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla/flotilla/raftactor"
)

// fakeClock is a clock tests move by hand; safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func newFakeClock() *fakeClock               { c := &fakeClock{}; c.ns.Store(int64(time.Hour)); return c }

func TestLivenessRules(t *testing.T) {
	const timeout = 9 * time.Second
	type step struct {
		advance time.Duration
		heard   []uint64 // peers whose frame arrives after the advance
		alive   map[uint64]bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"self is always alive", []step{
			{advance: 0, alive: map[uint64]bool{1: true}},
			{advance: time.Hour, alive: map[uint64]bool{1: true}},
		}},
		{"a peer never heard from is alive for one session timeout after start", []step{
			{advance: 0, alive: map[uint64]bool{2: true}},
			{advance: timeout - time.Millisecond, alive: map[uint64]bool{2: true}},
			{advance: time.Millisecond, alive: map[uint64]bool{2: false}},
		}},
		{"a peer heard from stays alive for one session timeout after its last frame", []step{
			{advance: 5 * time.Second, heard: []uint64{2}, alive: map[uint64]bool{2: true, 3: true}},
			{advance: timeout - time.Millisecond, alive: map[uint64]bool{2: true, 3: false}},
			{advance: time.Millisecond, alive: map[uint64]bool{2: false, 3: false}},
		}},
		{"a dead peer heard from again is alive at once", []step{
			{advance: 0, heard: []uint64{2}},
			{advance: time.Minute, alive: map[uint64]bool{2: false}},
			{advance: time.Second, heard: []uint64{2}, alive: map[uint64]bool{2: true}},
			{advance: timeout - time.Millisecond, alive: map[uint64]bool{2: true}},
		}},
		{"one peer's frames keep no other alive", []step{
			{advance: 0, heard: []uint64{2, 3}},
			{advance: 8 * time.Second, heard: []uint64{2}},
			{advance: 2 * time.Second, alive: map[uint64]bool{2: true, 3: false}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			l := NewLiveness(1, timeout, clock.now)
			var elapsed time.Duration
			for _, s := range tt.steps {
				clock.advance(s.advance)
				elapsed += s.advance
				for _, id := range s.heard {
					l.Heard(id)
				}
				for id, want := range s.alive {
					if got := l.Alive(id); got != want {
						t.Errorf("%v after start: Alive(%d) = %v, want %v", elapsed, id, got, want)
					}
				}
			}
		})
	}
}

func TestNilLivenessFindsEveryoneAlive(t *testing.T) {
	var l *Liveness
	l.Heard(2)
	if !l.Alive(2) {
		t.Fatal("a nil Liveness found a node dead")
	}
}

// An idle but connected PeerSender sends a keepalive frame every
// keepaliveTicks, and the receiving Listener counts it as a sign of life:
// without it, a broker leading nothing and hosting no group with the other
// would look dead to it.
func TestIdleSenderKeepsPeerAlive(t *testing.T) {
	clock := newFakeClock()
	n1, n2 := newNode(t, 1), newNode(t, 2)
	n2.liveness = NewLiveness(2, time.Second, clock.now)
	n2.listen("127.0.0.1:0")
	at2 := n2.group(7)
	p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{})
	root := n1.sys.Root
	connect(t, root, p, 7, 2, at2)
	sender, _ := p.Sender(2)

	clock.advance(time.Minute)
	if n2.liveness.Alive(1) {
		t.Fatal("node 1 is alive a minute after its last frame")
	}
	for range keepaliveTicks {
		root.Send(sender, &raftactor.Tick{})
	}
	waitFor(t, 5*time.Second, "a keepalive from the idle sender", func() bool { return n2.liveness.Alive(1) })
}

// TestLivenessStopping: a peer that announced it is stopping stays marked
// until it opens a new connection, as it does once it starts again.
func TestLivenessStopping(t *testing.T) {
	l := NewLiveness(1, time.Second, time.Now)
	l.MarkStopping(2)
	l.Heard(2) // its frames while it stops change nothing
	if !l.Stopping(2) || l.Stopping(3) {
		t.Fatalf("Stopping(2) = %v, Stopping(3) = %v; want true, false", l.Stopping(2), l.Stopping(3))
	}
	l.connected(2)
	if l.Stopping(2) {
		t.Fatal("still stopping after a new connection")
	}
	var none *Liveness
	none.MarkStopping(2)
	none.connected(2)
	if none.Stopping(2) {
		t.Fatal("a nil Liveness found a node stopping")
	}
}
