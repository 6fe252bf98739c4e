package netactor

import (
	"slices"
	"strings"
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
	l.connected(2, 0, false)
	if l.Stopping(2) {
		t.Fatal("still stopping after a new connection")
	}
	var none *Liveness
	none.MarkStopping(2)
	none.connected(2, 5, false)
	if none.Stopping(2) || none.Restarts(2) != 0 {
		t.Fatal("a nil Liveness found a node stopping or restarted")
	}
}

// TestLivenessRestarts: a hello naming another incarnation than the
// peer's last one is a restart; one naming the same (a reconnection) or
// none (a peer that predates incarnations) is not.
func TestLivenessRestarts(t *testing.T) {
	tests := []struct {
		name   string
		hellos []uint64 // incarnations named by peer 2's hellos, in order
		want   uint64
	}{
		{"first hello", []uint64{7}, 0},
		{"reconnections of one process", []uint64{7, 7, 7}, 0},
		{"a new process", []uint64{7, 8}, 1},
		{"every new process counts", []uint64{7, 8, 8, 9, 7}, 3},
		{"no incarnation says nothing", []uint64{0, 0}, 0},
		{"an unknown process before the first known one", []uint64{0, 7}, 0},
		{"an unknown process between two of one", []uint64{7, 0, 7}, 0},
		{"an unknown process between two others", []uint64{7, 0, 8}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLiveness(1, time.Second, time.Now)
			var restarts uint64
			for _, inc := range tt.hellos {
				if l.connected(2, inc, false) {
					restarts++
				}
			}
			if got := l.Restarts(2); got != tt.want || restarts != tt.want {
				t.Fatalf("Restarts(2) = %d, connected reported %d restarts; want %d", got, restarts, tt.want)
			}
			if got := l.Restarts(3); got != 0 {
				t.Fatalf("Restarts(3) = %d for a peer never heard from", got)
			}
		})
	}
}

// TestRestartSeenThroughHello: over real connections, a peer's sender
// that reconnects after the link broke is the same process, one started
// afresh with a new incarnation is a restart, and one that names none (an
// older version) changes nothing.
func TestRestartSeenThroughHello(t *testing.T) {
	n2 := newNode(t, 2)
	n2.liveness = NewLiveness(2, time.Minute, time.Now)
	n2.listen("127.0.0.1:0")
	addr := n2.addr
	at2 := n2.group(7)

	n1 := newNode(t, 1)
	p := n1.peers(map[uint64]string{2: addr}, SenderOptions{Incarnation: 11})
	connect(t, n1.sys.Root, p, 7, 2, at2)

	// The link breaks and comes back: the sender redials, with the same
	// incarnation.
	n2.stopListener()
	n2.listen(addr)
	connect(t, n1.sys.Root, p, 7, 2, at2)
	if n2.accepts.Load() == 0 {
		t.Fatal("no new connection after the link came back")
	}
	if got := n2.liveness.Restarts(1); got != 0 {
		t.Fatalf("Restarts(1) = %d after a reconnection of the same process, want 0", got)
	}

	// Node 1 starts again: a new process, a new incarnation.
	p.Stop()
	n1b := newNode(t, 1)
	p2 := n1b.peers(map[uint64]string{2: addr}, SenderOptions{Incarnation: 12})
	connect(t, n1b.sys.Root, p2, 7, 2, at2)
	if got := n2.liveness.Restarts(1); got != 1 {
		t.Fatalf("Restarts(1) = %d after a restart, want 1", got)
	}
	waitFor(t, 5*time.Second, "the restart logged", func() bool { return strings.Contains(n2.logs.String(), "raft peer restarted") })

	// And again as a version that sends no incarnation: unknown, not a
	// restart.
	p2.Stop()
	n1c := newNode(t, 1)
	connect(t, n1c.sys.Root, n1c.peers(map[uint64]string{2: addr}, SenderOptions{}), 7, 2, at2)
	if got := n2.liveness.Restarts(1); got != 1 {
		t.Fatalf("Restarts(1) = %d after a hello without incarnation, want still 1", got)
	}
}

// TestLivenessHeardWithin: HeardWithin judges by the window it is given,
// not the session timeout: a peer silent for longer is not heard within
// it although still alive, and one never heard from counts as heard for
// the window after the start.
func TestLivenessHeardWithin(t *testing.T) {
	clock := newFakeClock()
	l := NewLiveness(1, 9*time.Second, clock.now)
	const window = 600 * time.Millisecond
	if !l.HeardWithin(2, window) || !l.HeardWithin(1, window) {
		t.Fatal("at the start: a peer never heard from, or self, not heard within the window")
	}
	l.Heard(2)
	clock.advance(window - time.Millisecond)
	if !l.HeardWithin(2, window) {
		t.Fatal("just inside the window: not heard within it")
	}
	clock.advance(time.Millisecond)
	if l.HeardWithin(2, window) || !l.Alive(2) || l.HeardWithin(3, window) || !l.HeardWithin(1, window) {
		t.Fatalf("past the window: 2 heard %v (want false), alive %v (want true); 3, never heard, heard %v (want false); self %v",
			l.HeardWithin(2, window), l.Alive(2), l.HeardWithin(3, window), l.HeardWithin(1, window))
	}
}

// TestLivenessWakesQuietGroups: a peer can follow quiet groups only while
// a connection from it whose hello announced them is open and it was heard
// within the window, and only once WakeOnLoss is set; the groups that
// depend on it are woken when its last connection closes, when it
// restarts, and once when it goes silent for the window, but not while it
// is silent and nobody found it fit.
func TestLivenessWakesQuietGroups(t *testing.T) {
	const window = time.Second
	clock := newFakeClock()
	l := NewLiveness(1, 9*time.Second, clock.now)
	var woken []uint64
	expect := func(what string, want ...uint64) {
		t.Helper()
		if !slices.Equal(woken, want) {
			t.Fatalf("%s: woke %v, want %v", what, woken, want)
		}
		woken = nil
	}
	l.connected(2, 10, true)
	l.Heard(2)
	if l.Quiet(2) {
		t.Fatal("quiet before WakeOnLoss")
	}
	l.WakeOnLoss(window, func(peer uint64) { woken = append(woken, peer) })
	if !l.Quiet(2) {
		t.Fatal("a connected peer that announced quiet groups cannot follow them")
	}
	l.connected(3, 20, false) // a broker of an earlier version
	l.Heard(3)
	if l.Quiet(3) || l.Quiet(1) {
		t.Fatal("a peer that did not announce quiet groups, or self, can follow them")
	}

	// Silence: once, after the window.
	clock.advance(window - time.Millisecond)
	l.check(2)
	expect("heard within the window")
	clock.advance(time.Millisecond)
	l.check(2)
	l.check(2)
	expect("silent for the window", 2)
	if l.Quiet(2) {
		t.Fatal("a silent peer can follow quiet groups")
	}
	l.Heard(2)
	l.check(2)
	expect("heard again")
	if !l.Quiet(2) {
		t.Fatal("a peer heard again cannot follow quiet groups")
	}

	// A second connection (a reconnection racing the old one's end): only
	// the last one's end is a loss.
	l.connected(2, 10, true)
	l.disconnected(2)
	expect("one of two connections closed")
	l.disconnected(2)
	expect("the last connection closed", 2)
	if l.Quiet(2) {
		t.Fatal("a peer with no connection can follow quiet groups")
	}
	// Back, as the same process: no wake; as a new one: a wake.
	l.connected(2, 10, true)
	expect("reconnected")
	l.connected(2, 11, true)
	expect("restarted", 2)
}

// TestLivenessRearmsForAGroupQuietDuringAWakeUp: a frame from a peer
// found silent arrives, and a raft group goes quiet with it, while check
// wakes the groups that depend on it, after the Ticker looked for them. The
// group asks Quiet again once it has published its peers (raftactor's
// quiesce), which arms the peer again: its next silence wakes the group.
func TestLivenessRearmsForAGroupQuietDuringAWakeUp(t *testing.T) {
	const window = time.Second
	clock := newFakeClock()
	l := NewLiveness(1, 9*time.Second, clock.now)
	l.connected(2, 10, true)
	l.Heard(2)
	wakes, raced := 0, false
	l.WakeOnLoss(window, func(uint64) {
		wakes++
		if !raced {
			// After the Ticker's scan: the frame, and the group's look
			// after publishing its peers.
			raced = true
			l.Heard(2)
			if !l.Quiet(2) {
				t.Fatal("a peer heard a moment ago cannot follow quiet groups")
			}
		}
	})
	if !l.Quiet(2) {
		t.Fatal("a connected peer that announced quiet groups cannot follow them")
	}
	clock.advance(window)
	l.check(2)
	if wakes != 1 {
		t.Fatalf("silent for the window: %d wake-ups, want 1", wakes)
	}
	clock.advance(window)
	l.check(2)
	if wakes != 2 {
		t.Fatalf("silent again: %d wake-ups in all, want 2", wakes)
	}
}
