package netactor

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// A node id belongs to one process at a time. Two processes started with
// the same node_id (a copied config, a machine restored from an image while
// the original still runs) would otherwise replace each other's connection
// on every peer (the Listener keeps one per peer id) for as long as both
// run: the peers would log the churn, count endless restarts, and their
// raft groups would hear, as one voter, two processes with different logs
// and votes.
//
// So the Listener keeps, for each peer id, the process whose messages it
// takes: the holder, named by its hello's incarnation. A hello that names
// another incarnation is refused while the holder's connection is open and
// has delivered a frame within HoldTimeout. The refusal is the one frame
// that travels from acceptor to dialer (Envelope.Refused): it names the
// holder, and the dialer reports it to its owner (SenderOptions.OnRefused),
// which stops a process that has not begun to serve. A holder that is gone
// loses its hold when its connection closes, which a process killed even
// with SIGKILL has its kernel do at once, or HoldTimeout after its last
// frame (a machine that died, a network cut): a restart is not refused
// for longer than that.
//
// This is Kafka's rule for broker registrations: the controller refuses
// one whose id has a live session with another incarnation id, with
// DUPLICATE_BROKER_REGISTRATION (ClusterControlManager.registerBroker).
// Kafka's session outlives a killed broker by broker.session.timeout.ms;
// here a hold ends with its connection.

// holdKeepalives is how many of a ticked sender's keepalive intervals a
// holder may stay silent before a newcomer may take its id.
const holdKeepalives = 4

// minHoldTimeout keeps a short tick from making a GC pause or a busy
// holder lose its id.
const minHoldTimeout = time.Second

// DefaultHoldTimeout is ListenerOptions.HoldTimeout when it is not set:
// HoldTimeout of the default 50 ms tick.
const DefaultHoldTimeout = holdKeepalives * keepaliveTicks * 50 * time.Millisecond

// HoldTimeout is the ListenerOptions.HoldTimeout that suits peers ticked
// every tick, as a broker's PeerSenders are: four of their keepalive
// intervals, and at least a second.
func HoldTimeout(tick time.Duration) time.Duration {
	return max(minHoldTimeout, holdKeepalives*keepaliveTicks*tick)
}

// holders is, for each peer id, the process this node takes its messages
// from. The connections' readers claim and release holds concurrently.
type holders struct {
	timeout time.Duration
	now     func() time.Time
	mu      sync.Mutex
	byPeer  map[uint64]*hold
}

func newHolders(timeout time.Duration, now func() time.Time) *holders {
	return &holders{timeout: timeout, now: now, byPeer: make(map[uint64]*hold)}
}

// hold is one process's hold on its node id at this node: its connection.
type hold struct {
	conn        uint64 // the Listener's id for the connection
	incarnation uint64
	remote      string
	last        atomic.Int64 // when its last frame arrived, in Unix nanoseconds
	// refused is the incarnation last refused while this one held the id
	// (under holders.mu): each newcomer is logged once, not at every dial.
	refused uint64
}

// claim makes conn, whose hello named peer and incarnation, the holder of
// peer, unless another process holds it: then it returns nil and that
// holder, and whether this is the first refusal of incarnation during its
// hold. A hello that names no incarnation (a peer that predates them) and
// one naming the holder's own (a reconnection) always take the hold.
func (hs *holders) claim(peer, incarnation, conn uint64, remote string) (claimed, holder *hold, first bool) {
	now := hs.now()
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if cur := hs.byPeer[peer]; cur != nil && cur.incarnation != incarnation && cur.incarnation != 0 && incarnation != 0 &&
		now.Sub(time.Unix(0, cur.last.Load())) < hs.timeout {
		first = cur.refused != incarnation
		cur.refused = incarnation
		return nil, cur, first
	}
	h := &hold{conn: conn, incarnation: incarnation, remote: remote}
	h.last.Store(now.UnixNano())
	hs.byPeer[peer] = h
	return h, nil, false
}

// heard records that a frame arrived on the holder's connection.
func (hs *holders) heard(h *hold) { h.last.Store(hs.now().UnixNano()) }

// release ends h's hold on peer, when its connection closes. A hold since
// taken by another connection is left alone.
func (hs *holders) release(peer uint64, h *hold) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.byPeer[peer] == h {
		delete(hs.byPeer, peer)
	}
}

// Refusal is a node's answer to a hello it refused: NodeID, the id that
// hello named, is held there by another live process.
type Refusal struct {
	NodeID uint64
	// Addr is the raft address the refusing node has for NodeID ("" when
	// it has none); Remote is where the holder's connection comes from.
	Addr, Remote string
}

// RefusedError is what a PeerSender learns when its peer refuses its
// hello (SenderOptions.OnRefused): another live process has this node's id.
type RefusedError struct {
	Peer     uint64 // the node that refused
	PeerAddr string // where it was dialled
	// Since is when this peer began refusing: its first refusal since a
	// connection to it last settled. A process that is refused for a
	// hold timeout on end is the second one of its id; one refused for a
	// moment met its predecessor's connection on its way out.
	Since time.Time
	Refusal
}

func (e *RefusedError) Error() string {
	addr := e.Addr
	if addr == "" {
		addr = "unknown"
	}
	return fmt.Sprintf("node id %d is in use by another live process (raft address %s, connected from %s): "+
		"peer %d at %s takes that id's messages from it and refused this process",
		e.NodeID, addr, e.Remote, e.Peer, e.PeerAddr)
}

// maxRefusalBytes bounds the one frame a dialer reads from its connection.
const maxRefusalBytes = 1024

// The wire form of a refusal (envelope.proto):
//
//	message Envelope { ... Refusal refused = 9; }
//	message Refusal  { uint64 node_id = 1; string addr = 2; string remote = 3; }
const (
	fieldEnvelopeRefused protowire.Number = 9

	fieldRefusalNodeID protowire.Number = 1
	fieldRefusalAddr   protowire.Number = 2
	fieldRefusalRemote protowire.Number = 3
)

func appendRefusal(dst []byte, r *Refusal) []byte {
	if r == nil {
		return dst
	}
	var body []byte
	body = protowire.AppendTag(body, fieldRefusalNodeID, protowire.VarintType)
	body = protowire.AppendVarint(body, r.NodeID)
	body = protowire.AppendTag(body, fieldRefusalAddr, protowire.BytesType)
	body = protowire.AppendString(body, r.Addr)
	body = protowire.AppendTag(body, fieldRefusalRemote, protowire.BytesType)
	body = protowire.AppendString(body, r.Remote)
	dst = protowire.AppendTag(dst, fieldEnvelopeRefused, protowire.BytesType)
	return protowire.AppendBytes(dst, body)
}

func decodeRefusal(b []byte) (*Refusal, error) {
	r := &Refusal{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, malformed("refusal tag", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldRefusalNodeID && typ == protowire.VarintType:
			r.NodeID, n = protowire.ConsumeVarint(b)
		case num == fieldRefusalAddr && typ == protowire.BytesType:
			r.Addr, n = protowire.ConsumeString(b)
		case num == fieldRefusalRemote && typ == protowire.BytesType:
			r.Remote, n = protowire.ConsumeString(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, malformed(fmt.Sprintf("refusal field %d", num), protowire.ParseError(n))
		}
		b = b[n:]
	}
	return r, nil
}
