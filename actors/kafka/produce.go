package kafka

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/partition"
)

// produceCall is a Produce request waiting for its partitions.
type produceCall struct {
	r         *Request
	resp      *kmsg.ProduceResponse
	remaining int
	// ticks is what is left of an acks=0 call's request timeout. The
	// partitions time acks=1/all calls; an acks=0 one is waited for by
	// nobody, and a partition stopped while the request was on its way
	// (a reassignment, a shutdown) never answers, which would hold every
	// later response of the connection.
	ticks uint64
}

// produceSlot locates one partition's answer in its call's response.
type produceSlot struct {
	call        *produceCall
	topic, part int
}

// produce hands each partition's batches to its leader replica, with the
// verdict of the check of their record count, which is made here. The
// response goes out when every partition has answered, each within the
// request timeout (the partitions keep it). acks=0 partitions answer once
// they have proposed; nothing goes on the wire, but an error closes the
// connection, as Kafka does: the client sees no error code, and a closed
// connection makes it refresh its metadata and find the new leader.
func (c *serviceConn) produce(ctx actor.Context, r *Request, req *kmsg.ProduceRequest) {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	call := &produceCall{r: r, resp: resp}
	timeout := c.s.ticks(req.TimeoutMillis)
	for ti, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		for pi, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = p.Partition
			rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = -1, -1, -1
			replica, missing := c.s.replica(t.Topic, [16]byte{}, p.Partition)
			switch {
			case req.Acks < -1 || req.Acks > 1:
				// Kafka's ReplicaManager.isValidRequiredAcks: nothing is
				// written, every partition is refused.
				rp.ErrorCode = kerr.InvalidRequiredAcks.Code
			case replica == nil:
				rp.ErrorCode = missing
			default:
				// The records' count is checked here, on the connection
				// (partition.CountRecords): it can take a few hundred
				// milliseconds, which the partition's raft actor must
				// spend on heartbeats.
				msg := &partition.Produce{Records: p.Records, Acks: req.Acks, TimeoutTicks: timeout, Ref: c.ref(), ReplyTo: ctx.Self(),
					Count: partition.CountRecords(p.Records)}
				c.produces[msg.Ref] = produceSlot{call: call, topic: ti, part: pi}
				call.remaining++
				ctx.Send(replica.PID, msg)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	switch {
	case call.remaining == 0:
		c.produced(ctx, call)
	case req.Acks == 0:
		call.ticks = timeout
		c.noAcks = append(c.noAcks, call)
		c.startTicking(ctx)
	}
}

// tickNoAcks closes the connection when an acks=0 call's partitions have
// not all answered within its request timeout.
func (c *serviceConn) tickNoAcks(ctx actor.Context) {
	kept := c.noAcks[:0]
	for _, call := range c.noAcks {
		if call.remaining == 0 {
			continue
		}
		if call.ticks--; call.ticks > 0 {
			kept = append(kept, call)
			continue
		}
		for ref, slot := range c.produces {
			if slot.call == call {
				delete(c.produces, ref)
			}
		}
		ctx.Send(call.r.ReplyTo, &Response{Seq: call.r.Seq, CloseConn: true})
	}
	clear(c.noAcks[len(kept):])
	c.noAcks = kept
}

func (c *serviceConn) produceDone(ctx actor.Context, m *partition.ProduceDone) {
	slot, ok := c.produces[m.Ref]
	if !ok {
		return
	}
	delete(c.produces, m.Ref)
	rp := &slot.call.resp.Topics[slot.topic].Partitions[slot.part]
	rp.ErrorCode = code(m.Err)
	if m.Err == nil {
		rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = m.BaseOffset, m.LogAppendTime, m.LogStartOffset
	} else {
		rp.ErrorMessage = message(m.Err)
		rp.LogStartOffset = m.LogStartOffset
		// Encoded from v8 on (KIP-467): clients fail these records with
		// their own message and the others with the batch's.
		for _, e := range m.RecordErrors {
			re := kmsg.NewProduceResponseTopicPartitionErrorRecord()
			re.RelativeOffset, re.ErrorMessage = e.Index, kmsg.StringPtr(e.Message)
			rp.ErrorRecords = append(rp.ErrorRecords, re)
		}
	}
	if slot.call.remaining--; slot.call.remaining == 0 {
		c.produced(ctx, slot.call)
	}
}

// produced answers a call whose partitions have all answered. Each is done
// with its records by then: a partition answers only after it has proposed
// them (raft copies them) or refused them.
func (c *serviceConn) produced(ctx actor.Context, call *produceCall) {
	call.r.releaseBody()
	if call.r.Msg.(*kmsg.ProduceRequest).Acks == 0 {
		for _, t := range call.resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					ctx.Send(call.r.ReplyTo, &Response{Seq: call.r.Seq, CloseConn: true})
					return
				}
			}
		}
		ctx.Send(call.r.ReplyTo, call.r.NoReply())
		return
	}
	c.s.leaderHints(call.resp)
	ctx.Send(call.r.ReplyTo, call.r.Reply(call.resp))
}
