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
// whole on each change (like Router), so they take no lock.
type Peers struct {
	self    uint64
	router  *Router
	sys     *actors.System
	opts    SenderOptions
	metrics *Metrics
	table   atomic.Pointer[map[uint64]peer]

	mu      sync.Mutex // serialises changes to table, tickers, spawned
	tickers []*raftactor.Ticker
	spawned map[uint64]int // senders spawned so far per peer, to name the next
	stopped bool
}

// peer is one entry of the Peers table.
type peer struct {
	addr string
	pid  *actor.PID
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
	empty := map[uint64]peer{}
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
// changed, stopping the old one. What the old sender still held is dropped
// and its groups hear Unreachable, as after a lost connection. Setting the
// address a peer already has does nothing.
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
		p.stopSender(id, old.pid)
	}
	self, router, root, opts := p.self, p.router, p.sys.Root, p.opts
	pid, err := p.sys.Spawn("peer", name, func() actor.Actor {
		return newPeerSender(self, id, addr, router, root, opts)
	})
	if err != nil {
		if ok {
			p.update(func(m map[uint64]peer) { delete(m, id) })
		}
		return fmt.Errorf("netactor: start sender for peer %d: %w", id, err)
	}
	p.spawned[id]++
	for _, t := range p.tickers {
		t.Subscribe(pid)
	}
	p.update(func(m map[uint64]peer) { m[id] = peer{addr: addr, pid: pid} })
	return nil
}

// RemovePeer stops the sender of peer id, which closes its connection, and
// drops it from the table: messages to id are then dropped and reported
// Unreachable, like those to any unknown node. Removing a peer that is not in
// the table does nothing.
func (p *Peers) RemovePeer(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, ok := (*p.table.Load())[id]
	if !ok {
		return
	}
	p.update(func(m map[uint64]peer) { delete(m, id) })
	p.stopSender(id, old.pid)
}

// stopSender unsubscribes and stops a sender that is leaving the table.
// p.mu is held.
func (p *Peers) stopSender(id uint64, pid *actor.PID) {
	for _, t := range p.tickers {
		t.Unsubscribe(pid)
	}
	p.sys.Root.Stop(pid)
	// The stopping sender keeps its own gauge; its successor, if any, gets a
	// fresh one.
	if p.metrics != nil {
		p.metrics.queuedBytes.DeleteLabelValues(strconv.FormatUint(id, 10))
	}
}

func (p *Peers) update(change func(map[uint64]peer)) {
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

// Send implements raftactor.Transport: it hands each peer its share of msgs
// as one Outbound, without copying the messages. Messages to a node that is
// not in the table are dropped and reported to the group. A send racing with
// the removal of its peer may end in the stopped sender's dead letters, which
// raft takes as it takes any lost message.
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
	if e, ok := (*p.table.Load())[to]; ok {
		ctx.Send(e.pid, &Outbound{Group: group, Msgs: msgs})
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
	e, ok := (*p.table.Load())[to]
	if !ok {
		return false
	}
	ctx.Send(e.pid, &outboundControl{data: slices.Clone(data)})
	return true
}

// Broadcast sends what this node leads to every peer, with their next frame.
func (p *Peers) Broadcast(ctx actor.SenderContext, infos []LeaderInfo) {
	msg := &OutboundLeaders{Infos: infos}
	for _, e := range *p.table.Load() {
		ctx.Send(e.pid, msg)
	}
}

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
	return e.pid, ok
}

// IDs returns the peer ids in ascending order.
func (p *Peers) IDs() []uint64 {
	return slices.Sorted(maps.Keys(*p.table.Load()))
}

// Stop stops every PeerSender, which closes its connection, and empties the
// table: later messages are dropped as addressed to unknown peers, and
// SetPeer fails.
func (p *Peers) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for id, e := range *p.table.Load() {
		p.stopSender(id, e.pid)
	}
	empty := map[uint64]peer{}
	p.table.Store(&empty)
}
