package kafka

import (
	"errors"
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/raftactor"
)

// Partition reassignments (KIP-455). AlterPartitionReassignments goes to
// the controller actor, which validates each move against the applied
// state (unknown partitions, bad replica lists, cancelling nothing) and
// proposes the valid ones; the partitions' leaders then carry them out.
// ListPartitionReassignments reads the applied state. The offsets topic
// may be reassigned like any other, as in Kafka.

// alterCall is an AlterPartitionReassignments waiting for the controller.
type alterCall struct {
	r    *Request
	resp *kmsg.AlterPartitionAssignmentsResponse
	// moves are the moves not decided yet, and slots their response
	// partitions, in the same order, as indexes into resp.Topics and
	// their Partitions.
	moves []controller.Move
	slots [][2]int
	// unsure marks the moves sent again after the controller's leader
	// changed under them: the earlier proposal may have been applied.
	unsure []bool
	ticks  uint64 // left before the request times out
	// retryIn counts down the ticks until moves are sent to the controller
	// again; 0 while an answer is awaited.
	retryIn uint64
}

// alterRetryMs is how long a move the controller group could not take,
// for want of a leader, waits before it is sent again: Kafka's
// retry.backoff.ms, with which a broker forwards such a request to the
// controller again until the request's timeout.
const alterRetryMs = 100

func (c *serviceConn) alterReassignments(ctx actor.Context, r *Request, req *kmsg.AlterPartitionAssignmentsRequest) {
	resp := req.ResponseKind().(*kmsg.AlterPartitionAssignmentsResponse)
	call := &alterCall{r: r, resp: resp, ticks: c.s.ticks(req.TimeoutMillis)}
	view := c.s.Machine.View()
	for ti, t := range req.Topics {
		rt := kmsg.NewAlterPartitionAssignmentsResponseTopic()
		rt.Topic = t.Topic
		for pi, p := range t.Partitions {
			rp := kmsg.NewAlterPartitionAssignmentsResponseTopicPartition()
			rp.Partition = p.Partition
			move := controller.Move{Topic: t.Topic, Partition: p.Partition}
			if p.Replicas == nil && c.s.endedInKafka(view, t.Topic, p.Partition) {
				err := fmt.Errorf("%w: %s-%d only removes replicas, which Kafka has done: the replicas it keeps are in the ISR", kerr.NoReassignmentInProgress, t.Topic, p.Partition)
				rp.ErrorCode, rp.ErrorMessage = code(err), message(err)
			}
			if p.Replicas != nil { // null cancels
				move.Replicas = make([]uint64, 0, len(p.Replicas))
				for _, id := range p.Replicas {
					if id < 0 {
						err := fmt.Errorf("%w: broker id %d", kerr.InvalidReplicaAssignment, id)
						rp.ErrorCode, rp.ErrorMessage = code(err), message(err)
						break
					}
					move.Replicas = append(move.Replicas, uint64(id))
				}
			}
			if rp.ErrorCode == 0 {
				call.moves = append(call.moves, move)
				call.slots = append(call.slots, [2]int{ti, pi})
				call.unsure = append(call.unsure, false)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if len(call.moves) == 0 {
		ctx.Send(r.ReplyTo, r.Reply(resp))
		return
	}
	ref := c.ref()
	c.alters[ref] = call
	c.startTicking(ctx)
	ctx.Send(c.s.Controller, &controller.AlterReassignments{Ref: ref, Moves: call.moves, ReplyTo: ctx.Self()})
}

func (c *serviceConn) alterReassignmentsDone(ctx actor.Context, m *controller.AlterReassignmentsDone) {
	call, ok := c.alters[m.Ref]
	if !ok {
		return // answered already: it timed out
	}
	var again []controller.Move
	var slots [][2]int
	var unsure []bool
	for i, slot := range call.slots {
		var err error
		if i < len(m.Errs) {
			err = m.Errs[i]
		} else {
			err = fmt.Errorf("%w: the controller gave no answer for this partition", kerr.UnknownServerError)
		}
		// The controller group has no leader (an election, or its leader
		// changed under the proposal): as a Kafka broker forwarding to
		// its controller, ask again until the request's timeout rather
		// than answer NOT_CONTROLLER for a partition, which clients do
		// not retry (they look at the request's top-level error only).
		if errors.Is(err, kerr.NotController) {
			again, slots = append(again, call.moves[i]), append(slots, slot)
			unsure = append(unsure, call.unsure[i] || errors.Is(err, raftactor.ErrLeaderChanged))
			continue
		}
		// A cancel asked again finds nothing to cancel when the first
		// proposal was applied after all: it did what was asked. (A move
		// asked again proposes the same target, which changes nothing.)
		if call.unsure[i] && call.moves[i].Replicas == nil && errors.Is(err, kerr.NoReassignmentInProgress) {
			err = nil
		}
		rp := &call.resp.Topics[slot[0]].Partitions[slot[1]]
		rp.ErrorCode, rp.ErrorMessage = code(err), message(err)
	}
	if len(again) > 0 {
		call.moves, call.slots, call.unsure = again, slots, unsure
		call.retryIn = c.s.ticks(alterRetryMs)
		return
	}
	delete(c.alters, m.Ref)
	ctx.Send(call.r.ReplyTo, call.r.Reply(call.resp))
	c.stopTickingIfIdle(ctx)
}

// tickAlters sends again the moves waiting for the controller group to
// have a leader, and times out the reassignment requests whose controller
// answer did not come in time: as Kafka does, REQUEST_TIMED_OUT for the
// request and for each partition it was waiting on. The moves may still
// be applied; ListPartitionReassignments shows them if so.
func (c *serviceConn) tickAlters(ctx actor.Context) {
	for ref, call := range c.alters {
		if call.ticks--; call.ticks > 0 {
			if call.retryIn > 0 {
				if call.retryIn--; call.retryIn == 0 {
					ctx.Send(c.s.Controller, &controller.AlterReassignments{Ref: ref, Moves: call.moves, ReplyTo: ctx.Self()})
				}
			}
			continue
		}
		delete(c.alters, ref)
		err := fmt.Errorf("%w: the controller did not answer within the request's timeout", kerr.RequestTimedOut)
		call.resp.ErrorCode, call.resp.ErrorMessage = code(err), message(err)
		for _, slot := range call.slots {
			rp := &call.resp.Topics[slot[0]].Partitions[slot[1]]
			rp.ErrorCode, rp.ErrorMessage = code(err), message(err)
		}
		ctx.Send(call.r.ReplyTo, call.r.Reply(call.resp))
	}
}

// listReassignments answers from the applied controller state: the
// partitions asked for (all, for null topics) that are being reassigned,
// as Kafka would list them (reassignmentListed). As in Kafka, unknown
// topics and partitions, and those not moving, are left out.
func (s *Service) listReassignments(req *kmsg.ListPartitionReassignmentsRequest) *kmsg.ListPartitionReassignmentsResponse {
	resp := req.ResponseKind().(*kmsg.ListPartitionReassignmentsResponse)
	view := s.Machine.View()
	var refs []controller.PartitionRef
	if req.Topics == nil {
		for _, ref := range view.Reassignments() {
			if s.reassignmentListed(ref.Topic, ref.Partition) {
				refs = append(refs, ref)
			}
		}
	} else {
		for _, rt := range req.Topics {
			t := view.Topics[rt.Topic]
			if t == nil {
				continue
			}
			for _, p := range rt.Partitions {
				if p >= 0 && int(p) < len(t.Partitions) && s.reassignmentListed(t, t.Partitions[p]) {
					refs = append(refs, controller.PartitionRef{Topic: t, Partition: t.Partitions[p]})
				}
			}
		}
	}
	for _, ref := range refs {
		i := slices.IndexFunc(resp.Topics, func(t kmsg.ListPartitionReassignmentsResponseTopic) bool { return t.Topic == ref.Topic.Name })
		if i < 0 {
			rt := kmsg.NewListPartitionReassignmentsResponseTopic()
			rt.Topic = ref.Topic.Name
			resp.Topics = append(resp.Topics, rt)
			i = len(resp.Topics) - 1
		}
		rp := kmsg.NewListPartitionReassignmentsResponseTopicPartition()
		rp.Partition = ref.Partition.Index
		rp.Replicas = brokerIDs(ref.Partition.Replicas)
		rp.AddingReplicas = brokerIDs(ref.Partition.Adding)
		rp.RemovingReplicas = brokerIDs(ref.Partition.Removing)
		resp.Topics[i].Partitions = append(resp.Topics[i].Partitions, rp)
	}
	return resp
}

// reassignmentListed reports whether Kafka would still list p's
// reassignment, and so cancel it. Kafka ends a cancelled reassignment in
// the cancelling record (cancelPartitionReassignment), and any other once
// the ISR less the replicas leaving holds every replica kept
// (PartitionReassignmentReplicas.maybeCompleteReassignment), in the record
// that starts it or at a later ISR change; it drops the leaving replicas
// then. Here raft takes them out of the group afterwards, so a move that
// only removes replicas is listed only while Kafka's would be: a shrink
// (any such move but one a cancel asked for, Partition.Cancelled, even a
// target naming the original replicas: Kafka reckons a move from the
// current replicas, ReplicationControlManager.changePartitionReassignment)
// while a replica it keeps is out of the ISR this broker knows, as
// Metadata reports it. Such a shrink is stuck, in Kafka too, and can be cancelled.
// A move adding replicas is listed until it completes.
func (s *Service) reassignmentListed(t *controller.Topic, p controller.Partition) bool {
	if !p.Reassigning() {
		return false
	}
	if len(p.Adding) > 0 {
		return true
	}
	if p.Cancelled {
		return false
	}
	kept := p.Target()
	isr := s.isr(t, p)
	return slices.ContainsFunc(kept, func(id uint64) bool { return !slices.Contains(isr, id) })
}

// endedInKafka reports whether a cancel of partition p of topic finds a
// reassignment under way that Kafka would have ended (reassignmentListed):
// Kafka answers it NO_REASSIGNMENT_IN_PROGRESS, and reverting it here
// would undo a shrink Kafka had done.
func (s *Service) endedInKafka(view *controller.State, topic string, p int32) bool {
	t := view.Topics[topic]
	if t == nil || p < 0 || int(p) >= len(t.Partitions) {
		return false
	}
	part := t.Partitions[p]
	return part.Reassigning() && !s.reassignmentListed(t, part)
}

// isr returns a partition's ISR as this broker knows it, as Metadata
// answers it (partitionLeadership), less the brokers dead to this one,
// which Metadata answers as fenced, in no ISR.
func (s *Service) isr(t *controller.Topic, p controller.Partition) []uint64 {
	_, _, isr, _ := partitionLeadership(s.Board, s.Leaders, s.Replicas, s.NodeID, s.Alive, t, p)
	if s.Alive == nil {
		return isr
	}
	return slices.DeleteFunc(slices.Clone(isr), func(id uint64) bool { return !s.Alive(id) })
}

// brokerIDs converts node ids to Kafka's int32 broker ids, never nil (the
// arrays are not nullable).
func brokerIDs(ids []uint64) []int32 {
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}
