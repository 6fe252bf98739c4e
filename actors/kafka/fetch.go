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

// fetchCall is a Fetch long poll: it found less than MinBytes and no error,
// and waits for a partition to wake it, or for its deadline.
type fetchCall struct {
	r        *Request
	req      *kmsg.FetchRequest
	deadline time.Time
	// timer answers the call at its deadline even if no partition does:
	// one may have stopped before it got the WatchFetch.
	timer   *time.Timer
	pending int // watchers registered and not yet fired
}

// fetchDeadline is what a fetchCall's timer sends the connection.
type fetchDeadline struct{ ref uint64 }

// fetchRead is one reading of a Fetch's partitions.
type fetchRead struct {
	resp  *kmsg.FetchResponse
	bytes int // record bytes in resp
	// failed is set when a partition answered an error: the Fetch is then
	// answered at once, as Kafka's ReplicaManager.fetchMessages does, so
	// that the client acts on it (looks up the leader, resets its offset)
	// rather than waiting out MaxWait.
	failed bool
	// release gives the buffers the record sets were read into back to the
	// Service's pool, once nothing reads resp any more. Idempotent.
	release func()
}

// complete reports whether rd answers req now rather than after a wait.
func (rd *fetchRead) complete(req *kmsg.FetchRequest) bool {
	return rd.failed || rd.bytes >= int(req.MinBytes) || req.MaxWaitMillis <= 0
}

// fetch reads every partition from the local leader replicas' published
// views, without messaging them. If that finds less than MinBytes and no
// error, it asks each partition to wake it when its high watermark passes
// what this reading saw (WatchFetch), and reads again then. Fetch sessions
// are declined (session id 0), which every client accepts.
func (c *serviceConn) fetch(ctx actor.Context, r *Request, req *kmsg.FetchRequest) {
	c.s.resolveTopicIDs(req)
	rd := c.s.readFetch(req)
	if rd.complete(req) {
		ctx.Send(r.ReplyTo, fetchReply(r, rd))
		return
	}
	call := &fetchCall{r: r, req: req, deadline: time.Now().Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)}
	ref := c.ref()
	for ti := range req.Topics {
		for pi := range req.Topics[ti].Partitions {
			c.watch(ctx, call, ref, ti, pi, rd.resp)
		}
	}
	if call.pending == 0 {
		ctx.Send(r.ReplyTo, fetchReply(r, rd))
		return
	}
	c.fetches[ref] = call
	sys, self := ctx.ActorSystem(), ctx.Self()
	call.timer = time.AfterFunc(time.Until(call.deadline), func() { sys.Root.Send(self, &fetchDeadline{ref: ref}) })
	rd.release() // read again when a partition wakes the call
}

// fetchReply answers r with rd's response, whose record sets go back to
// the pool once the connection has encoded it.
func fetchReply(r *Request, rd fetchRead) *Response {
	out := r.Reply(rd.resp)
	out.Release = rd.release
	return out
}

// watch asks the local leader of the call's partition (ti, pi) to wake the
// call once its high watermark passes both the fetch offset and the high
// watermark resp saw: new data, not the data already counted. It counts the
// watcher in call.pending; a partition without a local leader is not
// watched (its reading answered an error).
func (c *serviceConn) watch(ctx actor.Context, call *fetchCall, ref uint64, ti, pi int, resp *kmsg.FetchResponse) {
	left := time.Until(call.deadline)
	if left <= 0 {
		return
	}
	t, p := &call.req.Topics[ti], &call.req.Topics[ti].Partitions[pi]
	replica, _ := c.s.replica(t.Topic, fetchTopicID(call.req, t), p.Partition)
	if replica == nil || !replica.Machine.View().Leader {
		return
	}
	offset := max(p.FetchOffset, resp.Topics[ti].Partitions[pi].HighWatermark)
	ctx.Send(replica.PID, &partition.WatchFetch{Ref: ref, Index: [2]int{ti, pi}, Offset: offset,
		TimeoutTicks: c.s.ticks(int32(left / time.Millisecond)), ReplyTo: ctx.Self()})
	call.pending++
}

// fetchReady reads a waiting call again when one of its partitions woke
// it, and answers it if that is enough; otherwise it watches that
// partition again, past what it has now.
func (c *serviceConn) fetchReady(ctx actor.Context, m *partition.FetchReady) {
	call, ok := c.fetches[m.Ref]
	if !ok {
		return
	}
	call.pending--
	rd := c.s.readFetch(call.req)
	if rd.complete(call.req) || !time.Now().Before(call.deadline) {
		c.answerFetch(ctx, m.Ref, call, rd)
		return
	}
	if ti, pi := m.Index[0], m.Index[1]; ti >= 0 && ti < len(call.req.Topics) && pi >= 0 && pi < len(call.req.Topics[ti].Partitions) {
		c.watch(ctx, call, m.Ref, ti, pi, rd.resp)
	}
	if call.pending == 0 {
		c.answerFetch(ctx, m.Ref, call, rd)
		return
	}
	rd.release()
}

// fetchExpired answers a call whose deadline has come.
func (c *serviceConn) fetchExpired(ctx actor.Context, m *fetchDeadline) {
	call, ok := c.fetches[m.ref]
	if !ok {
		return
	}
	c.answerFetch(ctx, m.ref, call, c.s.readFetch(call.req))
}

// answerFetch answers a waiting call with rd. Its partitions' watchers
// that fire later find no call and are dropped.
func (c *serviceConn) answerFetch(ctx actor.Context, ref uint64, call *fetchCall, rd fetchRead) {
	delete(c.fetches, ref)
	call.timer.Stop()
	ctx.Send(call.r.ReplyTo, fetchReply(call.r, rd))
}

// maxFetchBytes bounds the record bytes of one Fetch response whatever the
// client asks for: Kafka's broker config fetch.max.bytes at its default.
// The response is held in memory until it is written.
const maxFetchBytes = 55 << 20

// readFetch builds a Fetch response from the partitions' views. Whole
// batches only; the first batch returned is returned even when it is
// larger than the limits (KIP-74), so a consumer always makes progress.
func (s *Service) readFetch(req *kmsg.FetchRequest) fetchRead {
	pool := s.recordSetPool()
	var bufs [][]byte
	alloc := func(n int) []byte {
		b := pool.get(n)
		bufs = append(bufs, b)
		return b
	}
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	budget := maxFetchBytes
	if req.Version >= 3 && req.MaxBytes > 0 {
		budget = min(budget, int(req.MaxBytes))
	}
	total, failed := 0, false
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
			v, errCode := s.leaderView(t.Topic, fetchTopicID(req, &t), p.Partition, p.CurrentLeaderEpoch)
			if errCode != 0 {
				rp.ErrorCode, failed = errCode, true
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
			failed = failed || rp.ErrorCode != 0
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
	return fetchRead{resp: resp, bytes: total, failed: failed, release: release}
}

// fetchTopicID is the id t names its topic by: the request's from v13,
// none before. The name resolveTopicIDs gave it may be another topic's by
// the time a waiting fetch reads again (deleted and created again).
func fetchTopicID(req *kmsg.FetchRequest, t *kmsg.FetchRequestTopic) [16]byte {
	if req.Version < 13 {
		return [16]byte{}
	}
	return t.TopicID
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
