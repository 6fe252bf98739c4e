package netactor

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/raftactor"
)

// Peers is this node's raftactor.Transport: a fixed table of peer id →
// PeerSender. It holds no mutable state, so every group may call Send
// concurrently.
type Peers struct {
	self    uint64
	senders map[uint64]*actor.PID
	router  *Router
	metrics *Metrics
	root    *actor.RootContext
}

var _ raftactor.Transport = (*Peers)(nil)

// StartPeers spawns one PeerSender (kind "peer", name "peer/<id>") for each
// entry of peers (node id → raft address) and returns the Transport that
// feeds them. router is where failures are reported back to the groups.
func StartPeers(sys *actors.System, self uint64, peers map[uint64]string, router *Router, opts SenderOptions) (*Peers, error) {
	opts = opts.withDefaults()
	var errs []error
	if self == 0 {
		errs = append(errs, errors.New("self is 0, which is not a raft node id"))
	}
	if router == nil {
		errs = append(errs, errors.New("router is nil"))
	}
	for id, addr := range peers {
		if id == 0 || id == self || addr == "" {
			errs = append(errs, fmt.Errorf("peer %d at %q: need a non-zero id other than self and an address", id, addr))
		}
	}
	if err := errors.Join(append(errs, opts.validate())...); err != nil {
		return nil, fmt.Errorf("netactor: start peers: %w", err)
	}

	p := &Peers{self: self, senders: make(map[uint64]*actor.PID, len(peers)), router: router, metrics: opts.Metrics, root: sys.Root}
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		addr := peers[id]
		pid, err := sys.Spawn("peer", fmt.Sprintf("peer/%d", id), func() actor.Actor {
			return newPeerSender(self, id, addr, router, sys.Root, opts)
		})
		if err != nil {
			p.Stop()
			return nil, fmt.Errorf("netactor: start sender for peer %d: %w", id, err)
		}
		p.senders[id] = pid
	}
	return p, nil
}

// Send implements raftactor.Transport: it hands each peer its share of msgs
// as one Outbound, without copying the messages. Messages to a node that is
// not in the table are dropped and reported to the group.
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
	if pid, ok := p.senders[to]; ok {
		ctx.Send(pid, &Outbound{Group: group, Msgs: msgs})
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

// Broadcast sends what this node leads to every peer, with their next frame.
func (p *Peers) Broadcast(ctx actor.SenderContext, infos []LeaderInfo) {
	msg := &OutboundLeaders{Infos: infos}
	for _, pid := range p.senders {
		ctx.Send(pid, msg)
	}
}

// TickWith subscribes every PeerSender to t. A ticked sender coalesces
// heartbeats: when a peer gets many of them per tick (many groups), they
// wait for the next tick and travel together in one frame instead of one
// frame each, at the cost of up to a tick of delay.
func (p *Peers) TickWith(t *raftactor.Ticker) {
	for _, id := range p.IDs() {
		t.Subscribe(p.senders[id])
	}
}

// Sender returns the PeerSender of peer, for the debug endpoint and tests.
func (p *Peers) Sender(peer uint64) (*actor.PID, bool) {
	pid, ok := p.senders[peer]
	return pid, ok
}

// IDs returns the peer ids in ascending order.
func (p *Peers) IDs() []uint64 {
	return slices.Sorted(maps.Keys(p.senders))
}

// Stop stops every PeerSender, which closes its connection. Send must not be
// called afterwards: its messages would go to dead letters.
func (p *Peers) Stop() {
	for _, pid := range p.senders {
		p.root.Stop(pid)
	}
}
