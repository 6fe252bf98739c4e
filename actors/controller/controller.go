package controller

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/raftactor"
)

// ControllerGroup is the raft group id of the controller.
const ControllerGroup = 0

// checkEveryTicks paces the controller actor's reconciliation: often enough
// that a broker registers within a tick or two of a leader appearing, rarely
// enough to cost nothing.
const checkEveryTicks = 2

// Options configure the controller actor.
type Options struct {
	NodeID    uint64
	KafkaAddr string // advertised Kafka address
	RaftAddr  string
	Raft      *actor.PID // the controller group's actor
	Machine   *StateMachine
	Board     *raftactor.StatusBoard
	Log       zerolog.Logger
}

// NewActor returns the producer of the controller actor.
func NewActor(o Options) actor.Producer {
	return func() actor.Actor { return &controllerActor{o: o} }
}

type controllerActor struct {
	o        Options
	ticks    uint64
	inflight uint64 // id of the proposal awaiting its Proposed; 0 when none
	sentAt   uint64
	nextID   uint64
}

// proposalPatienceTicks is how long the actor waits for an answer before it
// proposes again; the raft group itself times proposals out well before.
const proposalPatienceTicks = 200

func (c *controllerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *raftactor.Tick:
		c.ticks++
		if c.ticks%checkEveryTicks == 0 {
			c.reconcile(ctx)
		}
	case *raftactor.Proposed:
		if m.ID != c.inflight {
			return
		}
		c.inflight = 0
		if m.Err != nil {
			c.o.Log.Debug().Err(m.Err).Msg("controller proposal failed; retrying")
		}
		c.reconcile(ctx)
	}
}

// reconcile proposes what this broker should have in the controller state
// but does not yet: one command at a time.
func (c *controllerActor) reconcile(ctx actor.Context) {
	if c.inflight != 0 && c.ticks-c.sentAt < proposalPatienceTicks {
		return
	}
	st := c.o.Board.Get(ControllerGroup)
	if st == nil || st.Leader == 0 {
		return // no leader: a proposal would only be dropped
	}
	view := c.o.Machine.View()
	var cmd *Command
	switch {
	case view.ClusterID == "" && st.Role == "leader":
		cmd = &Command{InitCluster: &InitCluster{ClusterID: newClusterID()}}
	case !c.registered(view):
		cmd = &Command{RegisterBroker: &RegisterBroker{NodeID: c.o.NodeID, KafkaAddr: c.o.KafkaAddr, RaftAddr: c.o.RaftAddr}}
	default:
		return
	}
	c.nextID++
	c.inflight, c.sentAt = c.nextID, c.ticks
	ctx.Send(c.o.Raft, &raftactor.Propose{ID: c.nextID, Data: cmd.Encode(), ReplyTo: ctx.Self()})
}

func (c *controllerActor) registered(view *State) bool {
	b, ok := view.Brokers[c.o.NodeID]
	return ok && b.KafkaAddr == c.o.KafkaAddr && b.RaftAddr == c.o.RaftAddr
}

func newClusterID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}
