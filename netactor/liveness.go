package netactor

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Liveness is this node's judgement of its peers' health, from the raft
// transport: a peer is alive when a frame from it arrived within the
// session timeout (Kafka's broker.session.timeout.ms, after which its
// controller fences a broker that sent no heartbeat). Any frame counts:
// raft messages, leaderships, control messages and the keepalives that a
// ticked PeerSender sends when it has sent nothing for keepaliveTicks, so
// an idle peer stays alive as long as it runs and can reach this node.
//
// This node is always alive. A peer never heard from counts as alive
// during the first session timeout after this node started, so that a
// cluster whose brokers start together is whole at once instead of a
// session timeout later.
//
// It also counts each peer's restarts (Restarts): every connection opens
// with a hello naming the sender's process (Envelope.Incarnation), so a
// peer whose hello names another process than its last one was stopped or
// killed and started again meanwhile, however quickly, and holds nothing
// it was sent while it was down.
//
// The Listener's readers record frames; anyone may ask concurrently. A nil
// *Liveness records nothing and finds every node alive.
type Liveness struct {
	self    uint64
	timeout time.Duration
	now     func() time.Time
	start   time.Time
	heard   sync.Map // peer id → *atomic.Int64: when its last frame arrived, as time since start
	// stopping holds the peers that announced they are stopping and have
	// not opened a connection since (peer id → struct{}).
	stopping sync.Map
	boots    sync.Map // peer id → *boot
	links    sync.Map // peer id → *link

	// Set by WakeOnLoss: the wake-up of quiet raft groups.
	wake        atomic.Pointer[func(peer uint64)]
	quietWindow atomic.Int64 // a time.Duration
}

// link is what this node knows of the connections a peer opened to it,
// for quiet raft groups.
type link struct {
	conns    atomic.Int32 // open, past their hello
	quiesces atomic.Bool  // the last hello announced quiet groups
	// armed is set when Quiet found the peer fit to follow quiet groups,
	// and cleared when check finds it silent and wakes them: its groups
	// are woken once per silence, and only if one may be quiet.
	armed atomic.Bool
}

// boot is what a peer's hellos told of its process.
type boot struct {
	mu          sync.Mutex // orders the hellos of concurrent connections
	incarnation uint64     // the last one named; 0 until one is
	restarts    atomic.Uint64
}

// NewIncarnation returns a random incarnation for a node's process
// (SenderOptions.Incarnation), never 0: a node takes a new one at every
// start, so that two of its processes name themselves alike with
// negligible odds, and keeps none on disk.
func NewIncarnation() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

// keepaliveTicks is how many Ticks a PeerSender lets pass without sending
// a frame before it sends an empty one (10: 500 ms at 50 ms ticks). A
// busy link never needs one; an idle link costs a header-sized frame per
// keepalive interval, far below any session timeout.
const keepaliveTicks = 10

// NewLiveness returns the liveness of self's peers, judged with
// sessionTimeout; now is the clock (time.Now outside tests), read once now
// for the start of the grace period.
func NewLiveness(self uint64, sessionTimeout time.Duration, now func() time.Time) *Liveness {
	return &Liveness{self: self, timeout: sessionTimeout, now: now, start: now()}
}

// Heard records that a frame from peer arrived now.
func (l *Liveness) Heard(peer uint64) { l.recorder(peer)() }

// recorder returns what records a frame from peer: a connection's reader
// looks peer up once and calls it for every frame.
func (l *Liveness) recorder(peer uint64) func() {
	if l == nil {
		return func() {}
	}
	c := l.clock(peer)
	return func() { c.Store(int64(l.now().Sub(l.start))) }
}

// clock returns where peer's last frame is recorded, created on first use.
func (l *Liveness) clock(peer uint64) *atomic.Int64 {
	if c, ok := l.heard.Load(peer); ok {
		return c.(*atomic.Int64)
	}
	c, _ := l.heard.LoadOrStore(peer, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// LastHeard returns how long ago a frame from peer arrived; heard is
// false if none ever has.
func (l *Liveness) LastHeard(peer uint64) (ago time.Duration, heard bool) {
	if l == nil {
		return 0, false
	}
	c, ok := l.heard.Load(peer)
	if !ok {
		return 0, false
	}
	return l.now().Sub(l.start) - time.Duration(c.(*atomic.Int64).Load()), true
}

// HeardMsAgo is LastHeard in milliseconds, -1 if no frame from peer ever
// arrived: what the logs and /debug/cluster show.
func (l *Liveness) HeardMsAgo(peer uint64) int64 {
	if ago, heard := l.LastHeard(peer); heard {
		return ago.Milliseconds()
	}
	return -1
}

// Alive reports whether node id counts as alive now.
func (l *Liveness) Alive(id uint64) bool {
	if l == nil || id == l.self {
		return true
	}
	if ago, heard := l.LastHeard(id); heard {
		return ago < l.timeout
	}
	return l.now().Sub(l.start) < l.timeout
}

// HeardWithin reports whether a frame from peer arrived within d: a
// sooner and steadier sign of a dead peer than Alive, for a decision that
// must not count a broker killed a moment ago (live peers greet each other
// every keepaliveTicks at least). A peer never heard from counts as heard
// for d after this node started.
func (l *Liveness) HeardWithin(peer uint64, d time.Duration) bool {
	if l == nil || peer == l.self {
		return true
	}
	if ago, heard := l.LastHeard(peer); heard {
		return ago < d
	}
	return l.now().Sub(l.start) < d
}

// MarkStopping records that peer announced it is stopping (a controlled
// shutdown): no leadership is handed to it until it connects again.
func (l *Liveness) MarkStopping(peer uint64) {
	if l != nil {
		l.stopping.Store(peer, struct{}{})
	}
}

// Stopping reports whether peer announced that it is stopping and has not
// opened a connection to this node since.
func (l *Liveness) Stopping(peer uint64) bool {
	if l == nil {
		return false
	}
	_, ok := l.stopping.Load(peer)
	return ok
}

// connected records that peer opened a connection to this node with a
// hello naming its process incarnation (0: unknown), and reports whether
// that is a restart: a process other than the one its last hello named. A
// broker that starts again dials afresh, so it is no longer stopping; one
// that is stopping keeps the connections it has. A reconnection of the
// same process (a network blip) is no restart, and neither is a hello that
// names no incarnation: its sender predates them, and says nothing either
// way.
func (l *Liveness) connected(peer, incarnation uint64, quiesces bool) (restarted bool) {
	if l == nil {
		return false
	}
	l.stopping.Delete(peer)
	lk := l.link(peer)
	lk.quiesces.Store(quiesces)
	lk.conns.Add(1)
	if incarnation == 0 {
		return false
	}
	v, _ := l.boots.LoadOrStore(peer, &boot{})
	b := v.(*boot)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.incarnation {
	case incarnation:
		return false
	case 0:
		b.incarnation = incarnation
		return false
	}
	b.incarnation = incarnation
	b.restarts.Add(1)
	// Its replicas here lost what they held in memory: the quiet groups
	// they follow or lead wake, so that their leaders count the restart
	// in their ISRs and catch them up.
	l.lost(peer)
	return true
}

// disconnected records that a connection from peer, past its hello, ended.
// When it was the last, the quiet groups that depend on peer wake: at once
// when the peer was killed (its kernel closes the connection), where raft
// alone would wait out an election timeout.
func (l *Liveness) disconnected(peer uint64) {
	if l == nil {
		return
	}
	if l.link(peer).conns.Add(-1) == 0 {
		l.lost(peer)
	}
}

func (l *Liveness) link(peer uint64) *link {
	if v, ok := l.links.Load(peer); ok {
		return v.(*link)
	}
	v, _ := l.links.LoadOrStore(peer, &link{})
	return v.(*link)
}

// WakeOnLoss makes this node's raft groups able to go quiet with its peers
// (raftactor's quiet groups; Quiet): wake is called with a peer, from any
// goroutine, when the transport loses it (its last connection to this node
// ends, it restarted, or nothing arrived from it for window, checked at
// each tick of its PeerSender). window must be well above the interval of
// the keepalives an idle peer sends (keepaliveTicks).
func (l *Liveness) WakeOnLoss(window time.Duration, wake func(peer uint64)) {
	l.quietWindow.Store(int64(window))
	l.wake.Store(&wake)
}

// Quiet reports whether peer can follow this node's quiet raft groups,
// and lead quiet groups this node follows: it announced that it follows
// them, a connection from it is open, something arrived from it within the
// WakeOnLoss window, and its loss will wake them. Always false before
// WakeOnLoss.
func (l *Liveness) Quiet(peer uint64) bool {
	if l == nil || l.wake.Load() == nil || peer == l.self {
		return false
	}
	lk := l.link(peer)
	if lk.conns.Load() <= 0 || !lk.quiesces.Load() || !l.HeardWithin(peer, time.Duration(l.quietWindow.Load())) {
		return false
	}
	lk.armed.Store(true)
	return true
}

// check wakes the quiet groups that depend on peer once nothing arrived
// from it for the WakeOnLoss window (a link cut without a word, a peer
// hung): a PeerSender calls it at each tick.
//
// A group that goes quiet while check wakes the others (a frame arrived
// meanwhile) may publish its peers after the Ticker looked for them. It
// is not left quiet and unarmed: it publishes them before it asks Quiet
// about them again (raftactor's quiesce), and that arms the peer after
// the Swap here.
func (l *Liveness) check(peer uint64) {
	if l == nil || l.wake.Load() == nil {
		return
	}
	lk := l.link(peer)
	if lk.armed.Load() && !l.HeardWithin(peer, time.Duration(l.quietWindow.Load())) && lk.armed.Swap(false) {
		l.lost(peer)
	}
}

// lost wakes the quiet groups that depend on peer.
func (l *Liveness) lost(peer uint64) {
	if w := l.wake.Load(); w != nil {
		(*w)(peer)
	}
}

// Restarts returns how many times peer was seen to restart since this node
// started: how many of its hellos named another process than the one
// before. A leader compares it between its ISR samples
// (raftactor.InSyncTracker): a replica whose broker restarted is out of
// the ISR until it has caught up again, however recently its previous
// process was caught up, as Kafka's controller fences a broker that
// registers with a new incarnation and takes it out of every ISR.
func (l *Liveness) Restarts(peer uint64) uint64 {
	if l == nil {
		return 0
	}
	v, ok := l.boots.Load(peer)
	if !ok {
		return 0
	}
	return v.(*boot).restarts.Load()
}
