package controller

import (
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/flotilla/flotilla/raftactor"
)

// alterReassignments validates each move against the applied state,
// proposes the valid ones and answers once all are decided.
func (c *controllerActor) alterReassignments(ctx actor.Context, m *AlterReassignments) {
	view := c.o.Machine.View()
	errs := make([]error, len(m.Moves))
	waiting := 0
	reply := func() {
		if m.ReplyTo != nil {
			ctx.Send(m.ReplyTo, &AlterReassignmentsDone{Ref: m.Ref, Errs: errs})
		}
	}
	for i, mv := range m.Moves {
		cmd, err := planMove(view, mv)
		if err != nil {
			errs[i] = err
			continue
		}
		waiting++
		c.propose(ctx, &Command{Reassign: cmd}, func(p *raftactor.Proposed) {
			if p.Err != nil {
				errs[i] = proposalError(p.Err)
			}
			if waiting--; waiting == 0 {
				reply()
			}
		})
	}
	if waiting == 0 {
		reply()
	}
}

// planMove checks one move as Kafka does and returns its command.
func planMove(view *State, mv Move) (*Reassign, error) {
	t := view.Topics[mv.Topic]
	if t == nil || mv.Partition < 0 || int(mv.Partition) >= len(t.Partitions) {
		return nil, fmt.Errorf("%w: %s-%d", kerr.UnknownTopicOrPartition, mv.Topic, mv.Partition)
	}
	p := t.Partitions[mv.Partition]
	if mv.Replicas == nil {
		// Any move under way, as in Kafka, which keeps a move that only
		// removes replicas until the replicas it keeps are in the ISR;
		// the Kafka front door refuses a cancel of one Kafka would have
		// ended (kafka.Service.reassignmentListed). Cancelling a
		// cancellation changes nothing.
		if !p.Reassigning() {
			return nil, fmt.Errorf("%w: %s-%d", kerr.NoReassignmentInProgress, mv.Topic, mv.Partition)
		}
		return &Reassign{Topic: t.ID, Partition: p.Index}, nil
	}
	if len(mv.Replicas) == 0 {
		return nil, fmt.Errorf("%w: %s-%d: no replicas", kerr.InvalidReplicaAssignment, mv.Topic, mv.Partition)
	}
	for i, id := range mv.Replicas {
		if slices.Contains(mv.Replicas[:i], id) {
			return nil, fmt.Errorf("%w: %s-%d: broker %d repeated", kerr.InvalidReplicaAssignment, mv.Topic, mv.Partition, id)
		}
		if _, ok := view.Brokers[id]; !ok || !view.canHost(id) {
			return nil, fmt.Errorf("%w: %s-%d: broker %d is not a member of the cluster (or is leaving it)", kerr.InvalidReplicaAssignment, mv.Topic, mv.Partition, id)
		}
	}
	return &Reassign{Topic: t.ID, Partition: p.Index, Target: slices.Clone(mv.Replicas)}, nil
}

// reassignmentReached proposes the end of a reassignment whose target a
// partition's group reached, unless one is in flight or it is already over.
func (c *controllerActor) reassignmentReached(ctx actor.Context, m *ReassignmentReached) {
	if c.completing[m.Group] {
		return
	}
	view := c.o.Machine.View()
	var moves uint32
	found := false
	for _, t := range view.Topics {
		for _, p := range t.Partitions {
			if p.Group == m.Group && p.Reassigning() && slices.Equal(p.Target(), m.Replicas) {
				found, moves = true, p.Moves
			}
		}
	}
	if !found {
		return
	}
	c.completing[m.Group] = true
	cmd := &CompleteReassignment{Group: m.Group, Replicas: slices.Clone(m.Replicas), Moves: moves}
	c.propose(ctx, &Command{CompleteReassignment: cmd}, func(*raftactor.Proposed) {
		delete(c.completing, m.Group)
	})
}

// electPreferred asks the group's raft node on this broker to request a
// transfer to the preferred replica (raft forwards it to the leader), or,
// without a local replica and when asked by a Kafka client here, asks the
// preferred replica's broker to.
func (c *controllerActor) electPreferred(ctx actor.Context, m *ElectPreferred, forward bool) {
	if c.o.Router != nil {
		if pid, ok := c.o.Router.Lookup(m.Group); ok {
			ctx.Send(pid, &raftactor.TransferLeader{To: m.Preferred})
			return
		}
	}
	if forward && m.Preferred != c.o.NodeID {
		c.sendControl(ctx, m.Preferred, &control{Elect: m})
	}
}
