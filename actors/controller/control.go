package controller

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
)

// Network is the peer transport as the controller actor uses it: it keeps
// the peer table in step with the membership and exchanges control
// messages, the few the cluster needs besides raft's own.
type Network interface {
	// SetPeer adds a peer, or moves it to a new address.
	SetPeer(id uint64, addr string) error
	// RemovePeer forgets a peer.
	RemovePeer(id uint64)
	// SendControl queues data for peer to; false when it is not a peer.
	SendControl(ctx actor.SenderContext, to uint64, data []byte) bool
}

// control is one control message between controller actors. Exactly one
// field is set. JSON, like commands: they are rare and small.
type control struct {
	Hello   *hello          `json:"hello,omitempty"`
	Removed *removedNotice  `json:"removed,omitempty"`
	Elect   *ElectPreferred `json:"elect,omitempty"`
	// A broker with a new data dir asks before it starts (probe.go).
	RegistrationQuery  *registrationQuery  `json:"registration_query,omitempty"`
	RegistrationAnswer *registrationAnswer `json:"registration_answer,omitempty"`
	// Stopping announces a controlled shutdown (AnnounceStop), and
	// StoppingSeen acknowledges it.
	Stopping     *stoppingNotice `json:"stopping,omitempty"`
	StoppingSeen *stoppingNotice `json:"stopping_seen,omitempty"`
}

// stoppingNotice tells the peers that a broker is about to stop: they hand
// it no leadership until it connects again (netactor.Liveness.Stopping).
// Its acknowledgement names the broker that saw it.
type stoppingNotice struct {
	NodeID uint64 `json:"node_id"`
}

// hello is what a broker that is not (yet) a member of the controller group
// sends its configured peers every second: the controller's leader adds it
// as a learner, or tells it that its id was removed.
type hello struct {
	NodeID    uint64 `json:"node_id"`
	RaftAddr  string `json:"raft_addr"`
	KafkaAddr string `json:"kafka_addr"`
	ClusterID string `json:"cluster_id,omitempty"` // as far as it knows
}

// removedNotice tells a broker that the cluster removed its id.
type removedNotice struct {
	NodeID    uint64 `json:"node_id"`
	ClusterID string `json:"cluster_id"`
}

func (c *control) encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("encode control message: %v", err)) // plain fields only: cannot fail
	}
	return b
}

func decodeControl(b []byte) (*control, error) {
	var c control
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode control message: %w", err)
	}
	return &c, nil
}

// sendControl sends m to peer to, if the transport knows it.
func (c *controllerActor) sendControl(ctx actor.Context, to uint64, m *control) {
	if c.o.Network != nil {
		c.o.Network.SendControl(ctx, to, m.encode())
	}
}

// onControl handles a control message from peer from.
func (c *controllerActor) onControl(ctx actor.Context, from uint64, data []byte) {
	m, err := decodeControl(data)
	if err != nil {
		if c.complainOnce(fmt.Sprintf("control from %d", from)) {
			c.o.Log.Warn().Err(err).Uint64("peer", from).Msg("dropping control message")
		}
		return
	}
	switch {
	case m.Hello != nil:
		if m.Hello.NodeID != from {
			if c.complainOnce(fmt.Sprintf("hello from %d as %d", from, m.Hello.NodeID)) {
				c.o.Log.Warn().Uint64("peer", from).Uint64("node_id", m.Hello.NodeID).Msg("dropping hello that names another node")
			}
			return
		}
		c.onHello(ctx, m.Hello)
	case m.Removed != nil:
		if !c.trustsRemoval(from, m.Removed) {
			if c.complainOnce(fmt.Sprintf("removal notice from %d", from)) {
				c.o.Log.Warn().Uint64("peer", from).Str("cluster_id", m.Removed.ClusterID).Msg("ignoring a removal notice from a broker that is not a voter of this cluster")
			}
			return
		}
		c.removed(fmt.Sprintf("broker %d told it that node %d was removed from cluster %s", from, c.o.NodeID, m.Removed.ClusterID))
	case m.Elect != nil:
		c.electPreferred(ctx, m.Elect, false)
	case m.RegistrationQuery != nil:
		if m.RegistrationQuery.NodeID != from {
			if c.complainOnce(fmt.Sprintf("registration query from %d as %d", from, m.RegistrationQuery.NodeID)) {
				c.o.Log.Warn().Uint64("peer", from).Uint64("node_id", m.RegistrationQuery.NodeID).Msg("dropping registration query that names another node")
			}
			return
		}
		c.answerRegistration(ctx, from, m.RegistrationQuery)
	case m.Stopping != nil:
		if m.Stopping.NodeID != from {
			if c.complainOnce(fmt.Sprintf("stopping notice from %d as %d", from, m.Stopping.NodeID)) {
				c.o.Log.Warn().Uint64("peer", from).Uint64("node_id", m.Stopping.NodeID).Msg("dropping a stopping notice that names another node")
			}
			return
		}
		if !c.o.Liveness.Stopping(from) {
			c.o.Log.Info().Uint64("peer", from).Msg("peer is stopping: no leadership is handed to it until it starts again")
		}
		c.o.Liveness.MarkStopping(from)
		c.sendControl(ctx, from, &control{StoppingSeen: &stoppingNotice{NodeID: c.o.NodeID}})
	case m.StoppingSeen != nil:
		if s := c.stopping; s != nil && m.StoppingSeen.NodeID == from {
			delete(s.unseen, from)
			s.doneIfSeen()
		}
	}
}

// stopAnnouncement is a clean stop's notice to the peers, until every
// peer that matters has acknowledged it.
type stopAnnouncement struct {
	unseen map[uint64]bool // the peers whose acknowledgement is awaited
	done   chan struct{}
}

func (s *stopAnnouncement) doneIfSeen() {
	if len(s.unseen) == 0 && s.done != nil {
		close(s.done)
		s.done = nil
	}
}

// stopNoticeEveryTicks paces the repetition of a stop's notice to the peers
// that have not acknowledged it: control messages are best effort.
const stopNoticeEveryTicks = 2

// announceStop tells every peer this broker knows, by config or by
// membership, that it is about to stop, and closes m.Done once every peer
// m.Alive reports has acknowledged it. The broker hands its leaderships
// over only then, so no peer hands one back meanwhile, nor picks this
// broker to hand one to.
func (c *controllerActor) announceStop(ctx actor.Context, m *AnnounceStop) {
	peers := make(map[uint64]bool)
	for id := range c.configPeers() {
		peers[id] = true
	}
	for id := range c.o.Machine.View().Brokers {
		peers[id] = true
	}
	delete(peers, c.o.NodeID)
	s := &stopAnnouncement{unseen: make(map[uint64]bool), done: m.Done}
	for id := range peers {
		if m.Alive == nil || m.Alive(id) {
			s.unseen[id] = true
		}
	}
	c.stopping = s
	notice := &control{Stopping: &stoppingNotice{NodeID: c.o.NodeID}}
	for id := range peers {
		c.sendControl(ctx, id, notice)
	}
	s.doneIfSeen()
}

// repeatStopNotice sends the stop's notice again to the peers that have not
// acknowledged it yet.
func (c *controllerActor) repeatStopNotice(ctx actor.Context) {
	s := c.stopping
	if s == nil || s.done == nil || c.ticks%stopNoticeEveryTicks != 0 {
		return
	}
	notice := &control{Stopping: &stoppingNotice{NodeID: c.o.NodeID}}
	for id := range s.unseen {
		c.sendControl(ctx, id, notice)
	}
}

// trustsRemoval reports whether a notice that this broker was removed may
// be believed: it must name this broker and this broker's cluster, and
// come from a voter of the controller group as this broker knows it (or,
// before it knows any, from a peer of its config). A removal cannot be
// undone, so one claim from anywhere is not enough.
func (c *controllerActor) trustsRemoval(from uint64, n *removedNotice) bool {
	view := c.o.Machine.View()
	if n.NodeID != c.o.NodeID || n.ClusterID == "" {
		return false
	}
	if view.ClusterID == "" {
		_, ok := c.configPeers()[from]
		return ok
	}
	return n.ClusterID == view.ClusterID && slices.Contains(view.Voters, from)
}
