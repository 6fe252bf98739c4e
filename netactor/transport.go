package netactor

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/raftactor"
)

// Peers is this node's raftactor.Transport: the table of peer id →
// PeerSender, which changes as brokers join and leave the cluster. Every
// group calls Send concurrently; the table is an immutable map replaced as a
// whole on each change (like Router), so they take no lock on it, only the
// read side of the entry they send through (see peer).
type Peers struct {
	self    uint64
	router  *Router
	sys     *actors.System
	opts    SenderOptions
	metrics *Metrics
	table   atomic.Pointer[map[uint64]*peer]
	leads   atomic.Pointer[func() []LeaderInfo] // Leads

	mu      sync.Mutex // serialises changes to table, tickers, spawned
	tickers []*raftactor.Ticker
	spawned map[uint64]int // senders spawned so far per peer, to name the next
	stopped bool
}

// peer is one entry of the Peers table.
//
// A sender leaving the table is retired with a PoisonPill, which goes
// through its mailbox behind every Outbound already there, so that its
// Stopping handler reports what it could not deliver (above all a MsgSnap,
// whose leader otherwise waits for its outcome forever). A message posted
// after the PoisonPill would be discarded unreported, so senders post under
// mu's read lock and give up an entry marked retired: retire takes the write
// lock, which waits for the posts in progress, before it posts the pill.
type peer struct {
	addr string
	pid  *actor.PID

	mu      sync.RWMutex
	retired bool
}

// post sends msg to the entry's sender unless it is retired, and reports
// whether it did.
func (e *peer) post(ctx actor.SenderContext, msg any) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.retired {
		return false
	}
	ctx.Send(e.pid, msg)
	return true
}

var _ raftactor.Transport = (*Peers)(nil)

// StartPeers spawns one PeerSender for each entry of peers (node id → raft
// address) and returns the Transport that feeds them; SetPeer and RemovePeer
// change the table later. router is where failures are reported back to the
// groups.
func StartPeers(sys *actors.System, self uint64, peers map[uint64]string, router *Router, opts SenderOptions) (*Peers, error) {
	opts = opts.withDefaults()
	var errs []error
	if self == 0 {
		errs = append(errs, errors.New("self is 0, which is not a raft node id"))
	}
	if router == nil {
		errs = append(errs, errors.New("router is nil"))
	}
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		if err := checkPeer(self, id, peers[id]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(append(errs, opts.validate())...); err != nil {
		return nil, fmt.Errorf("netactor: start peers: %w", err)
	}

	p := &Peers{self: self, router: router, sys: sys, opts: opts, metrics: opts.Metrics, spawned: make(map[uint64]int)}
	empty := map[uint64]*peer{}
	p.table.Store(&empty)
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		if err := p.SetPeer(id, peers[id]); err != nil {
			p.Stop()
			return nil, fmt.Errorf("netactor: start peers: %w", err)
		}
	}
	return p, nil
}

func checkPeer(self, id uint64, addr string) error {
	switch {
	case id == 0:
		return fmt.Errorf("peer at %q: id 0 is not a raft node id", addr)
	case id == self:
		return fmt.Errorf("peer %d at %q: that is this node", id, addr)
	case addr == "":
		return fmt.Errorf("peer %d: no address", id)
	}
	return nil
}

// SetPeer makes addr the raft address of peer id: it spawns a PeerSender
// (kind "peer", name "peer/<id>", or "peer/<id>.<n>" for the n-th after the
// first) for a new peer, or replaces the sender of a peer whose address
// changed, retiring the old one. The old sender handles what was already
// sent to it; what it still holds then is dropped and its groups hear
// Unreachable (and SnapshotStatus for a MsgSnap), as after a lost
// connection. Setting the address a peer already has does nothing.
func (p *Peers) SetPeer(id uint64, addr string) error {
	if err := checkPeer(p.self, id, addr); err != nil {
		return fmt.Errorf("netactor: set peer: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return fmt.Errorf("netactor: set peer %d: transport stopped", id)
	}
	old, ok := (*p.table.Load())[id]
	if ok && old.addr == addr {
		return nil
	}
	name := fmt.Sprintf("peer/%d", id)
	if n := p.spawned[id]; n > 0 {
		name = fmt.Sprintf("peer/%d.%d", id, n)
	}
	if ok {
		// Before the spawn: the successor's gauge has the same label.
		p.unsubscribe(id, old.pid)
	}
	self, router, root, opts, leads := p.self, p.router, p.sys.Root, p.opts, &p.leads
	pid, err := p.sys.Spawn("peer", name, func() actor.Actor {
		return newPeerSender(self, id, addr, router, root, leads, opts)
	})
	if err != nil {
		if ok {
			p.update(func(m map[uint64]*peer) { delete(m, id) })
			p.retire(old)
		}
		return fmt.Errorf("netactor: start sender for peer %d: %w", id, err)
	}
	p.spawned[id]++
	for _, t := range p.tickers {
		t.Subscribe(pid)
	}
	p.update(func(m map[uint64]*peer) { m[id] = &peer{addr: addr, pid: pid} })
	if ok {
		p.retire(old)
	}
	return nil
}

// RemovePeer drops peer id from the table and retires its sender, which
// handles what was already sent to it, reports what it still holds, and
// closes its connection: messages to id are then dropped and reported
// Unreachable, like those to any unknown node. Removing a peer that is not in
// the table does nothing.
func (p *Peers) RemovePeer(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, ok := (*p.table.Load())[id]
	if !ok {
		return
	}
	p.update(func(m map[uint64]*peer) { delete(m, id) })
	p.unsubscribe(id, old.pid)
	p.retire(old)
}

// unsubscribe detaches a sender that is leaving the table from the tickers
// and from the metrics. p.mu is held.
func (p *Peers) unsubscribe(id uint64, pid *actor.PID) {
	for _, t := range p.tickers {
		t.Unsubscribe(pid)
	}
	// The retiring sender keeps its own gauge; its successor, if any, gets a
	// fresh one.
	if p.metrics != nil {
		p.metrics.queuedBytes.DeleteLabelValues(strconv.FormatUint(id, 10))
	}
}

// retire stops the sender of e, which is no longer in the table, once it
// has handled everything already posted to it (see peer). p.mu is held.
func (p *Peers) retire(e *peer) {
	e.mu.Lock()
	e.retired = true
	e.mu.Unlock()
	p.sys.Root.Poison(e.pid)
}

func (p *Peers) update(change func(map[uint64]*peer)) {
	next := maps.Clone(*p.table.Load())
	change(next)
	p.table.Store(&next)
}

// Addrs returns the current table: peer id → raft address.
func (p *Peers) Addrs() map[uint64]string {
	table := *p.table.Load()
	addrs := make(map[uint64]string, len(table))
	for id, e := range table {
		addrs[id] = e.addr
	}
	return addrs
}

// Addr returns the raft address of peer id in the table, "" if it is not
// there.
func (p *Peers) Addr(id uint64) string {
	if e, ok := (*p.table.Load())[id]; ok {
		return e.addr
	}
	return ""
}

// Send implements raftactor.Transport: it hands each peer its share of msgs
// as one Outbound, without copying the messages. Messages to a node that is
// not in the table are dropped and reported to the group. A send racing with
// SetPeer or RemovePeer reaches either the old sender, which reports what it
// cannot deliver when it retires, or whatever the table holds after the
// change: every MsgSnap ends in exactly one SnapshotStatus.
func (p *Peers) Send(ctx actor.SenderContext, group uint64, msgs []*pb.Message) {
	if len(msgs) == 0 {
		return
	}
	// Usually every message goes to the same peer (one follower, or a
	// candidate's single vote answer): one pass, no map.
	first := msgs[0].GetTo()
	same := true
	for _, m := range msgs[1:] {
		if m.GetTo() != first {
			same = false
			break
		}
	}
	if same {
		// The caller keeps its slice; the sender gets its own.
		p.sendTo(ctx, group, first, slices.Clone(msgs))
		return
	}
	// A leader's heartbeats and appends go to every follower: split them
	// by peer, in order, one exact-size slice each. Peers are few, so a
	// scan per peer beats a map (this runs for every heartbeat).
	seen := make([]uint64, 0, 8)
	for i, m := range msgs {
		to := m.GetTo()
		if slices.Contains(seen, to) {
			continue // sent with the first message to that peer
		}
		seen = append(seen, to)
		n := 0
		for _, m := range msgs[i:] {
			if m.GetTo() == to {
				n++
			}
		}
		share := make([]*pb.Message, 0, n)
		for _, m := range msgs[i:] {
			if m.GetTo() == to {
				share = append(share, m)
			}
		}
		p.sendTo(ctx, group, to, share)
	}
}

func (p *Peers) sendTo(ctx actor.SenderContext, group, to uint64, msgs []*pb.Message) {
	if p.post(ctx, to, &Outbound{Group: group, Msgs: msgs}) {
		return
	}
	p.metrics.drop(DropUnknownPeer, len(msgs))
	pid, ok := p.router.Lookup(group)
	if !ok {
		return
	}
	for _, m := range msgs {
		if m.GetType() == pb.MessageType_MsgSnap {
			ctx.Send(pid, &raftactor.SnapshotStatus{To: to, Failed: true})
		}
	}
	ctx.Send(pid, &raftactor.Unreachable{To: to})
}

// SendControl hands data, an opaque control message, to the sender of peer
// to, to go out with its next frame: at once when the connection is up and
// idle, even if no raft traffic flows. It returns false, dropping nothing,
// when to is not in the table or data is larger than MaxControlBytes (or than
// a frame). Delivery is best effort: the sender holds the last
// maxQueuedControl messages until it is connected and loses those of a frame
// that fails, so a protocol built on it repeats its messages. data is copied.
func (p *Peers) SendControl(ctx actor.SenderContext, to uint64, data []byte) bool {
	if len(data) > MaxControlBytes || envelopeOverhead+controlOverhead+len(data) > p.opts.MaxFrameBytes {
		return false
	}
	return p.post(ctx, to, &outboundControl{data: slices.Clone(data)})
}

// post sends msg to the sender of peer to, and reports whether to is in the
// table. An entry retired since the table was loaded has been replaced or
// removed already, so the table is loaded again; each retry follows a change
// of the table, of which there are finitely many.
func (p *Peers) post(ctx actor.SenderContext, to uint64, msg any) bool {
	for {
		e, ok := (*p.table.Load())[to]
		if !ok {
			return false
		}
		if e.post(ctx, msg) {
			return true
		}
	}
}

// Broadcast sends what this node leads to every peer, with their next frame.
func (p *Peers) Broadcast(ctx actor.SenderContext, infos []LeaderInfo) {
	msg := &OutboundLeaders{Infos: infos}
	for _, e := range *p.table.Load() {
		// A retired entry's successor is not connected yet, and a sender
		// keeps leaderships only while connected.
		e.post(ctx, msg)
	}
}

// Leads sets what returns everything this node leads now, which a sender
// that connects sends its peer first, marked complete (leaders.go). It
// must be safe to call from any sender's actor and return a slice of its
// own. Until it is set the node counts as leading nothing: it runs no
// raft group that could lead.
func (p *Peers) Leads(f func() []LeaderInfo) { p.leads.Store(&f) }

// TickWith subscribes every PeerSender to t, those SetPeer spawns later
// included. A ticked sender coalesces heartbeats: when a peer gets many of
// them per tick (many groups), they wait for the next tick and travel
// together in one frame instead of one frame each, at the cost of up to a
// tick of delay.
func (p *Peers) TickWith(t *raftactor.Ticker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tickers = append(p.tickers, t)
	table := *p.table.Load()
	for _, id := range slices.Sorted(maps.Keys(table)) {
		t.Subscribe(table[id].pid)
	}
}

// Sender returns the PeerSender of peer, for the debug endpoint and tests.
func (p *Peers) Sender(peer uint64) (*actor.PID, bool) {
	e, ok := (*p.table.Load())[peer]
	if !ok {
		return nil, false
	}
	return e.pid, true
}

// IDs returns the peer ids in ascending order.
func (p *Peers) IDs() []uint64 {
	return slices.Sorted(maps.Keys(*p.table.Load()))
}

// Stop empties the table and retires every PeerSender, which closes its
// connection: later messages are dropped as addressed to unknown peers, and
// SetPeer fails.
func (p *Peers) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	table := *p.table.Load()
	empty := map[uint64]*peer{}
	p.table.Store(&empty)
	for id, e := range table {
		p.unsubscribe(id, e.pid)
		p.retire(e)
	}
}
