package kafka

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
)

// ElectLeaders (KIP-460). A preferred election moves a partition's
// leadership to its first replica: the controller actor asks for a raft
// leadership transfer, which the leader makes once the preferred replica
// is caught up, and the request waits (polling this broker's view of the
// leaders each tick) until the preferred replica leads or the request's
// timeout passes. An unclean election has nothing to do: Raft never elects
// a replica that may lack committed entries, so a partition either has a
// leader (ELECTION_NOT_NEEDED) or has no eligible one.

// Election types of ElectLeaders v1+ (v0 knows only preferred).
const (
	electionPreferred int8 = 0
	electionUnclean   int8 = 1
)

// electResendTicks paces the repeated transfer request while an election
// waits (20 ticks: 1 s at 50 ms): a transfer that raft aborted, because
// the preferred replica did not catch up within an election timeout, is
// asked for again.
const electResendTicks = 20

// electCall is an ElectLeaders waiting for preferred replicas to lead.
type electCall struct {
	r       *Request
	resp    *kmsg.ElectLeadersResponse
	waiting []electWait
	ticks   uint64 // left before the request times out
	sent    uint64 // ticks since the transfers were last asked for
}

// electWait is one partition whose preferred replica has been asked to
// lead; slot indexes its answer in resp.Topics and their Partitions.
type electWait struct {
	slot      [2]int
	part      controller.Partition
	preferred uint64
}

func (c *serviceConn) electLeaders(ctx actor.Context, r *Request, req *kmsg.ElectLeadersRequest) {
	resp := req.ResponseKind().(*kmsg.ElectLeadersResponse)
	if req.ElectionType != electionPreferred && req.ElectionType != electionUnclean {
		resp.ErrorCode = kerr.InvalidRequest.Code
		ctx.Send(r.ReplyTo, r.Reply(resp))
		return
	}
	view := c.s.Machine.View()
	call := &electCall{r: r, resp: resp, ticks: c.s.ticks(req.TimeoutMillis)}
	add := func(topic string, p int32, all bool) {
		rp := kmsg.NewElectLeadersResponseTopicPartition()
		rp.Partition = p
		w, err := c.s.elect(view, req.ElectionType, topic, p)
		// As Kafka's controller does, an election of every partition
		// leaves out those that already have the leader asked for.
		if all && code(err) == kerr.ElectionNotNeeded.Code {
			return
		}
		rp.ErrorCode, rp.ErrorMessage = code(err), message(err)
		ti := len(resp.Topics) - 1
		if ti < 0 || resp.Topics[ti].Topic != topic {
			rt := kmsg.NewElectLeadersResponseTopic()
			rt.Topic = topic
			resp.Topics = append(resp.Topics, rt)
			ti++
		}
		resp.Topics[ti].Partitions = append(resp.Topics[ti].Partitions, rp)
		if w != nil {
			w.slot = [2]int{ti, len(resp.Topics[ti].Partitions) - 1}
			call.waiting = append(call.waiting, *w)
		}
	}
	if req.Topics == nil {
		for _, name := range view.TopicNames() {
			for _, p := range view.Topics[name].Partitions {
				add(name, p.Index, true)
			}
		}
	} else {
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				add(t.Topic, p, false)
			}
		}
	}
	c.askTransfers(ctx, call)
	if len(call.waiting) == 0 || c.s.Ticker == nil {
		// Nothing to wait for, or no clock to wait with (a broker always
		// has one): the transfers asked for go on regardless.
		ctx.Send(r.ReplyTo, r.Reply(resp))
		return
	}
	c.elects = append(c.elects, call)
	c.startTicking(ctx)
}

// elect decides one partition's election: an error to answer with at once,
// or the wait for its preferred replica to lead (whose answer, until then,
// is that the preferred leader is not available).
func (s *Service) elect(view *controller.State, typ int8, topic string, p int32) (*electWait, error) {
	t := view.Topics[topic]
	if t == nil || p < 0 || int(p) >= len(t.Partitions) {
		return nil, kerr.UnknownTopicOrPartition
	}
	part := t.Partitions[p]
	leader, _ := s.leaderOf(part)
	if typ == electionUnclean {
		if leader != 0 {
			return nil, kerr.ElectionNotNeeded
		}
		return nil, fmt.Errorf("%w: raft elects only a replica holding every committed entry, and none is reachable", kerr.EligibleLeadersNotAvailable)
	}
	if len(part.Replicas) == 0 {
		return nil, kerr.PreferredLeaderNotAvailable
	}
	preferred := part.Replicas[0]
	switch {
	case leader == preferred:
		return nil, kerr.ElectionNotNeeded
	case view.Brokers[preferred].NodeID != preferred:
		return nil, fmt.Errorf("%w: preferred replica %d is not a registered broker", kerr.PreferredLeaderNotAvailable, preferred)
	case s.Alive != nil && !s.Alive(preferred):
		return nil, fmt.Errorf("%w: preferred replica %d is not alive (not heard from within the broker session timeout)", kerr.PreferredLeaderNotAvailable, preferred)
	case s.Stopping != nil && s.Stopping(preferred):
		return nil, fmt.Errorf("%w: preferred replica %d is stopping", kerr.PreferredLeaderNotAvailable, preferred)
	}
	return &electWait{part: part, preferred: preferred}, preferredUnavailable(preferred)
}

// preferredUnavailable is the answer for a partition whose preferred
// replica did not take the leadership in time.
func preferredUnavailable(preferred uint64) error {
	return fmt.Errorf("%w: replica %d did not take the leadership within the request's timeout (not caught up, or unreachable)",
		kerr.PreferredLeaderNotAvailable, preferred)
}

// askTransfers asks the controller actor to move every waiting partition's
// leadership to its preferred replica.
func (c *serviceConn) askTransfers(ctx actor.Context, call *electCall) {
	call.sent = 0
	for _, w := range call.waiting {
		ctx.Send(c.s.Controller, &controller.ElectPreferred{Group: w.part.Group, Preferred: w.preferred})
	}
}

// tickElects polls the leaders of the partitions being elected: each one
// now led by its preferred replica is answered with no error; a request
// with none left, or out of time, is answered (the rest keep
// PREFERRED_LEADER_NOT_AVAILABLE).
func (c *serviceConn) tickElects(ctx actor.Context) {
	kept := c.elects[:0]
	for _, call := range c.elects {
		waiting := call.waiting[:0]
		for _, w := range call.waiting {
			if leader, _ := c.s.leaderOf(w.part); leader == w.preferred {
				rp := &call.resp.Topics[w.slot[0]].Partitions[w.slot[1]]
				rp.ErrorCode, rp.ErrorMessage = 0, nil
				continue
			}
			waiting = append(waiting, w)
		}
		call.waiting = waiting
		call.ticks--
		if len(call.waiting) == 0 || call.ticks == 0 {
			ctx.Send(call.r.ReplyTo, call.r.Reply(call.resp))
			continue
		}
		if call.sent++; call.sent >= electResendTicks {
			c.askTransfers(ctx, call)
		}
		kept = append(kept, call)
	}
	clear(c.elects[len(kept):])
	c.elects = kept
}

// tick advances the requests that keep their own time.
func (c *serviceConn) tick(ctx actor.Context) {
	c.tickAlters(ctx)
	c.tickElects(ctx)
	c.tickNoAcks(ctx)
	c.tickDeletes(ctx)
	c.stopTickingIfIdle(ctx)
}

// startTicking subscribes the connection to the broker's ticker while a
// request waits on it.
func (c *serviceConn) startTicking(ctx actor.Context) {
	if c.ticking || c.s.Ticker == nil {
		return
	}
	c.ticking = true
	c.s.Ticker.Subscribe(ctx.Self())
	c.self = ctx.Self()
}

// stopTickingIfIdle unsubscribes once nothing waits.
func (c *serviceConn) stopTickingIfIdle(ctx actor.Context) {
	if c.ticking && len(c.alters) == 0 && len(c.elects) == 0 && len(c.noAcks) == 0 && len(c.deleteCalls) == 0 {
		c.ticking = false
		c.s.Ticker.Unsubscribe(ctx.Self())
	}
}

// Close implements ConnCloser: a connection that closes with requests
// waiting leaves the ticker, and its long polls' and group calls' timers
// stop.
func (c *serviceConn) Close() {
	for _, call := range c.fetches {
		call.timer.Stop()
	}
	for _, call := range c.groups {
		call.timer.Stop()
	}
	for _, call := range c.lists {
		call.timer.Stop()
	}
	if c.ticking {
		c.ticking = false
		c.s.Ticker.Unsubscribe(c.self)
	}
}
