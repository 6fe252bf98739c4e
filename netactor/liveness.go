package netactor

import (
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

// connected records that peer opened a connection to this node. A broker
// that starts again dials afresh, so it is no longer stopping; one that is
// stopping keeps the connections it has.
func (l *Liveness) connected(peer uint64) {
	if l != nil {
		l.stopping.Delete(peer)
	}
}
