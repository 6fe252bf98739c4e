package netactor

import (
	"fmt"
	"net"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors"
)

// Listen binds the raft address. It is separate from StartListener so that a
// bind error reaches the caller synchronously and port 0 can be resolved
// (ln.Addr()) before the actor starts.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("netactor: listen on %s: %w", addr, err)
	}
	return ln, nil
}

// StartListener spawns the Listener actor (kind "listener", name
// "raft/listener") on ln, which it owns from then on, and starts accepting.
// Stopping the actor closes ln and every inbound connection.
func StartListener(sys *actors.System, ln net.Listener, opts ListenerOptions) (*actor.PID, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("netactor: listener options: %w", err)
	}
	root := sys.Root
	// Shared with the readers, which outlive an incarnation of the actor
	// until they notice their connection closed.
	budget := &snapBudget{limit: opts.MaxSnapshotBytes}
	held := newHolders(opts.HoldTimeout, time.Now)
	pid, err := sys.Spawn("listener", "raft/listener", func() actor.Actor {
		return &Listener{ln: ln, root: root, opts: opts, budget: budget, holders: held, conns: make(map[uint64]*inbound)}
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("netactor: %w", err)
	}
	// The accept loop outlives any restart of the actor: it feeds the PID,
	// which a restart keeps, and ends when Stopping closes ln.
	go actors.AcceptLoop(ln, root, pid)
	return pid, nil
}

// Listener is the actor that owns the raft listening socket and every inbound
// connection. Each connection has a reader goroutine that decodes frames and
// sends each group's messages straight to the group as raftactor.Step, so the
// actor itself sees only connections opening and closing. It keeps one
// connection per peer, the newest, and the snapshots their readers
// reassemble share one budget of MaxSnapshotBytes (snapshot.go). It takes
// each peer id's messages from one process at a time (hold.go).
type Listener struct {
	ln      net.Listener
	root    *actor.RootContext
	opts    ListenerOptions
	budget  *snapBudget
	holders *holders // shared with the readers, like budget
	self    *actor.PID
	conns   map[uint64]*inbound
	nextID  uint64
	closed  bool
}

// inbound is one accepted connection as the Listener tracks it.
type inbound struct {
	conn   net.Conn
	remote string
	peer   uint64 // 0 until the hello is read
	// replaced: closed because its peer opened a newer connection; its
	// reader's exit (connClosed) still removes and logs it.
	replaced bool
}

// Receive implements actor.Actor.
func (l *Listener) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actors.Accepted:
		l.accepted(msg.Conn)
	case *connIdentified:
		l.identified(msg)
	case *connClosed:
		l.connClosed(msg)
	case *actors.AcceptFailed:
		l.opts.Log.Warn().Err(msg.Err).Msg("raft listener cannot accept; retrying")
	case *actor.Started:
		l.self = ctx.Self()
		l.opts.Log.Info().Str("addr", l.ln.Addr().String()).Msg("raft listener started")
	case *actor.Stopping:
		l.closed = true
		l.ln.Close()
		l.closeAll()
	case *actor.Restarting:
		// The socket and accept loop survive; the connections do not, and
		// their peers reconnect to the next instance.
		l.closeAll()
	}
}

func (l *Listener) accepted(conn net.Conn) {
	if l.closed {
		conn.Close()
		return
	}
	l.nextID++
	c := &inbound{conn: conn, remote: conn.RemoteAddr().String()}
	l.conns[l.nextID] = c
	r := &connReader{
		id: l.nextID, conn: conn, self: l.opts.Self,
		maxFrame: l.opts.MaxFrameBytes, maxSnapshot: l.opts.MaxSnapshotBytes, budget: l.budget,
		holders: l.holders, peerAddr: l.opts.PeerAddr, remote: c.remote,
		helloTimeout: l.opts.HelloTimeout, idleTimeout: l.opts.IdleTimeout,
		router: l.opts.Router, metrics: l.opts.Metrics, liveness: l.opts.Liveness, leaderBoard: l.opts.Leaders,
		root: l.root, listener: l.self, log: l.opts.Log,
	}
	go r.run()
}

// identified records the peer a connection's hello named and keeps only
// the newest connection of each peer, closing any other. A peer's sender
// holds one connection at a time: an older one is one it gave up on, cut
// or half-open, whose reader would otherwise keep its partial snapshot
// until the idle timeout, and a peer opening many would make the node
// hold a snapshot's worth on each.
func (l *Listener) identified(msg *connIdentified) {
	c, ok := l.conns[msg.id]
	if !ok {
		return
	}
	c.peer = msg.peer
	for id, o := range l.conns {
		if o.peer != msg.peer || id == msg.id || o.replaced {
			continue
		}
		// Accepted later, identified first: the other is the newer.
		older := o
		if id > msg.id {
			older = c
		}
		// Its reader may have ended already, its connClosed on the way:
		// that, not this, says why it closed.
		older.replaced = true
		older.conn.Close()
		if older == c {
			return
		}
	}
	l.opts.Log.Info().Uint64("peer", msg.peer).Str("remote", c.remote).Msg("raft peer connected")
}

func (l *Listener) connClosed(msg *connClosed) {
	c, ok := l.conns[msg.id]
	if !ok {
		return // closed by closeAll, or by a previous incarnation
	}
	delete(l.conns, msg.id)
	if msg.reject == RejectDuplicateID {
		// Its reader logged the first refusal of that process; it redials.
		l.opts.Metrics.reject(msg.reject)
		l.opts.Log.Debug().Str("remote", c.remote).Err(msg.err).Msg("refused raft connection: its node id is held by another live process")
		return
	}
	if msg.reject != "" {
		l.opts.Metrics.reject(msg.reject)
		l.opts.Log.Warn().Str("remote", c.remote).Uint64("peer", c.peer).Str("reason", msg.reject).
			Err(msg.err).Msg("closed raft connection that broke the protocol")
		return
	}
	if c.replaced {
		l.opts.Log.Info().Str("remote", c.remote).Uint64("peer", c.peer).Err(msg.err).
			Msg("raft connection closed: its peer opened a newer one")
		return
	}
	var ev *zerolog.Event
	if c.peer != 0 {
		ev = l.opts.Log.Info()
	} else {
		ev = l.opts.Log.Debug()
	}
	ev.Str("remote", c.remote).Uint64("peer", c.peer).Err(msg.err).Msg("raft connection closed")
}

func (l *Listener) closeAll() {
	for id, c := range l.conns {
		c.conn.Close()
		delete(l.conns, id)
	}
}
