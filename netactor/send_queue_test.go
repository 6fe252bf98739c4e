package netactor

import (
	"math/rand/v2"
	"slices"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func item(group uint64, t pb.MessageType, index uint64, entryBytes int) queued {
	var m *pb.Message
	if entryBytes > 0 {
		m = msg(t, 2, 1, index, make([]byte, entryBytes))
	} else {
		m = msg(t, 2, 1, index)
	}
	return queued{group: group, msg: m, size: proto.Size(m)}
}

func TestSendQueueStaysWithinBound(t *testing.T) {
	const limit = 64 << 10
	rng := rand.New(rand.NewPCG(3, 4))
	var q sendQueue
	var dropped []queued
	types := []pb.MessageType{pb.MessageType_MsgApp, pb.MessageType_MsgSnap, pb.MessageType_MsgHeartbeat, pb.MessageType_MsgVote}
	pushed := 0
	for i := range 5000 {
		it := item(uint64(rng.IntN(5)), types[rng.IntN(len(types))], uint64(i), rng.IntN(4<<10))
		q.push(it, i%3 == 0)
		pushed++
		dropped = q.trim(limit, dropped)
		if q.bytes > limit {
			t.Fatalf("after push %d: %d bytes queued, bound %d", i, q.bytes, limit)
		}
		if sum := queuedBytes(&q); sum != q.bytes {
			t.Fatalf("after push %d: accounting says %d bytes, queue holds %d", i, q.bytes, sum)
		}
		if i%7 == 0 { // the writer takes a frame now and then
			q.nextFrame(16<<10, 0, 4<<10, i%5 == 0, map[uint64]int{})
		}
	}
	if len(dropped) == 0 {
		t.Fatal("nothing was dropped: the test did not fill the queue")
	}
}

func TestSendQueueTrimDropsNewestBulkFirst(t *testing.T) {
	var q sendQueue
	hb := item(1, pb.MessageType_MsgHeartbeat, 0, 0)
	q.push(hb, false)
	for i := range 10 {
		q.push(item(1, pb.MessageType_MsgApp, uint64(i), 1000), false)
	}
	limit := hb.cost() + 4*item(1, pb.MessageType_MsgApp, 0, 1000).cost()
	dropped := q.trim(limit, nil)
	if len(dropped) != 6 {
		t.Fatalf("want 6 appends dropped, got %d", len(dropped))
	}
	for i, d := range dropped {
		if got, want := d.msg.GetIndex(), uint64(9-i); d.msg.GetType() != pb.MessageType_MsgApp || got != want {
			t.Fatalf("dropped[%d] = %s index %d, want MsgApp index %d", i, d.msg.GetType(), got, want)
		}
	}
	if q.control.len() != 1 || q.bulk.len() != 4 {
		t.Fatalf("left %d control and %d bulk, want 1 and 4", q.control.len(), q.bulk.len())
	}
	// Only control left and still over: control goes too.
	dropped = q.trim(0, dropped[:0])
	if len(dropped) != 5 || q.len() != 0 || q.bytes != 0 {
		t.Fatalf("trim to 0: dropped %d, left %d (%d bytes)", len(dropped), q.len(), q.bytes)
	}
}

// Messages set aside while a snapshot streams are bulk too: trim drops
// them, newest first, before any control message, and reports a streamed
// MsgSnap among them like any other.
func TestSendQueueTrimDropsWaitingBeforeControl(t *testing.T) {
	const maxFrame, budget = 64 << 10, 16 << 10
	chunk := chunkBytes(maxFrame, budget)
	var q sendQueue
	for i, group := range []uint64{1, 2} { // two streams: the second waits
		m := bigSnap(uint64(10*(i+1)), 200<<10)
		st, err := newSnapStream(m, chunk)
		if err != nil {
			t.Fatal(err)
		}
		q.push(queued{group: group, msg: m, size: proto.Size(m), stream: st}, false)
	}
	for i := range 3 {
		q.push(item(1, pb.MessageType_MsgApp, uint64(11+i), 1000), false)
	}
	if job := q.nextFrame(maxFrame, 0, budget, false, map[uint64]int{}); job.env.Snap == nil || job.env.Snap.Group != 1 {
		t.Fatal("the first frame does not start group 1's stream")
	}
	if q.waiting.len() != 4 || q.bulk.len() != 0 {
		t.Fatalf("%d messages set aside, %d left in the bulk lane; want 4 and 0", q.waiting.len(), q.bulk.len())
	}
	hb := item(3, pb.MessageType_MsgHeartbeat, 0, 0)
	q.push(hb, false)
	limit := q.streaming.cost() + hb.cost()
	dropped := q.trim(limit, nil)
	var got []uint64
	for _, d := range dropped {
		got = append(got, d.msg.GetIndex())
	}
	if want := []uint64{13, 12, 11, 20}; !slices.Equal(got, want) {
		t.Fatalf("dropped indexes %v, want %v", got, want)
	}
	if q.control.len() != 1 || q.bytes != limit || q.streaming == nil {
		t.Fatalf("left %d control messages and %d bytes (want %d), streaming %v", q.control.len(), q.bytes, limit, q.streaming != nil)
	}
}

func TestNextFrameControlFirstAndBulkBudget(t *testing.T) {
	var q sendQueue
	const entry = 10 << 10
	for i := range 20 {
		q.push(item(uint64(1+i%2), pb.MessageType_MsgApp, uint64(i), entry), false)
	}
	q.push(item(1, pb.MessageType_MsgHeartbeat, 100, 0), false)
	q.push(item(3, pb.MessageType_MsgVote, 101, 0), false)
	index := map[uint64]int{}
	const budget = 3 * entry

	job := q.nextFrame(1<<20, 0, budget, false, index)
	var types []pb.MessageType
	perGroup := map[uint64][]*pb.Message{}
	for _, b := range job.env.Batches {
		for _, m := range b.Msgs {
			types = append(types, m.GetType())
			perGroup[b.Group] = append(perGroup[b.Group], m)
		}
	}
	// Group 1's heartbeat leads its batch; group 3's vote is there though it
	// was queued after every append.
	if g1 := perGroup[1]; len(g1) == 0 || g1[0].GetType() != pb.MessageType_MsgHeartbeat {
		t.Fatalf("group 1 batch does not start with the heartbeat: %v", types)
	}
	if g3 := perGroup[3]; len(g3) != 1 || g3[0].GetType() != pb.MessageType_MsgVote {
		t.Fatalf("group 3 batch: %v", g3)
	}
	bulk := 0
	for _, m := range append(perGroup[1], perGroup[2]...) {
		if m.GetType() == pb.MessageType_MsgApp {
			bulk++
		}
	}
	if bulk != 3 {
		t.Fatalf("first frame carries %d appends, want 3 (budget %d)", bulk, budget)
	}

	// Draining the rest returns every append, in order per group.
	last := map[uint64]int64{1: -1, 2: -1}
	for _, ms := range perGroup {
		for _, m := range ms {
			if m.GetType() == pb.MessageType_MsgApp {
				last[m.GetIndex()%2+1] = int64(m.GetIndex())
			}
		}
	}
	for {
		job := q.nextFrame(1<<20, 0, budget, false, index)
		if job == nil {
			break
		}
		for _, b := range job.env.Batches {
			for _, m := range b.Msgs {
				if int64(m.GetIndex()) <= last[b.Group] {
					t.Fatalf("group %d: index %d after %d", b.Group, m.GetIndex(), last[b.Group])
				}
				last[b.Group] = int64(m.GetIndex())
			}
		}
	}
	if last[1] != 18 || last[2] != 19 || q.bytes != 0 {
		t.Fatalf("drained to %v with %d bytes left", last, q.bytes)
	}
}

func TestNextFrameFitsMaxFrame(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const maxFrame = 64 << 10
	var q sendQueue
	for i := range 400 {
		size := rng.IntN(maxFrame - singleMessageFrame(0) - 200)
		if i%3 == 0 {
			q.push(item(uint64(rng.IntN(50)), pb.MessageType_MsgHeartbeat, uint64(i), 0), false)
			continue
		}
		q.push(item(uint64(rng.IntN(50)), pb.MessageType_MsgApp, uint64(i), size), false)
	}
	for q.len() > 0 {
		job := q.nextFrame(maxFrame, 0, maxFrame, false, map[uint64]int{})
		frame := encode(t, job.env)
		if len(frame)-FrameHeaderLen > maxFrame {
			t.Fatalf("frame of %d bytes, limit %d", len(frame)-FrameHeaderLen, maxFrame)
		}
	}
}

// TestNextFrameLeavesRoomForControl: the bytes a frame's control messages
// take are left out of its raft messages' budget.
func TestNextFrameLeavesRoomForControl(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const maxFrame = 64 << 10
	var q sendQueue
	for i := range 200 {
		size := rng.IntN(maxFrame - singleMessageFrame(0) - 200)
		q.push(item(uint64(rng.IntN(20)), pb.MessageType_MsgApp, uint64(i), size), false)
	}
	for i := 0; q.len() > 0; i++ {
		var control [][]byte
		reserved := 0
		if i%2 == 0 { // every other frame, so that every message gets a turn
			control = [][]byte{make([]byte, rng.IntN(maxFrame/2))}
			reserved = controlOverhead + len(control[0])
		}
		job := q.nextFrame(maxFrame, reserved, maxFrame, false, map[uint64]int{})
		job.env.Control = control
		frame := encode(t, job.env)
		if len(frame)-FrameHeaderLen > maxFrame {
			t.Fatalf("frame %d of %d bytes with %d reserved, limit %d", i, len(frame)-FrameHeaderLen, reserved, maxFrame)
		}
	}
}

// queuedBytes is what q's lanes and stream hold, by cost.
func queuedBytes(q *sendQueue) int {
	sum := 0
	for _, f := range []*fifo{&q.control, &q.bulk, &q.waiting, &q.held} {
		for _, it := range f.items[f.head:] {
			sum += it.cost()
		}
	}
	if q.streaming != nil {
		sum += q.streaming.cost()
	}
	return sum
}

// The queue keeps its invariants with streamed snapshots among the other
// messages, frames that fail and a queue trimmed to its bound: its byte
// accounting is exact, its frames fit, each group's bulk messages arrive
// in the order they were queued, and every MsgSnap ends in exactly one
// outcome, delivered or reported dropped, as PeerSender.written and report
// make of them.
func TestSendQueueInvariantsWithStreams(t *testing.T) {
	const maxFrame, budget, limit = 64 << 10, 16 << 10, 256 << 10
	chunk := chunkBytes(maxFrame, budget)
	rng := rand.New(rand.NewPCG(11, 12))
	var q sendQueue
	outcomes := map[uint64]int{} // MsgSnap index → outcomes, delivered or dropped
	snaps := 0
	lastBulk := map[uint64]uint64{} // group → index of the last bulk message delivered
	asm := &assembly{max: 1 << 20}
	delivered := func(group uint64, m *pb.Message) {
		if m.GetIndex() <= lastBulk[group] {
			t.Fatalf("group %d: %s index %d delivered after index %d", group, m.GetType(), m.GetIndex(), lastBulk[group])
		}
		lastBulk[group] = m.GetIndex()
		if m.GetType() == pb.MessageType_MsgSnap {
			outcomes[m.GetIndex()]++
		}
	}
	dropped := func(items []queued) {
		for _, it := range items {
			if it.msg.GetType() == pb.MessageType_MsgSnap {
				outcomes[it.msg.GetIndex()]++
			}
		}
	}
	// frame takes the next frame and writes it, or fails it as the writer
	// may: an encoding error keeps the connection, a write error drops it
	// and everything queued. release lets held heartbeats go.
	frame := func(fail int, release bool) bool {
		job := q.nextFrame(maxFrame, 0, budget, release, map[uint64]int{})
		if job == nil {
			return false
		}
		switch fail {
		case 1:
			lost := job.lost(nil)
			if q.abort(job.chunkOf) {
				lost = append(lost, *job.chunkOf)
			}
			dropped(lost)
			return true
		case 2:
			dropped(job.lost(nil))
			dropped(q.drain(nil))
			asm.reset() // a new connection, a new assembly
			return true
		}
		b := encode(t, job.env)
		if len(b)-FrameHeaderLen > maxFrame {
			t.Fatalf("frame of %d bytes, limit %d", len(b)-FrameHeaderLen, maxFrame)
		}
		completed := 0
		for _, batch := range job.env.Batches {
			for _, m := range batch.Msgs {
				if isBulk(m.GetType()) {
					delivered(batch.Group, m)
				}
				if m.GetType() == pb.MessageType_MsgSnap {
					completed++
				}
			}
		}
		if job.env.Snap != nil {
			group, m, err := asm.add(job.env.Snap)
			if err != nil {
				t.Fatal(err)
			}
			if m != nil {
				delivered(group, m)
				completed++
			}
		}
		if len(job.snaps) != completed {
			t.Fatalf("frame reports %d snapshots, completes %d", len(job.snaps), completed)
		}
		return true
	}

	index := uint64(0)
	for i := range 20000 {
		index++
		group := uint64(1 + rng.IntN(6))
		switch r := rng.IntN(100); {
		case r < 4: // a streamed MsgSnap
			m := bigSnap(index, 8<<10+rng.IntN(64<<10))
			st, err := newSnapStream(m, chunk)
			if err != nil {
				t.Fatal(err)
			}
			q.push(queued{group: group, msg: m, size: proto.Size(m), stream: st}, false)
			snaps++
		case r < 6: // a MsgSnap that fits a frame
			m := bigSnap(index, rng.IntN(4<<10))
			q.push(queued{group: group, msg: m, size: proto.Size(m)}, false)
			snaps++
		case r < 60:
			q.push(item(group, pb.MessageType_MsgApp, index, rng.IntN(3<<10)), false)
		default:
			q.push(item(group, pb.MessageType_MsgHeartbeat, index, 0), rng.IntN(2) == 0)
		}
		dropped(q.trim(limit, nil))
		if q.bytes > limit {
			t.Fatalf("step %d: %d bytes queued, bound %d", i, q.bytes, limit)
		}
		// Spells where the peer is slow, which fill the queue, and spells
		// where it keeps up.
		frames := rng.IntN(4)
		if (i/2000)%2 == 0 && rng.IntN(12) != 0 {
			frames = 0
		}
		for range frames {
			fail := 0
			if r := rng.IntN(200); r < 2 {
				fail = 1 + r
			}
			frame(fail, rng.IntN(3) == 0)
		}
		if got := queuedBytes(&q); got != q.bytes {
			t.Fatalf("step %d: accounting says %d bytes, queue holds %d", i, q.bytes, got)
		}
	}
	// The last frames release held heartbeats, or they would stay.
	for n := 0; frame(0, true); n++ {
		if n > 100000 {
			t.Fatal("the queue does not drain")
		}
	}
	if q.bytes != 0 || q.len() != 0 {
		t.Fatalf("drained with %d bytes, %d messages left", q.bytes, q.len())
	}
	if len(outcomes) != snaps {
		t.Fatalf("%d snapshots queued, %d ended", snaps, len(outcomes))
	}
	for idx, n := range outcomes {
		if n != 1 {
			t.Fatalf("snapshot %d ended %d times", idx, n)
		}
	}
}
