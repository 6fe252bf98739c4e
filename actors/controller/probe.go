package controller

import (
	"fmt"
	"maps"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// A broker that starts on a new data dir knows nothing of the cluster: not
// its log, not whom it voted for, not which entries it acknowledged. If its
// node id is a registered broker, the others count it as a voter that
// holds everything it acknowledged, and a quorum that includes it could
// elect a leader without acknowledged writes. So before it starts any raft
// group it asks its configured peers whether they know a cluster in which
// its id is registered (a registrationQuery), as Kafka refuses a log dir
// that has not been formatted: it starts once a majority of the configured
// voters, itself included, know of no such cluster, and refuses to start
// as soon as one does.
//
// Registrations only grow while the id is not removed, so any broker's
// state that shows the id registered (or removed) is proof, however old.
// A state that does not show it is proof only if it is current (CaughtUp),
// or if it never held anything (a broker with a new data dir, still waiting
// or just started, knows as little as the asker: the founding members of a
// new cluster answer each other so). A founding member that starts after
// the others is a voter of the controller group but never registered: it
// never held data, and may start as today.

// registrationQuery asks a peer whether NodeID is registered in its
// cluster. RaftAddr lets a broker that does not know the asker answer it.
type registrationQuery struct {
	NodeID   uint64 `json:"node_id"`
	RaftAddr string `json:"raft_addr"`
}

// registrationAnswer answers a registrationQuery.
type registrationAnswer struct {
	NodeID    uint64 `json:"node_id"` // the asker
	ClusterID string `json:"cluster_id,omitempty"`
	Status    string `json:"status"`
}

// The statuses of a registrationAnswer.
const (
	// statusRegistered: the id is a registered broker of ClusterID.
	statusRegistered = "registered"
	// statusRemoved: the id was removed from ClusterID.
	statusRemoved = "removed"
	// statusUnknown: the id is not registered in a state that is current,
	// or that never held anything.
	statusUnknown = "unknown"
	// statusUnsure: the answerer's state is not current (it is replaying
	// its log, or has no quorum) and does not show the id; ask again.
	statusUnsure = "unsure"
)

const (
	// maxAskers bounds the brokers this one adds to its peers only to
	// answer their registration queries.
	maxAskers = 64
	// askerGraceTicks is how long such a broker stays a peer after its last
	// query (it asks every second).
	askerGraceTicks = 100
)

// asker is a broker added to the peers to answer its registration query.
type asker struct {
	addr string
	at   uint64 // tick of its last query
}

// answerRegistration answers a broker that asks whether its id is
// registered here, from this broker's controller state.
func (c *controllerActor) answerRegistration(ctx actor.Context, from uint64, q *registrationQuery) {
	view := c.o.Machine.View()
	a := &registrationAnswer{NodeID: q.NodeID, ClusterID: view.ClusterID}
	_, registered := view.Brokers[q.NodeID]
	switch {
	case view.IsRemoved(q.NodeID):
		a.Status = statusRemoved
	case registered:
		a.Status = statusRegistered
	case c.o.Machine.CaughtUp(), c.o.Fresh && view.ClusterID == "":
		a.Status = statusUnknown
	default:
		a.Status = statusUnsure
	}
	if a.Status == statusRegistered || a.Status == statusRemoved {
		if c.complainOnce(fmt.Sprintf("registration query from %d", from)) {
			c.o.Log.Warn().Uint64("node_id", from).Str("status", a.Status).Str("cluster_id", view.ClusterID).
				Msg("a broker with a new data dir asks to start with the node id of a broker of this cluster; told it to refuse")
		}
	}
	c.reachAsker(from, q.RaftAddr)
	c.sendControl(ctx, from, &control{RegistrationAnswer: a})
}

// reachAsker makes an asker a peer for a while, so that the answer reaches
// it: a broker joining with bootstrap off need not be in anyone's config.
func (c *controllerActor) reachAsker(id uint64, addr string) {
	if c.o.Network == nil || addr == "" || id == c.o.NodeID {
		return
	}
	if a, ok := c.mb.askers[id]; ok && a.addr == addr {
		a.at = c.ticks
		c.mb.askers[id] = a
		return
	}
	if c.peers[id] != "" || len(c.mb.askers) >= maxAskers {
		return
	}
	if err := c.o.Network.SetPeer(id, addr); err != nil {
		if c.complainOnce(fmt.Sprintf("asker %d at %s", id, addr)) {
			c.o.Log.Warn().Err(err).Uint64("peer", id).Str("addr", addr).Msg("cannot add a broker that asks whether it is registered")
		}
		return
	}
	c.peers[id] = addr
	c.mb.askers[id] = asker{addr: addr, at: c.ticks}
}

// ProbeOptions configure the probe actor (NewProbe).
type ProbeOptions struct {
	NodeID   uint64
	RaftAddr string // advertised, for peers that do not know this broker
	// Peers are the config's peers besides this broker; Voters is how many
	// the config names in all, this broker included.
	Peers  []uint64
	Voters int
	// Network and Router are the raft transport's, already running; the
	// probe is the Router's ControlSink while it runs.
	Network Network
	Router  *netactor.Router
	// EveryTicks is how many Ticks apart it asks again (about a second).
	EveryTicks uint64
	// Done receives the outcome once: nil when this broker may start its
	// raft groups, the refusal when it must not.
	Done chan<- *Refusal
	Log  zerolog.Logger
}

// Refusal is a peer's answer that this broker's node id belongs to a
// cluster it knows, so that this broker, having none of its data, must not
// start with it.
type Refusal struct {
	Peer      uint64 // the broker that answered
	ClusterID string
	Removed   bool // the id was removed from the cluster, not registered in it
}

// probeLogEvery is how many rounds of questions go by between two logs of
// the peers still awaited.
const probeLogEvery = 10

// NewProbe returns the producer of the actor a broker with a new data dir
// runs before it starts any raft group: it asks the peers whether they know
// a cluster in which its id is registered (see above), and answers their
// own questions while it waits: it knows of no cluster. It takes
// raftactor.Tick and netactor.ControlReceived.
func NewProbe(o ProbeOptions) actor.Producer {
	return func() actor.Actor {
		return &probe{o: o, answers: map[uint64]string{}}
	}
}

type probe struct {
	o       ProbeOptions
	ticks   uint64
	rounds  uint64
	answers map[uint64]string // peer → status of its latest answer
	done    bool
}

func (p *probe) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.o.Router.Set(netactor.ControlSink, ctx.Self())
		p.o.Log.Info().Uints64("peers", p.o.Peers).
			Msg("the data dir is new: asking the peers whether this node id is a registered broker before starting raft")
		p.ask(ctx)
	case *actor.Stopping:
		p.o.Router.Remove(netactor.ControlSink)
	case *raftactor.Tick:
		p.tick(ctx)
	case *netactor.ControlReceived:
		p.onControl(ctx, m.From, m.Data)
	}
}

// tick asks again every EveryTicks, and now and then logs whom it waits for.
func (p *probe) tick(ctx actor.SenderContext) {
	p.ticks++
	if p.done || p.ticks%max(p.o.EveryTicks, 1) != 0 {
		return
	}
	p.ask(ctx)
	if p.rounds%probeLogEvery == 0 {
		var waiting, unsure []uint64
		for _, id := range p.o.Peers {
			switch p.answers[id] {
			case statusUnknown:
			case statusUnsure:
				unsure = append(unsure, id)
			default:
				waiting = append(waiting, id)
			}
		}
		p.o.Log.Warn().Uints64("silent", waiting).Uints64("not_caught_up", unsure).Int("need", p.need()).
			Msg("still waiting for peers to say whether this node id is a registered broker; raft is not started until a majority of the voters answer")
	}
}

// ask sends the question to every peer that has not answered for good.
func (p *probe) ask(ctx actor.SenderContext) {
	p.rounds++
	q := (&control{RegistrationQuery: &registrationQuery{NodeID: p.o.NodeID, RaftAddr: p.o.RaftAddr}}).encode()
	for _, id := range p.o.Peers {
		if p.answers[id] != statusUnknown {
			p.o.Network.SendControl(ctx, id, q)
		}
	}
}

// need is how many more peers must answer unknown.
func (p *probe) need() int {
	n := p.o.Voters/2 + 1 - 1 // a majority, less this broker
	for _, s := range p.answers {
		if s == statusUnknown {
			n--
		}
	}
	return max(n, 0)
}

func (p *probe) onControl(ctx actor.SenderContext, from uint64, data []byte) {
	if !slices.Contains(p.o.Peers, from) {
		return
	}
	m, err := decodeControl(data)
	if err != nil {
		return
	}
	switch {
	case m.RegistrationQuery != nil && m.RegistrationQuery.NodeID == from:
		// A broker that is waiting knows of no cluster at all.
		a := &registrationAnswer{NodeID: from, Status: statusUnknown}
		p.o.Network.SendControl(ctx, from, (&control{RegistrationAnswer: a}).encode())
	case m.RegistrationAnswer != nil && m.RegistrationAnswer.NodeID == p.o.NodeID:
		p.onAnswer(from, m.RegistrationAnswer)
	}
}

func (p *probe) onAnswer(from uint64, a *registrationAnswer) {
	if p.done {
		return
	}
	switch a.Status {
	case statusRegistered, statusRemoved:
		p.finish(&Refusal{Peer: from, ClusterID: a.ClusterID, Removed: a.Status == statusRemoved})
		return
	case statusUnknown, statusUnsure:
		if p.answers[from] != statusUnknown {
			p.answers[from] = a.Status
		}
	}
	if p.need() == 0 {
		known := slices.Sorted(maps.Keys(p.answers))
		known = slices.DeleteFunc(known, func(id uint64) bool { return p.answers[id] != statusUnknown })
		p.o.Log.Info().Uints64("answered", known).Msg("a majority of the voters know no cluster where this node id is registered; starting")
		p.finish(nil)
	}
}

func (p *probe) finish(r *Refusal) {
	p.done = true
	p.o.Done <- r
}
