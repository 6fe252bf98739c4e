package partition

import (
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/raftactor"
)

// A reassignment moves a partition to other brokers inside its raft group
// (raftactor.Reconciler): the leader adds the new replicas as learners,
// promotes them once caught up, and removes the leaving ones, itself last
// after handing its leadership over. When the voters are the target it
// tells the local controller actor, which proposes CompleteReassignment;
// brokers left out of the replicas then stop theirs and delete its data.

// Membership is a partition-like group's side of reassignments, shared by
// partitions and offsets-topic partitions; it runs in the group's actor.
type Membership struct {
	group      uint64
	controller *actor.PID
	rec        raftactor.Reconciler
	ticks      uint64
	reachedAt  uint64 // tick of the last ReassignmentReached sent
}

// reachedEveryTicks paces ReassignmentReached while the target holds and
// the controller has not completed the reassignment (20 ticks: 1 s at 50 ms).
const reachedEveryTicks = 20

// NewMembership returns the reassignment driver of group; it reports to
// the controller actor at controller (nil: nowhere).
func NewMembership(group uint64, controller *actor.PID, log zerolog.Logger) *Membership {
	return &Membership{group: group, controller: controller, rec: raftactor.Reconciler{Log: log}}
}

// Tick runs on every tick of the group's ready leader. Outside a
// reassignment, with the membership as assigned, it only compares.
func (ms *Membership) Tick(h *raftactor.Handle, ctx actor.Context, replicas, adding, removing []uint64) {
	ms.ticks++
	reassigning := len(adding) > 0 || len(removing) > 0
	if !reassigning && raftactor.InConf(h.ConfState(), replicas) {
		return
	}
	if !ms.rec.Reconcile(h, replicas, removing) || !reassigning || ms.controller == nil {
		return
	}
	if ms.reachedAt != 0 && ms.ticks-ms.reachedAt < reachedEveryTicks {
		return
	}
	ms.reachedAt = ms.ticks
	target := raftactor.Target(replicas, removing)
	ctx.Send(ms.controller, &controller.ReassignmentReached{Group: ms.group, Replicas: target})
}

// setAssignment takes the partition's new assignment. A leader's ISR
// keeps the replicas it has (those leaving until they are gone); the time
// rule adds the new ones once they catch up.
func (m *Machine) setAssignment(h *raftactor.Handle, a *SetAssignment) {
	m.replicas, m.adding, m.removing = a.Replicas, a.Adding, a.Removing
	m.noteSizes()
	if !m.ready {
		return
	}
	isr := slices.DeleteFunc(slices.Clone(m.isr), func(id uint64) bool { return !slices.Contains(m.replicas, id) })
	if !slices.Equal(isr, m.isr) {
		m.isr = isr
		m.publish(h)
	}
}

// setMatchQuorum holds acks=all batches for min.insync.replicas when it is
// above a majority of the group's voters (n; the replicas when unknown).
func (m *Machine) setMatchQuorum(n int) {
	if n == 0 {
		n = len(m.replicas)
	}
	m.matchQuorum = 0
	if m.o.Settings.MinInsyncReplicas > n/2+1 {
		m.matchQuorum = m.o.Settings.MinInsyncReplicas
	}
}
