package kafka

import (
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
)

// fetchCall is a Fetch long poll: it found less than MinBytes and waits for
// a partition to wake it, or for its deadline.
type fetchCall struct {
	r        *Request
	req      *kmsg.FetchRequest
	deadline time.Time
	pending  int // watchers registered and not yet fired
}

// fetch reads every partition from the local leader replicas' published
// views, without messaging them; if that is less than MinBytes it asks the
// partitions it read nothing from to wake it (WatchFetch) and reads again
// then. Fetch sessions are declined (session id 0), which every client
// accepts.
func (c *serviceConn) fetch(ctx actor.Context, r *Request, req *kmsg.FetchRequest) {
	c.s.resolveTopicIDs(req)
	resp, n, release := c.s.readFetch(req)
	if n >= int(req.MinBytes) || req.MaxWaitMillis <= 0 {
		ctx.Send(r.ReplyTo, fetchReply(r, resp, release))
		return
	}
	call := &fetchCall{r: r, req: req, deadline: time.Now().Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)}
	if !c.watch(ctx, call) {
		ctx.Send(r.ReplyTo, fetchReply(r, resp, release))
		return
	}
	release() // read again when a partition wakes the call
}

// fetchReply answers r with resp, whose record sets go back to the pool
// they were read into once the connection has encoded it.
func fetchReply(r *Request, resp *kmsg.FetchResponse, release func()) *Response {
	out := r.Reply(resp)
	out.Release = release
	return out
}

// watch registers the call with every partition it fetches that has a local
// leader; false if there is none to wait on.
func (c *serviceConn) watch(ctx actor.Context, call *fetchCall) bool {
	left := time.Until(call.deadline)
	if left <= 0 {
		return false
	}
	timeout := c.s.ticks(int32(left / time.Millisecond))
	ref := c.ref()
	for _, t := range call.req.Topics {
		for _, p := range t.Partitions {
			replica := c.s.Replicas.Get(partition.TopicPartition{Topic: t.Topic, Partition: p.Partition})
			if replica == nil || !replica.Machine.View().Leader {
				continue
			}
			ctx.Send(replica.PID, &partition.WatchFetch{Ref: ref, Offset: p.FetchOffset, TimeoutTicks: timeout, ReplyTo: ctx.Self()})
			call.pending++
		}
	}
	if call.pending == 0 {
		return false
	}
	c.fetches[ref] = call
	return true
}

func (c *serviceConn) fetchReady(ctx actor.Context, m *partition.FetchReady) {
	call, ok := c.fetches[m.Ref]
	if !ok {
		return
	}
	call.pending--
	resp, n, release := c.s.readFetch(call.req)
	if n >= int(call.req.MinBytes) || !time.Now().Before(call.deadline) {
		delete(c.fetches, m.Ref)
		ctx.Send(call.r.ReplyTo, fetchReply(call.r, resp, release))
		return
	}
	if call.pending > 0 {
		release()
		return // other partitions will still wake it, by the deadline at the latest
	}
	delete(c.fetches, m.Ref)
	if !c.watch(ctx, call) {
		ctx.Send(call.r.ReplyTo, fetchReply(call.r, resp, release))
		return
	}
	release()
}

// readFetch builds a Fetch response from the partitions' views and returns
// it with the number of record bytes in it, and the function that gives
// the buffers its record sets were read into back to the Service's pool,
// to be called once nothing reads the response any more. Whole batches
// only; the first batch returned is returned even when it is larger than
// the limits (KIP-74), so a consumer always makes progress.
func (s *Service) readFetch(req *kmsg.FetchRequest) (*kmsg.FetchResponse, int, func()) {
	pool := s.recordSetPool()
	var bufs [][]byte
	alloc := func(n int) []byte {
		b := pool.get(n)
		bufs = append(bufs, b)
		return b
	}
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	budget := int(req.MaxBytes)
	if budget <= 0 || req.Version < 3 {
		budget = int(^uint(0) >> 1)
	}
	total := 0
	names := make([]string, 0, len(req.Topics))
	for _, t := range req.Topics {
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		names = append(names, t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewFetchResponseTopicPartition()
			rp.Partition = p.Partition
			rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = -1, -1, -1
			rp.PreferredReadReplica = -1
			// Empty, never null: librdkafka rejects a null record set
			// (MessageSetSize -1), and Kafka always sends an empty one.
			rp.RecordBatches = []byte{}
			v, errCode := s.leaderView(t.Topic, p.Partition, p.CurrentLeaderEpoch)
			if req.Version >= 13 && t.Topic == "" {
				errCode = kerr.UnknownTopicID.Code // no topic has that id
			}
			if errCode != 0 {
				rp.ErrorCode = errCode
				rt.Partitions = append(rt.Partitions, rp)
				continue
			}
			rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = v.HighWatermark, v.HighWatermark, v.LogStart
			switch {
			case p.FetchOffset < v.LogStart || p.FetchOffset > v.LogEnd:
				rp.ErrorCode = kerr.OffsetOutOfRange.Code
			case p.FetchOffset >= v.HighWatermark:
				// Nothing committed there yet: empty, not out of range.
			default:
				limit := min(int(p.PartitionMaxBytes), budget-total)
				if limit <= 0 && total > 0 {
					break
				}
				data, err := v.Log.ReadInto(p.FetchOffset, max(limit, 1), alloc)
				switch {
				case errors.Is(err, partition.ErrOffsetOutOfRange):
					rp.ErrorCode = kerr.OffsetOutOfRange.Code
				case err != nil:
					rp.ErrorCode = kerr.KafkaStorageError.Code
				case total > 0 && total+len(data) > budget:
					// Over the request's budget: KIP-74's exception is for
					// the first batch of the response only.
				default:
					rp.RecordBatches = data
					total += len(data)
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	s.fetchLeaderHints(resp, names)
	// Idempotent: a buffer put back twice would be handed to two readers.
	release := func() {
		for _, b := range bufs {
			pool.put(b)
		}
		bufs = nil
	}
	return resp, total, release
}

// resolveTopicIDs fills in the names of the topics a Fetch v13+ names by
// id, so that the rest of the fetch path works by name; an id no topic has
// keeps an empty name and is answered UNKNOWN_TOPIC_ID.
func (s *Service) resolveTopicIDs(req *kmsg.FetchRequest) {
	if req.Version < 13 {
		return
	}
	view := s.Machine.View()
	for i := range req.Topics {
		t := &req.Topics[i]
		t.Topic = ""
		if topic := view.TopicByID(controller.TopicID(t.TopicID)); topic != nil {
			t.Topic = topic.Name
		}
	}
}
