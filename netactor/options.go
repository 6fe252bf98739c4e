package netactor

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Defaults for the transport's options.
const (
	// DefaultMaxFrameBytes is the largest frame body accepted from a peer. It
	// must stay above the largest record batch a topic accepts plus the
	// envelope and raft message overhead, or that batch can never replicate.
	DefaultMaxFrameBytes = 32 << 20

	// DefaultPeerQueueBytes bounds what one PeerSender holds for its peer.
	DefaultPeerQueueBytes = 64 << 20

	// DefaultBulkBytesPerFrame bounds the appends and snapshots in one frame,
	// and so how long a heartbeat can wait behind them.
	DefaultBulkBytesPerFrame = 1 << 20

	DefaultDialTimeout  = 2 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultBackoffMin   = 50 * time.Millisecond
	DefaultBackoffMax   = time.Second
	DefaultHelloTimeout = 5 * time.Second
)

// MinFrameBytes is the smallest MaxFrameBytes the transport accepts: the
// framing of one raft message sent alone, with no room for its content.
// configs.Validate refuses a smaller raft.max_frame_bytes with the same
// bound, so that a config it accepts cannot fail here at startup.
const MinFrameBytes = envelopeOverhead + batchOverhead + msgOverhead

// An inbound connection that stays silent for several keepalive intervals
// of its sender is half-open or its peer is stalled (perhaps mid-frame);
// its reader closes it rather than wait for TCP, which may take minutes,
// holding the reader and its partial frame. The floor keeps a short tick
// from making a few delayed keepalives (a GC pause, a busy sender) fatal,
// and leaves room for peers ticked more slowly than this broker (a rolling
// change of tick_ms): a sender ticked up to every 3 s still keeps it open.
const (
	idleKeepalives = 6
	minIdleTimeout = 30 * time.Second
)

// QuietWindow is the Liveness.WakeOnLoss window that suits peers ticked
// every tick: two of their keepalive intervals, so that a peer that
// stopped sending (a cut link, a hung process) wakes the quiet groups
// that depend on it about as soon as raft's election timeout would
// notice it, and a keepalive a little late does not.
func QuietWindow(tick time.Duration) time.Duration {
	return 2 * keepaliveTicks * tick
}

// IdleTimeout is the ListenerOptions.IdleTimeout that suits peers ticked
// every tick, as a broker's PeerSenders are: six of their keepalive
// intervals (keepaliveTicks ticks each), and at least thirty seconds.
func IdleTimeout(tick time.Duration) time.Duration {
	return max(minIdleTimeout, idleKeepalives*keepaliveTicks*tick)
}

// SenderOptions configure every PeerSender of a node.
type SenderOptions struct {
	// MaxFrameBytes is the largest frame body the peers accept (their
	// ListenerOptions.MaxFrameBytes). A message that cannot fit in a frame on
	// its own is dropped rather than sent to a peer that would reject it,
	// unless it is a MsgSnap, which is streamed in chunks (snapshot.go).
	MaxFrameBytes int
	// QueueBytes bounds the messages queued for one peer (PeerQueueBytes in
	// the config); past it the newest appends are dropped. At least
	// MaxFrameBytes.
	QueueBytes int
	// BulkBytesPerFrame bounds the MsgApp/MsgSnap bytes in one frame; a
	// snapshot streamed in chunks takes half of it per frame.
	BulkBytesPerFrame int
	// MaxSnapshotBytes is the largest snapshot data the peers accept
	// (their ListenerOptions.MaxSnapshotBytes): a MsgSnap too large for a
	// frame is streamed in chunks up to it, and dropped above it. At least
	// MaxFrameBytes.
	MaxSnapshotBytes int
	DialTimeout      time.Duration
	// WriteTimeout bounds one frame's write; a peer that stops reading for
	// longer loses its connection, and its groups hear Unreachable.
	WriteTimeout time.Duration
	// BackoffMin and BackoffMax bound the delay between reconnection attempts,
	// which doubles (with jitter) from min to max while the peer stays away.
	BackoffMin, BackoffMax time.Duration

	// Incarnation names this node's process in every hello it sends
	// (Envelope.Incarnation): a value of its own for each start, never
	// 0, so that its peers tell a restart from a reconnection
	// (Liveness.Restarts). 0 sends none, as a node that predates it.
	Incarnation uint64

	// Quiesces announces in every hello that this node's raft groups
	// follow quiet leaders and are woken when its transport loses the
	// peer (Envelope.Quiesces, Liveness.Quiet): set it only on a node
	// whose Liveness wakes them (WakeOnLoss).
	Quiesces bool

	// Liveness tells which peers announced a clean stop: losing one of
	// them, and failing to reach it, is routine and logged at info, not
	// as a warning. May be nil.
	Liveness *Liveness

	// OnRefused is called, from a PeerSender's actor, each time a peer
	// refuses its hello because another live process holds this node's
	// id there (hold.go), with the time that peer began refusing
	// (RefusedError.Since). It must not block. May be nil.
	OnRefused func(*RefusedError)

	Metrics *Metrics // may be nil
	Log     zerolog.Logger
}

func (o SenderOptions) withDefaults() SenderOptions {
	setDefault(&o.MaxFrameBytes, DefaultMaxFrameBytes)
	setDefault(&o.QueueBytes, max(DefaultPeerQueueBytes, o.MaxFrameBytes))
	setDefault(&o.BulkBytesPerFrame, DefaultBulkBytesPerFrame)
	setDefault(&o.MaxSnapshotBytes, max(DefaultMaxSnapshotBytes, o.MaxFrameBytes))
	setDefault(&o.DialTimeout, DefaultDialTimeout)
	setDefault(&o.WriteTimeout, DefaultWriteTimeout)
	setDefault(&o.BackoffMin, DefaultBackoffMin)
	setDefault(&o.BackoffMax, max(DefaultBackoffMax, o.BackoffMin))
	return o
}

func (o SenderOptions) validate() error {
	var errs []error
	if o.MaxFrameBytes < MinFrameBytes {
		errs = append(errs, fmt.Errorf("MaxFrameBytes %d is too small: the least is %d", o.MaxFrameBytes, MinFrameBytes))
	}
	if o.QueueBytes < o.MaxFrameBytes {
		errs = append(errs, fmt.Errorf("QueueBytes %d is below MaxFrameBytes %d: a message that fits a frame must fit the queue", o.QueueBytes, o.MaxFrameBytes))
	}
	if o.MaxSnapshotBytes < o.MaxFrameBytes {
		errs = append(errs, fmt.Errorf("MaxSnapshotBytes %d is below MaxFrameBytes %d", o.MaxSnapshotBytes, o.MaxFrameBytes))
	}
	if o.BackoffMax < o.BackoffMin {
		errs = append(errs, fmt.Errorf("BackoffMax %s is below BackoffMin %s", o.BackoffMax, o.BackoffMin))
	}
	return errors.Join(errs...)
}

// ListenerOptions configure the Listener actor.
type ListenerOptions struct {
	Self          uint64 // this node's id; a hello addressed elsewhere is refused
	MaxFrameBytes int    // largest frame body accepted; a larger one closes the connection
	// MaxSnapshotBytes is the largest snapshot data accepted in chunks
	// (snapshot.go); a stream announcing more closes the connection. It
	// also bounds the snapshots being received from all peers together:
	// one that would exceed it is refused and skipped. At least
	// MaxFrameBytes.
	MaxSnapshotBytes int
	// HelloTimeout bounds how long a new connection may take to say who it is.
	HelloTimeout time.Duration
	// IdleTimeout closes a connection on which nothing arrives for this
	// long after its hello (see IdleTimeout); 0 never does, which suits
	// only peers whose senders are not ticked and so send no keepalives.
	IdleTimeout time.Duration
	Router      *Router  // where received messages go
	Metrics     *Metrics // may be nil
	// Liveness records every frame received from each peer; may be nil.
	Liveness *Liveness
	// Leaders keeps what peers say they lead; nil drops it.
	Leaders LeaderBoard
	// HoldTimeout is how long a peer's process keeps its node id once its
	// connection has gone silent (hold.go): until then a hello naming
	// another process of that id is refused. See HoldTimeout;
	// DefaultHoldTimeout when 0.
	HoldTimeout time.Duration
	// PeerAddr returns the raft address this node has for a peer id, ""
	// if none; a refusal names it. May be nil.
	PeerAddr func(id uint64) string
	Log      zerolog.Logger
}

func (o ListenerOptions) withDefaults() ListenerOptions {
	setDefault(&o.MaxFrameBytes, DefaultMaxFrameBytes)
	setDefault(&o.MaxSnapshotBytes, max(DefaultMaxSnapshotBytes, o.MaxFrameBytes))
	setDefault(&o.HelloTimeout, DefaultHelloTimeout)
	setDefault(&o.HoldTimeout, DefaultHoldTimeout)
	return o
}

func (o ListenerOptions) validate() error {
	var errs []error
	if o.Self == 0 {
		errs = append(errs, errors.New("self id is 0, which is not a raft node id"))
	}
	if o.Router == nil {
		errs = append(errs, errors.New("router is nil"))
	}
	if o.MaxSnapshotBytes < o.MaxFrameBytes {
		errs = append(errs, fmt.Errorf("MaxSnapshotBytes %d is below MaxFrameBytes %d", o.MaxSnapshotBytes, o.MaxFrameBytes))
	}
	return errors.Join(errs...)
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
