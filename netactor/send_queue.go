package netactor

import (
	pb "go.etcd.io/raft/v3/raftpb"
)

// Wire overheads used to keep a frame under the limit without encoding it
// first. They are upper bounds: a frame built within budget never exceeds it.
const (
	envelopeOverhead = FrameHeaderLen + 2*(1+10) // header, from, to
	batchOverhead    = 1 + 5 + 1 + 10            // tag, length, group tag, group
	msgOverhead      = 1 + 5                     // tag, length
)

// queuedMemOverhead approximates what a queued message costs in memory beyond
// its encoded size (the pb.Message struct and the queue slot), so that a
// flood of tiny heartbeats is bounded as well as a few big appends.
const queuedMemOverhead = 64

// queued is one message waiting in a PeerSender's queue.
type queued struct {
	group uint64
	msg   *pb.Message
	size  int // proto.Size of msg
	// stream is set for a MsgSnap too large for a frame, sent in chunks.
	stream *snapStream
}

func (q queued) cost() int {
	if q.stream != nil {
		return q.stream.cost()
	}
	return q.size + queuedMemOverhead
}

// isBulk tells which lane a message takes: appends and snapshots can be large
// and are rate-limited per frame; everything else is small and time-critical.
func isBulk(t pb.MessageType) bool {
	return t == pb.MessageType_MsgApp || t == pb.MessageType_MsgSnap
}

// isHeartbeat tells the messages a PeerSender may hold back to coalesce
// them: a heartbeat and its answer only keep a leader and its follower in
// touch, and a tick later they do so just as well.
func isHeartbeat(t pb.MessageType) bool {
	return t == pb.MessageType_MsgHeartbeat || t == pb.MessageType_MsgHeartbeatResp
}

// coalesceHeartbeats is how many heartbeats (and answers) to one peer in
// one tick make it worth holding them for the next tick: below it they go
// at once. Each frame costs a write, a read and a wake-up of the reader on
// either side; a few groups' heartbeats are cheaper sent than delayed.
const coalesceHeartbeats = 16

// singleMessageFrame is the frame size of a message sent alone.
func singleMessageFrame(size int) int {
	return MinFrameBytes + size
}

// fifo is a queue of messages with removal at both ends.
type fifo struct {
	items []queued
	head  int
}

func (f *fifo) len() int { return len(f.items) - f.head }

func (f *fifo) push(q queued) { f.items = append(f.items, q) }

func (f *fifo) front() queued { return f.items[f.head] }

func (f *fifo) popFront() queued {
	q := f.items[f.head]
	f.items[f.head] = queued{} // let the message be collected
	f.head++
	switch {
	case f.head == len(f.items):
		f.reset()
	case f.head >= 1024 && 2*f.head >= len(f.items):
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	return q
}

func (f *fifo) popBack() queued {
	last := len(f.items) - 1
	q := f.items[last]
	f.items[last] = queued{}
	f.items = f.items[:last]
	if f.len() == 0 {
		f.reset()
	}
	return q
}

// prepend moves every item of front, in order, ahead of f's, and empties
// front.
func (f *fifo) prepend(front *fifo) {
	n := front.len()
	if n == 0 {
		return
	}
	if f.head >= n {
		// Room before the head, left by popFront: no copy of f's items.
		f.head -= n
		copy(f.items[f.head:], front.items[front.head:])
	} else {
		items := make([]queued, 0, n+f.len())
		items = append(items, front.items[front.head:]...)
		f.items, f.head = append(items, f.items[f.head:]...), 0
	}
	clear(front.items)
	front.reset()
}

// reset empties the queue, giving back a backing array grown by a burst.
func (f *fifo) reset() {
	if cap(f.items) > 4096 {
		f.items = nil
	} else {
		f.items = f.items[:0]
	}
	f.head = 0
}

// sendQueue is a PeerSender's lanes and their byte accounting: control
// (votes, heartbeats sent at once, everything small), bulk (appends and
// snapshots) and held heartbeats, which wait for the next tick to go out
// together.
type sendQueue struct {
	control, bulk, held fifo
	// streaming is the MsgSnap being sent in chunks, taken off the bulk
	// lane with its first chunk and charged until its last is taken; nil
	// when none is. Streams go one at a time (snapshot.go).
	streaming *queued
	// waiting holds the bulk messages that cannot go while a stream is in
	// flight (or in the frame of its last chunk): another streamed
	// MsgSnap, and every later message of its group or of the streaming
	// group. They are set aside, in the order they were queued, so that
	// the other groups' messages behind them still go, and return to the
	// front of the bulk lane once the stream is done. waitingGroups
	// counts them per group.
	waiting       fifo
	waitingGroups map[uint64]int
	bytes         int // sum of cost() of everything queued, streaming included
}

func (q *sendQueue) len() int {
	n := q.control.len() + q.bulk.len() + q.waiting.len() + q.held.len()
	if q.streaming != nil {
		n++
	}
	return n
}

// push queues item in its lane; hold puts a heartbeat in the held lane.
func (q *sendQueue) push(item queued, hold bool) {
	switch t := item.msg.GetType(); {
	case isBulk(t):
		q.bulk.push(item)
	case hold && isHeartbeat(t):
		q.held.push(item)
	default:
		q.control.push(item)
	}
	q.bytes += item.cost()
}

// wait sets item, taken off the front of the bulk lane, aside until the
// stream in flight is done.
func (q *sendQueue) wait(item queued) {
	if q.waitingGroups == nil {
		q.waitingGroups = make(map[uint64]int)
	}
	q.waiting.push(item)
	q.waitingGroups[item.group]++
}

// resume puts the messages set aside back at the front of the bulk lane,
// where they were taken from, once no stream is in flight.
func (q *sendQueue) resume() {
	if q.streaming != nil || q.waiting.len() == 0 {
		return
	}
	q.bulk.prepend(&q.waiting)
	clear(q.waitingGroups)
}

// trim drops the newest messages until the queue is within limit, bulk
// first (those set aside while a stream is in flight are older than the
// rest of the lane), then held heartbeats, then control, and appends them
// to dropped. Dropping the newest keeps what is queued a prefix of what
// each group sent, which is what raft's flow control expects of a lossy
// link.
func (q *sendQueue) trim(limit int, dropped []queued) []queued {
	for q.bytes > limit && q.bulk.len() > 0 {
		item := q.bulk.popBack()
		q.bytes -= item.cost()
		dropped = append(dropped, item)
	}
	for q.bytes > limit && q.waiting.len() > 0 {
		item := q.waiting.popBack()
		q.waitingGroups[item.group]--
		q.bytes -= item.cost()
		dropped = append(dropped, item)
	}
	for _, f := range []*fifo{&q.held, &q.control} {
		for q.bytes > limit && f.len() > 0 {
			item := f.popBack()
			q.bytes -= item.cost()
			dropped = append(dropped, item)
		}
	}
	return dropped
}

// drain empties the queue, the snapshot being streamed included, into
// dropped.
func (q *sendQueue) drain(dropped []queued) []queued {
	if q.streaming != nil {
		dropped = append(dropped, *q.streaming)
		q.streaming = nil
	}
	for q.control.len() > 0 {
		dropped = append(dropped, q.control.popFront())
	}
	for q.held.len() > 0 {
		dropped = append(dropped, q.held.popFront())
	}
	for q.waiting.len() > 0 {
		dropped = append(dropped, q.waiting.popFront())
	}
	clear(q.waitingGroups)
	for q.bulk.len() > 0 {
		dropped = append(dropped, q.bulk.popFront())
	}
	q.bytes = 0
	return dropped
}

// abort drops the snapshot being streamed if it is item, which a frame
// that failed carried a chunk of, and reports whether it did.
func (q *sendQueue) abort(item *queued) bool {
	if item == nil || q.streaming != item {
		return false
	}
	q.bytes -= item.cost()
	q.streaming = nil
	return true
}

// frameJob is one frame handed from a PeerSender to its writer.
type frameJob struct {
	env     *Envelope
	msgs    int
	entries int      // raft entries of the messages
	snaps   []uint64 // the group of each MsgSnap in the frame or completed by its chunk
	// chunkOf is the streamed MsgSnap whose chunk env.Snap is; last tells
	// whether it is the last chunk, after which the queue no longer holds
	// the stream and the frame answers for it.
	chunkOf *queued
	last    bool
}

// lost appends to dst the messages that the frame takes with it if it
// fails: its raft messages, and the streamed MsgSnap it completes.
func (j *frameJob) lost(dst []queued) []queued {
	for _, b := range j.env.Batches {
		for _, m := range b.Msgs {
			dst = append(dst, queued{group: b.Group, msg: m})
		}
	}
	if j.last {
		dst = append(dst, *j.chunkOf)
	}
	return dst
}

// nextFrame moves the next frame's worth of messages out of the queue: all
// control messages first, then the held heartbeats if release is set, then
// bulk messages until bulkBudget bytes of them are taken, never more than
// maxFrame bytes in all, of which reserved are already taken by other
// contents of the frame, and never more messages or entries than any peer
// accepts in one frame (limits.go). Each group's messages keep their order
// within a lane. index is scratch space, cleared here. nextFrame returns nil when
// there is nothing to send, and may return a frame without messages when
// reserved leaves no room for the first one.
//
// A MsgSnap too large for a frame goes as a chunk per frame, counted in the
// bulk budget, one snapshot at a time. While one streams, the next streamed
// MsgSnap and every later message of its group or of the streaming group
// are set aside (waiting), so that each group's messages still arrive in
// order while the other groups' go on sharing the frames; they return to
// the front of the bulk lane when the stream is done. The chunk goes after
// the frame's raft messages, which the reader delivers first, and no later
// message of its group goes in the same frame.
func (q *sendQueue) nextFrame(maxFrame, reserved, bulkBudget int, release bool, index map[uint64]int) *frameJob {
	q.resume()
	if q.control.len() == 0 && q.bulk.len() == 0 && q.streaming == nil && (!release || q.held.len() == 0) {
		return nil
	}
	clear(index)
	job := &frameJob{env: &Envelope{}}
	used := envelopeOverhead + reserved
	empty := func() bool { return job.msgs == 0 && reserved == 0 && job.env.Snap == nil }
	take := func(item queued) bool {
		cost := msgOverhead + item.size
		i, ok := index[item.group]
		if !ok {
			cost += batchOverhead
		}
		// The first message always goes when nothing else is in the
		// frame: enqueue made sure it fits alone.
		if !empty() && used+cost > maxFrame {
			return false
		}
		// A frame of more than minFrameEntries entries may be refused
		// if they are small; only a message alone may take more, which
		// enqueue made sure its own frame accepts.
		entries := len(item.msg.GetEntries())
		if job.msgs == maxFrameMessages || job.msgs > 0 && job.entries+entries > minFrameEntries {
			return false
		}
		used += cost
		job.entries += entries
		if !ok {
			i = len(job.env.Batches)
			index[item.group] = i
			job.env.Batches = append(job.env.Batches, GroupBatch{Group: item.group})
		}
		job.env.Batches[i].Msgs = append(job.env.Batches[i].Msgs, item.msg)
		job.msgs++
		if item.msg.GetType() == pb.MessageType_MsgSnap {
			job.snaps = append(job.snaps, item.group)
		}
		q.bytes -= item.cost()
		return true
	}
	for q.control.len() > 0 && take(q.control.front()) {
		q.control.popFront()
	}
	for release && q.held.len() > 0 && take(q.held.front()) {
		q.held.popFront()
	}
	bulk := 0
	// takeChunk puts the next chunk of the streaming snapshot in the frame.
	takeChunk := func() bool {
		st := q.streaming
		cost := st.stream.nextWire()
		// Like a message, a chunk always goes alone: enqueue made sure
		// the header and a chunk fit a frame.
		if !empty() && used+cost > maxFrame {
			return false
		}
		used += cost
		before := st.stream.sent
		job.env.Snap, job.last = st.stream.next(st.group)
		job.chunkOf = st
		bulk += st.stream.sent - before
		if job.last {
			job.snaps = append(job.snaps, st.group)
			q.bytes -= st.cost()
			q.streaming = nil
		}
		return true
	}
	if q.streaming != nil {
		takeChunk()
	}
	for q.bulk.len() > 0 && bulk < bulkBudget {
		item := q.bulk.front()
		if q.waitingGroups[item.group] > 0 ||
			job.chunkOf != nil && item.group == job.chunkOf.group ||
			q.streaming != nil && item.group == q.streaming.group ||
			item.stream != nil && (q.streaming != nil || job.env.Snap != nil) {
			q.wait(q.bulk.popFront())
			continue
		}
		if item.stream != nil {
			q.bulk.popFront()
			q.streaming = &item
			if !takeChunk() {
				break
			}
			continue
		}
		if !take(item) {
			break
		}
		q.bulk.popFront()
		bulk += item.size
	}
	return job
}

// entrySlackBytes is what MaxEntryBytes leaves around an entry's data for
// the frame header, the envelope, the group's batch, the raft message and
// the entry's own fields (a few hundred bytes at most).
const entrySlackBytes = 4 << 10

// MaxEntryBytes is the largest raft entry data a frame of maxFrameBytes
// carries to a peer. A message larger than the frame is dropped each time
// raft sends it, so a group that proposed a larger entry would stall.
func MaxEntryBytes(maxFrameBytes int) int {
	return max(maxFrameBytes-entrySlackBytes, maxFrameBytes/2)
}
