package kafka

import (
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
)

// deleteCall is a DeleteRecords request waiting for its partitions.
type deleteCall struct {
	r    *Request
	resp *kmsg.DeleteRecordsResponse
	// pending counts its partitions not yet answered, which
	// serviceConn.deletes holds by the Ref sent to each.
	pending int
	// ticks is what is left before the connection gives up on the
	// partitions: they time the request themselves, but one stopped while
	// the request was on its way (a reassignment, a shutdown) never
	// answers, which would hold every later response of the connection.
	ticks uint64
}

// deleteSlot locates one partition's answer in its call's response.
type deleteSlot struct {
	call        *deleteCall
	topic, part int
}

// deleteRecordsGraceTicks is how long after the request's timeout the
// connection waits for a partition's own REQUEST_TIMED_OUT.
const deleteRecordsGraceTicks = 5

// deleteRecords sends each partition's new log start to its replica here,
// which answers if it leads (Kafka's ReplicaManager.deleteRecords): a
// Kafka client sends each partition to its leader, so a partition this
// broker does not lead is NOT_LEADER_OR_FOLLOWER, and the client looks
// its leader up again. The internal offsets topic is refused, as Kafka
// refuses its internal topics (deleteRecordsOnLocalLog).
func (c *serviceConn) deleteRecords(ctx actor.Context, r *Request, req *kmsg.DeleteRecordsRequest) {
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	timeout := c.s.ticks(req.TimeoutMillis)
	call := &deleteCall{r: r, resp: resp, ticks: timeout + deleteRecordsGraceTicks}
	topics := map[string]int{} // name → index in resp.Topics
	for _, d := range deleteTargets(req) {
		ti, ok := topics[d.topic]
		if !ok {
			rt := kmsg.NewDeleteRecordsResponseTopic()
			rt.Topic = d.topic
			ti = len(resp.Topics)
			topics[d.topic] = ti
			resp.Topics = append(resp.Topics, rt)
		}
		rt := &resp.Topics[ti]
		rp := kmsg.NewDeleteRecordsResponseTopicPartition()
		rp.Partition = d.partition
		rp.LowWatermark = -1
		replica, missing := c.s.replica(d.topic, [16]byte{}, d.partition)
		switch {
		case d.topic == controller.OffsetsTopic:
			rp.ErrorCode = kerr.InvalidTopicException.Code
		case replica == nil:
			rp.ErrorCode = missing
		default:
			msg := &partition.DeleteRecords{Ref: c.ref(), Offset: d.offset, TimeoutTicks: timeout, ReplyTo: ctx.Self()}
			c.deletes[msg.Ref] = deleteSlot{call: call, topic: ti, part: len(rt.Partitions)}
			call.pending++
			ctx.Send(replica.PID, msg)
		}
		rt.Partitions = append(rt.Partitions, rp)
	}
	if call.pending == 0 {
		ctx.Send(r.ReplyTo, r.Reply(resp))
		return
	}
	c.deleteCalls = append(c.deleteCalls, call)
	c.startTicking(ctx)
}

// deleteTarget is one partition of a DeleteRecords request and the offset
// its log is to start at.
type deleteTarget struct {
	topic     string
	partition int32
	offset    int64
}

// deleteTargets lists the request's partitions once each, in the order
// they first appear, with the offset of their last mention: Kafka keys the
// request by partition (KafkaApis.handleDeleteRecordsRequest builds a map),
// so a partition named twice is deleted to its last offset and answered
// once, and a topic named twice is one topic of the response.
func deleteTargets(req *kmsg.DeleteRecordsRequest) []deleteTarget {
	var out []deleteTarget
	at := map[topicPartition]int{}
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			k := topicPartition{t.Topic, p.Partition}
			if i, ok := at[k]; ok {
				out[i].offset = p.Offset
				continue
			}
			at[k] = len(out)
			out = append(out, deleteTarget{topic: t.Topic, partition: p.Partition, offset: p.Offset})
		}
	}
	return out
}

// deleteRecordsDone puts a partition's answer into its call's response,
// and sends the response once every partition has answered.
func (c *serviceConn) deleteRecordsDone(ctx actor.Context, m *partition.DeleteRecordsDone) {
	slot, ok := c.deletes[m.Ref]
	if !ok {
		return // answered already: it timed out
	}
	delete(c.deletes, m.Ref)
	call := slot.call
	rp := &call.resp.Topics[slot.topic].Partitions[slot.part]
	rp.LowWatermark, rp.ErrorCode = m.LowWatermark, code(m.Err)
	if m.Err != nil {
		rp.LowWatermark = -1
		c.s.Log.Debug().Err(m.Err).Str("topic", call.resp.Topics[slot.topic].Topic).Int32("partition", rp.Partition).
			Msg("delete records refused")
	}
	if call.pending--; call.pending == 0 {
		c.deleteCalls = slices.DeleteFunc(c.deleteCalls, func(o *deleteCall) bool { return o == call })
		ctx.Send(call.r.ReplyTo, call.r.Reply(call.resp))
		c.stopTickingIfIdle(ctx)
	}
}

// tickDeletes answers REQUEST_TIMED_OUT for the partitions of a call that
// did not answer in time.
func (c *serviceConn) tickDeletes(ctx actor.Context) {
	kept := c.deleteCalls[:0]
	for _, call := range c.deleteCalls {
		if call.ticks--; call.ticks > 0 {
			kept = append(kept, call)
			continue
		}
		for ref, slot := range c.deletes {
			if slot.call != call {
				continue
			}
			delete(c.deletes, ref)
			rp := &call.resp.Topics[slot.topic].Partitions[slot.part]
			rp.LowWatermark, rp.ErrorCode = -1, kerr.RequestTimedOut.Code
		}
		c.s.Log.Debug().Int("partitions", call.pending).Msg("delete records: partitions did not answer within the request's timeout")
		ctx.Send(call.r.ReplyTo, call.r.Reply(call.resp))
	}
	clear(c.deleteCalls[len(kept):])
	c.deleteCalls = kept
}
