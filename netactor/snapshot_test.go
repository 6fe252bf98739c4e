package netactor

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// bigSnap returns a MsgSnap from node 1 to node 2 with size bytes of random
// snapshot data and the other fields a MsgSnap may have set.
func bigSnap(index uint64, size int) *pb.Message {
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{byte(index), byte(size)})
	_, _ = rng.Read(data)
	return &pb.Message{
		Type: pb.MessageType_MsgSnap.Enum(), To: proto.Uint64(2), From: proto.Uint64(1),
		Term: proto.Uint64(9), LogTerm: proto.Uint64(8), Index: proto.Uint64(index), Commit: proto.Uint64(index),
		Context: []byte("ctx"),
		Snapshot: &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{
			Index: proto.Uint64(index), Term: proto.Uint64(8),
			ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}},
		}},
	}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// A MsgSnap sent in chunks, each through the frame codec, is reassembled
// identical to what the group sent, which the stream leaves as it was.
func TestSnapStreamReassembles(t *testing.T) {
	m := bigSnap(100, 1<<20+123)
	want := proto.CloneOf(m)
	st, err := newSnapStream(m, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	gauge := NewMetrics(nil).receivingGauge(1)
	a := &assembly{max: 2 << 20, gauge: gauge}
	var got *pb.Message
	for chunks := 1; got == nil; chunks++ {
		c, last := st.next(7)
		env, err := DecodeEnvelope(encode(t, &Envelope{Snap: c})[FrameHeaderLen:])
		if err != nil {
			t.Fatalf("chunk %d: %v", chunks, err)
		}
		group, done, err := a.add(env.Snap)
		if err != nil {
			t.Fatalf("chunk %d: %v", chunks, err)
		}
		if last != (done != nil) {
			t.Fatalf("chunk %d: last %v, but the assembly completed: %v", chunks, last, done != nil)
		}
		if !last && gaugeValue(t, gauge) != float64(st.sent) {
			t.Fatalf("chunk %d: gauge %v, want the %d bytes received", chunks, gaugeValue(t, gauge), st.sent)
		}
		if last {
			if group != 7 || chunks != 17 {
				t.Fatalf("completed group %d after %d chunks, want group 7 after 17", group, chunks)
			}
			got = done
		}
	}
	if !proto.Equal(got, want) {
		t.Fatal("reassembled MsgSnap differs from the one sent")
	}
	if !proto.Equal(m, want) {
		t.Fatal("streaming changed the group's MsgSnap")
	}
	if v := gaugeValue(t, gauge); v != 0 {
		t.Fatalf("gauge %v after the snapshot completed, want 0", v)
	}
}

// An assembly takes only chunks that continue the snapshot it receives, up
// to the size its header announced and the limit, and frees what it held
// when it refuses one.
func TestAssemblyRefuses(t *testing.T) {
	header := func(m *pb.Message) []byte { return mustMarshal(t, m) }
	snapHdr := header(snapHeader(bigSnap(5, 10)))
	first := func(group uint64, size uint64, data string) *SnapChunk {
		return &SnapChunk{Group: group, Header: snapHdr, Size: size, Data: []byte(data)}
	}
	next := func(group uint64, data string) *SnapChunk { return &SnapChunk{Group: group, Data: []byte(data)} }
	const limit = 100
	tests := []struct {
		name   string
		chunks []*SnapChunk
		reason string // RejectMalformed or a rejectError's reason
	}{
		{"chunk without a header", []*SnapChunk{next(7, "abc")}, RejectMalformed},
		{"chunk of another group", []*SnapChunk{first(7, 10, "abc"), next(8, "d")}, RejectMalformed},
		{"more data than announced", []*SnapChunk{first(7, 3, "ab"), next(7, "cd")}, RejectMalformed},
		{"more data than announced in the first chunk", []*SnapChunk{first(7, 1, "ab")}, RejectMalformed},
		{"announced above the limit", []*SnapChunk{first(7, 50, "abc"), first(7, limit+1, "x")}, RejectSnapshotTooLarge},
		{"header not a MsgSnap", []*SnapChunk{{Group: 7, Header: header(msg(pb.MessageType_MsgApp, 2, 1, 1)), Size: 3}}, RejectMalformed},
		{"header with data", []*SnapChunk{{Group: 7, Header: header(bigSnap(5, 10)), Size: 3}}, RejectMalformed},
		{"header not a message", []*SnapChunk{{Group: 7, Header: []byte{0xff}, Size: 3}}, RejectMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gauge := NewMetrics(nil).receivingGauge(1)
			a := &assembly{max: limit, gauge: gauge}
			var err error
			for i, c := range tt.chunks {
				var m *pb.Message
				if _, m, err = a.add(c); err != nil {
					if i != len(tt.chunks)-1 {
						t.Fatalf("chunk %d refused: %v", i, err)
					}
					break
				}
				if m != nil {
					t.Fatalf("chunk %d completed a snapshot", i)
				}
			}
			switch rej, ok := errors.AsType[*rejectError](err); {
			case tt.reason == RejectMalformed && !errors.Is(err, ErrMalformedFrame):
				t.Fatalf("got %v, want ErrMalformedFrame", err)
			case tt.reason != RejectMalformed && (!ok || rej.reason != tt.reason):
				t.Fatalf("got %v, want a rejection for %s", err, tt.reason)
			}
			a.reset() // what the reader does as it closes the connection
			if v := gaugeValue(t, gauge); v != 0 {
				t.Fatalf("gauge %v once the connection is closed, want 0", v)
			}
		})
	}

	// A new header replaces a snapshot its sender abandoned.
	gauge := NewMetrics(nil).receivingGauge(1)
	a := &assembly{max: limit, gauge: gauge}
	for _, c := range []*SnapChunk{first(7, 10, "abc"), first(8, 4, "wx")} {
		if _, m, err := a.add(c); err != nil || m != nil {
			t.Fatalf("chunk of group %d: %v, %v", c.Group, m, err)
		}
	}
	if v := gaugeValue(t, gauge); v != 2 {
		t.Fatalf("gauge %v after a header replaced a snapshot, want 2", v)
	}
	group, m, err := a.add(next(8, "yz"))
	if err != nil || group != 8 || string(m.GetSnapshot().GetData()) != "wxyz" {
		t.Fatalf("replacing snapshot: group %d, %v, %v", group, m, err)
	}
}

// nextFrame streams a MsgSnap too large for a frame a chunk per frame, one
// snapshot at a time, with other groups' appends in the same frames, and
// keeps each group's messages in order.
func TestNextFrameStreamsSnapshot(t *testing.T) {
	const maxFrame, budget = 64 << 10, 16 << 10
	chunk := chunkBytes(maxFrame, budget)
	var q sendQueue
	push := func(it queued) {
		if it.msg.GetType() == pb.MessageType_MsgSnap {
			st, err := newSnapStream(it.msg, chunk)
			if err != nil {
				t.Fatal(err)
			}
			it.stream = st
		}
		q.push(it, false)
	}
	snapA, snapB := bigSnap(10, 200<<10), bigSnap(20, 100<<10)
	push(item(1, pb.MessageType_MsgApp, 1, 1000))
	push(queued{group: 2, msg: snapA, size: proto.Size(snapA)})
	for i := range 40 {
		push(item(3, pb.MessageType_MsgApp, uint64(i), 1000))
	}
	push(item(2, pb.MessageType_MsgApp, 11, 1000)) // after its group's snapshot
	push(queued{group: 4, msg: snapB, size: proto.Size(snapB)})
	push(item(1, pb.MessageType_MsgApp, 2, 1000))
	if q.bytes > 2*maxFrame {
		t.Fatalf("%d bytes charged for two snapshots of 300 KiB and 42 KiB of appends", q.bytes)
	}

	got := map[uint64][]*pb.Message{}
	a := &assembly{max: 1 << 20}
	var mixed, frames int
	var completedIn []uint64
	for job := q.nextFrame(maxFrame, 0, budget, false, map[uint64]int{}); job != nil; job = q.nextFrame(maxFrame, 0, budget, false, map[uint64]int{}) {
		frames++
		frame := encode(t, job.env)
		if len(frame)-FrameHeaderLen > maxFrame {
			t.Fatalf("frame %d of %d bytes, limit %d", frames, len(frame)-FrameHeaderLen, maxFrame)
		}
		env, err := DecodeEnvelope(frame[FrameHeaderLen:])
		if err != nil {
			t.Fatal(err)
		}
		// In the order the reader delivers them.
		for _, b := range env.Batches {
			got[b.Group] = append(got[b.Group], b.Msgs...)
		}
		if env.Snap == nil {
			continue
		}
		if len(env.Batches) > 0 {
			mixed++
		}
		group, m, err := a.add(env.Snap)
		if err != nil {
			t.Fatalf("frame %d: %v", frames, err)
		}
		if m != nil {
			got[group] = append(got[group], m)
			completedIn = append(completedIn, group)
			if !job.last || len(job.snaps) != 1 || job.snaps[0] != group {
				t.Fatalf("frame completing group %d's snapshot: last %v, snaps %v", group, job.last, job.snaps)
			}
		} else if job.last || len(job.snaps) != 0 {
			t.Fatalf("frame %d with a chunk in the middle: last %v, snaps %v", frames, job.last, job.snaps)
		}
	}
	if q.bytes != 0 || q.len() != 0 {
		t.Fatalf("%d bytes, %d messages left", q.bytes, q.len())
	}
	if mixed == 0 {
		t.Fatal("no frame carried appends with a chunk: appends waited for the whole stream")
	}
	if len(completedIn) != 2 || completedIn[0] != 2 || completedIn[1] != 4 {
		t.Fatalf("snapshots completed for groups %v, want 2 then 4", completedIn)
	}
	want := map[uint64][]uint64{1: {1, 2}, 2: {10, 11}, 4: {20}}
	for g, idx := range want {
		var have []uint64
		for _, m := range got[g] {
			have = append(have, m.GetIndex())
		}
		if !slices.Equal(have, idx) {
			t.Fatalf("group %d received indexes %v, want %v", g, have, idx)
		}
	}
	if !proto.Equal(got[2][0], snapA) || !proto.Equal(got[4][0], snapB) {
		t.Fatal("a reassembled snapshot differs from the one queued")
	}
	if len(got[3]) != 40 {
		t.Fatalf("group 3: %d appends, want 40", len(got[3]))
	}
	t.Logf("%d frames, %d with appends and a chunk", frames, mixed)
}

// Messages that must wait for a stream in flight — the next streamed
// MsgSnap, a later message of the streaming group — hold up only their own
// group: another group's append queued behind them goes while the first
// snapshot still streams, and each group's messages keep their order.
func TestNextFrameWaitingSnapshotHoldsOnlyItsGroup(t *testing.T) {
	const maxFrame, budget = 64 << 10, 16 << 10
	chunk := chunkBytes(maxFrame, budget)
	snapItem := func(group, index uint64) queued {
		m := bigSnap(index, 400<<10)
		st, err := newSnapStream(m, chunk)
		if err != nil {
			t.Fatal(err)
		}
		return queued{group: group, msg: m, size: proto.Size(m), stream: st}
	}
	tests := []struct {
		name    string
		blocker queued // queued after group 2's snapshot, before group 3's append
		want    map[uint64][]uint64
	}{
		{"another group's snapshot", snapItem(4, 20), map[uint64][]uint64{2: {10, 12}, 3: {1}, 4: {20}}},
		{"an append of the streaming group", item(2, pb.MessageType_MsgApp, 11, 1000), map[uint64][]uint64{2: {10, 11, 12}, 3: {1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q sendQueue
			q.push(snapItem(2, 10), false)
			q.push(tt.blocker, false)
			q.push(item(3, pb.MessageType_MsgApp, 1, 1000), false)
			q.push(item(2, pb.MessageType_MsgApp, 12, 1000), false)

			got := map[uint64][]uint64{}
			a := &assembly{max: 1 << 20}
			frames, snapDoneAt, appAt := 0, 0, 0
			for job := q.nextFrame(maxFrame, 0, budget, false, map[uint64]int{}); job != nil && frames < 1000; job = q.nextFrame(maxFrame, 0, budget, false, map[uint64]int{}) {
				frames++
				for _, b := range job.env.Batches {
					for _, m := range b.Msgs {
						got[b.Group] = append(got[b.Group], m.GetIndex())
					}
					if b.Group == 3 && appAt == 0 {
						appAt = frames
					}
				}
				if job.env.Snap == nil {
					continue
				}
				group, m, err := a.add(job.env.Snap)
				if err != nil {
					t.Fatalf("frame %d: %v", frames, err)
				}
				if m != nil {
					got[group] = append(got[group], m.GetIndex())
					if group == 2 {
						snapDoneAt = frames
					}
				}
			}
			if appAt == 0 || appAt >= snapDoneAt {
				t.Fatalf("group 3's append went in frame %d, group 2's snapshot completed in frame %d", appAt, snapDoneAt)
			}
			for g, want := range tt.want {
				if !slices.Equal(got[g], want) {
					t.Fatalf("group %d received indexes %v, want %v", g, got[g], want)
				}
			}
			if q.bytes != 0 || q.len() != 0 {
				t.Fatalf("%d bytes, %d messages left", q.bytes, q.len())
			}
		})
	}
}

// The same through two nodes: an append of group 9 sent after two large
// snapshots (groups 7 and 8) reaches the peer before group 7's snapshot has
// arrived whole. Groups 7 and 9 share one recorder, so that its order is
// the order the reader delivered them in.
func TestAppendNotHeldBehindWaitingSnapshot(t *testing.T) {
	const frame = 256 << 10
	n1, n2 := newNode(t, 1), newNode(t, 2)
	n2.maxFrame = frame
	n2.listen("127.0.0.1:0")
	shared := n2.group(7)
	pid, _ := n2.router.Lookup(7)
	n2.router.Set(9, pid)
	other := n2.group(8)
	p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{MaxFrameBytes: frame})
	root := n1.sys.Root
	connect(t, root, p, 7, 2, shared)

	p.Send(root, 7, []*pb.Message{bigSnap(50, 16<<20)})
	p.Send(root, 8, []*pb.Message{bigSnap(60, 16<<20)})
	p.Send(root, 9, []*pb.Message{msg(pb.MessageType_MsgApp, 2, 1, 1, make([]byte, 1000))})
	waitFor(t, 20*time.Second, "both snapshots and the append", func() bool { return shared.count() == 2 && other.count() == 1 })
	if got := shared.received(); got[0].GetType() == pb.MessageType_MsgSnap {
		t.Fatal("group 9's append arrived only after group 7's 16 MiB snapshot had been streamed whole")
	}
}

// A MsgSnap several times the frame limit arrives whole and identical, the
// appends of another group flow while it streams, and it ends in one
// successful SnapshotStatus.
func TestSnapshotLargerThanFrameArrivesWhole(t *testing.T) {
	const frame = 256 << 10
	n1, n2 := newNode(t, 1), newNode(t, 2)
	n2.maxFrame = frame
	n2.listen("127.0.0.1:0")
	remote, other, local := n2.group(7), n2.group(9), n1.group(7)
	p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{MaxFrameBytes: frame})
	root := n1.sys.Root
	connect(t, root, p, 7, 2, remote)

	snap := bigSnap(50, 3<<20) // 12 frames' worth
	want := proto.CloneOf(snap)
	p.Send(root, 7, []*pb.Message{snap})
	for i := range 100 {
		p.Send(root, 9, []*pb.Message{msg(pb.MessageType_MsgApp, 2, 1, uint64(i+1), make([]byte, 1000))})
	}
	waitFor(t, 10*time.Second, "the snapshot", func() bool { return remote.count() == 1 && other.count() == 100 })
	if got := remote.received()[0]; !proto.Equal(got, want) {
		t.Fatalf("received snapshot differs: %d bytes of data, sent %d", len(got.GetSnapshot().GetData()), len(want.GetSnapshot().GetData()))
	}
	waitFor(t, 5*time.Second, "the SnapshotStatus", func() bool { return len(local.snapStatuses()) > 0 })
	settle(t, n1, 7, local)
	if got := local.snapStatuses(); len(got) != 1 || got[0].Failed || got[0].To != 2 {
		t.Fatalf("SnapshotStatus reports %+v, want one success", got)
	}
	if got := n2.metric("flotilla_raft_frames_received_total", "peer", "1"); got < 3<<20/(frame/4) {
		t.Fatalf("%v frames received for a 3 MiB snapshot over %d-byte frames", got, frame)
	}
	if got := n2.metric("flotilla_raft_snapshot_receiving_bytes", "peer", "1"); got != 0 {
		t.Fatalf("%v bytes still being received", got)
	}
	if got := n1.metric("flotilla_raft_messages_dropped_total", "reason", DropTooLarge); got != 0 {
		t.Fatalf("%v messages dropped as too large", got)
	}
}

// A snapshot above MaxSnapshotBytes never reaches the group and ends in
// one failed SnapshotStatus: the sender drops one above its own limit, and
// the receiver closes the connection of one above its limit.
func TestSnapshotAboveLimitRefused(t *testing.T) {
	const frame = 256 << 10
	tests := []struct {
		name                    string
		sendLimit, receiveLimit int
		reject                  string
	}{
		{"above the sender's limit", 1 << 20, 0, ""},
		{"above the receiver's limit", 0, 1 << 20, RejectSnapshotTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n1, n2 := newNode(t, 1), newNode(t, 2)
			n2.maxFrame, n2.maxSnapshot = frame, tt.receiveLimit
			n2.listen("127.0.0.1:0")
			remote, local := n2.group(7), n1.group(7)
			p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{MaxFrameBytes: frame, MaxSnapshotBytes: tt.sendLimit})
			root := n1.sys.Root
			connect(t, root, p, 7, 2, remote)

			// Far more than the socket buffers hold: the receiver's
			// close fails the stream before its last chunk is written.
			p.Send(root, 7, []*pb.Message{bigSnap(50, 32<<20)})
			waitFor(t, 10*time.Second, "the SnapshotStatus", func() bool { return len(local.snapStatuses()) > 0 })
			settle(t, n1, 7, local)
			if got := local.snapStatuses(); len(got) != 1 || !got[0].Failed {
				t.Fatalf("SnapshotStatus reports %+v, want one failure", got)
			}
			if tt.reject != "" {
				waitFor(t, 5*time.Second, "the connection refused", func() bool {
					return n2.metric("flotilla_raft_connections_rejected_total", "reason", tt.reject) == 1
				})
			} else {
				if got := n1.metric("flotilla_raft_messages_dropped_total", "reason", DropTooLarge); got != 1 {
					t.Fatalf("%v messages dropped as too large, want 1", got)
				}
				if !strings.Contains(n1.logs.String(), "larger than the snapshot limit") {
					t.Fatalf("the drop is not logged:\n%s", n1.logs)
				}
			}
			// The peer still takes messages, over a new connection if
			// it closed the first.
			connect(t, root, p, 7, 2, remote)
			if remote.count() != 0 {
				t.Fatalf("the group received %d messages", remote.count())
			}
			if got := n2.metric("flotilla_raft_snapshot_receiving_bytes", "peer", "1"); got != 0 {
				t.Fatalf("%v bytes still held for the snapshot", got)
			}
		})
	}
}

// stallingPeer accepts connections and reads the first readBytes of each;
// then it closes the connection, or with stall keeps it open unread.
func stallingPeer(t *testing.T, readBytes int64, stall bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				_, _ = io.CopyN(io.Discard, c, readBytes)
				if !stall {
					c.Close()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// A MsgSnap whose stream is cut (the connection fails, the peer is removed
// or moves) ends in exactly one failed SnapshotStatus.
func TestSnapshotStreamCutReportsFailure(t *testing.T) {
	const frame = 256 << 10
	// The peer reads the first MiB of the connection, a few chunks of the
	// snapshot, then closes it or stops reading while it is cut.
	tests := []struct {
		name string
		cut  func(t *testing.T, p *Peers) // nil: the peer closes the connection
	}{
		{"connection closed mid-stream", nil},
		{"peer removed mid-stream", func(t *testing.T, p *Peers) { p.RemovePeer(2) }},
		{"peer moved mid-stream", func(t *testing.T, p *Peers) {
			if err := p.SetPeer(2, freeAddr(t)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n1 := newNode(t, 1)
			local := n1.group(7)
			p := n1.peers(map[uint64]string{2: stallingPeer(t, 1<<20, tt.cut != nil)}, SenderOptions{MaxFrameBytes: frame, WriteTimeout: time.Minute})
			root := n1.sys.Root
			// Messages sent before the sender is connected are dropped:
			// wait until a frame went out.
			waitFor(t, 10*time.Second, "the connection", func() bool {
				p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgHeartbeat, 2, 1, 0)})
				time.Sleep(5 * time.Millisecond)
				return n1.metric("flotilla_raft_frames_sent_total", "peer", "2") > 0
			})
			// Counted before the send: the peer reads 1 MiB, so at least
			// four chunk frames go out however fast the first ones do.
			sent := n1.metric("flotilla_raft_frames_sent_total", "peer", "2")
			p.Send(root, 7, []*pb.Message{bigSnap(50, 32<<20)})
			if tt.cut != nil {
				waitFor(t, 10*time.Second, "the stream to start", func() bool {
					return n1.metric("flotilla_raft_frames_sent_total", "peer", "2") >= sent+4
				})
				tt.cut(t, p)
			}
			waitFor(t, 10*time.Second, "the SnapshotStatus", func() bool { return len(local.snapStatuses()) > 0 })
			settle(t, n1, 7, local)
			if got := local.snapStatuses(); len(got) != 1 || !got[0].Failed {
				t.Fatalf("SnapshotStatus reports %+v, want one failure", got)
			}
		})
	}
}

// A connection that drops in the middle of a snapshot frees what the
// reader held of it, and delivers nothing.
func TestReceiverFreesSnapshotOfDroppedConnection(t *testing.T) {
	n2 := newNode(t, 2)
	n2.listen("127.0.0.1:0")
	remote := n2.group(7)
	c, err := net.Dial("tcp", n2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	snap := bigSnap(50, 4<<20)
	st, err := newSnapStream(snap, 256<<10)
	if err != nil {
		t.Fatal(err)
	}
	chunk, _ := st.next(7)
	stream := encode(t, &Envelope{From: 1, To: 2})
	stream = append(stream, encode(t, &Envelope{Snap: chunk})...)
	if _, err := c.Write(stream); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the first chunk", func() bool {
		return n2.metric("flotilla_raft_snapshot_receiving_bytes", "peer", "1") == 256<<10
	})
	// Half of the next chunk's frame, then the connection drops.
	next, _ := st.next(7)
	frame := encode(t, &Envelope{Snap: next})
	if _, err := c.Write(frame[:len(frame)/2]); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, 5*time.Second, "the assembly freed", func() bool {
		return n2.metric("flotilla_raft_snapshot_receiving_bytes", "peer", "1") == 0
	})
	if remote.count() != 0 {
		t.Fatalf("%d messages delivered from half a snapshot", remote.count())
	}
	if bytes.Contains([]byte(n2.logs.String()), []byte("broke the protocol")) {
		t.Fatalf("a dropped connection counted as a protocol violation:\n%s", n2.logs)
	}
}

// closedByPeer reports whether the other end closed c, waiting briefly.
func closedByPeer(c net.Conn) bool {
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Millisecond)); err != nil {
		return true
	}
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// hello is the first frame of a connection from peer from to node 2.
func hello(t *testing.T, from uint64) []byte { return encode(t, &Envelope{From: from, To: 2}) }

// snapFrames returns the frames that stream snap for group in chunks: all
// but the last chunk's, and the last chunk's.
func snapFrames(t *testing.T, group uint64, snap *pb.Message, chunk int) (start, last []byte) {
	t.Helper()
	st, err := newSnapStream(snap, chunk)
	if err != nil {
		t.Fatal(err)
	}
	for {
		c, done := st.next(group)
		frame := encode(t, &Envelope{Snap: c})
		if done {
			return start, frame
		}
		start = append(start, frame...)
	}
}

// A peer that opens a new connection closes its older one, and with it
// the snapshot that one was receiving: however many connections a peer
// opens (a redialling sender leaves half-open ones), the node holds one
// partial snapshot of it at most.
func TestReassemblyBoundedPerPeer(t *testing.T) {
	const frame, limit, chunk = 256 << 10, 4 << 20, 64 << 10
	n2 := newNode(t, 2)
	n2.maxFrame, n2.maxSnapshot = frame, limit
	n2.listen("127.0.0.1:0")
	remote := n2.group(7)
	var conns []net.Conn
	var last []byte
	for i := range 4 {
		c, err := net.Dial("tcp", n2.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var start []byte
		start, last = snapFrames(t, 7, bigSnap(uint64(50+i), 1<<20), chunk)
		if _, err := c.Write(append(hello(t, 1), start...)); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			waitFor(t, 5*time.Second, "the older connection closed", func() bool { return closedByPeer(conns[i-1]) })
		}
		conns = append(conns, c)
		waitFor(t, 5*time.Second, "one snapshot's chunks", func() bool {
			return n2.metric("flotilla_raft_snapshot_receiving_bytes", "peer", "1") == 1<<20-chunk
		})
	}
	// The newest connection still receives.
	if _, err := conns[3].Write(last); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the snapshot", func() bool { return remote.count() == 1 })
	if got := remote.received()[0].GetIndex(); got != 53 {
		t.Fatalf("received the snapshot at index %d, want the newest connection's, 53", got)
	}
	if got := n2.metric("flotilla_raft_snapshot_receiving_bytes", "peer", "1"); got != 0 {
		t.Fatalf("%v bytes still being received", got)
	}
	if closedByPeer(conns[3]) {
		t.Fatal("the newest connection was closed")
	}
}

// The snapshots a node receives from all its peers together hold at most
// MaxSnapshotBytes: one that would take more is refused at its first
// chunk, logged once, and its chunks skipped, the connection left up; once
// the first is complete, the refused one is taken when it is sent again.
func TestSnapshotsBeingReceivedBoundedPerNode(t *testing.T) {
	const frame, limit, chunk = 256 << 10, 1 << 20, 64 << 10
	n2 := newNode(t, 2)
	n2.maxFrame, n2.maxSnapshot = frame, limit
	n2.listen("127.0.0.1:0")
	g7, g8 := n2.group(7), n2.group(8)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", n2.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	write := func(c net.Conn, b []byte) {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	fromPeer3 := func(m *pb.Message) *pb.Message { m.From = proto.Uint64(3); return m }

	// Peer 1 holds 640 KiB of the budget's 1 MiB.
	c1 := dial()
	start1, last1 := snapFrames(t, 7, bigSnap(50, 640<<10), chunk)
	write(c1, append(hello(t, 1), start1...))
	waitFor(t, 5*time.Second, "peer 1's chunks", func() bool {
		return n2.metric("flotilla_raft_snapshot_receiving_bytes", "peer", "1") == 640<<10-chunk
	})

	// Peer 3's 640 KiB do not fit: refused, the chunks skipped; its next
	// message still arrives.
	c3 := dial()
	start3, last3 := snapFrames(t, 8, fromPeer3(bigSnap(60, 640<<10)), chunk)
	write(c3, slices.Concat(hello(t, 3), start3, last3))
	app := fromPeer3(msg(pb.MessageType_MsgApp, 2, 3, 61))
	write(c3, encode(t, &Envelope{Batches: []GroupBatch{{Group: 8, Msgs: []*pb.Message{app}}}}))
	waitFor(t, 5*time.Second, "peer 3's append", func() bool {
		return slices.ContainsFunc(g8.received(), func(m *pb.Message) bool { return m.GetType() == pb.MessageType_MsgApp })
	})
	if got := g8.count(); got != 1 {
		t.Fatalf("group 8 received %d messages, want only the append: the snapshot was not refused", got)
	}
	if got := n2.metric("flotilla_raft_messages_dropped_total", "reason", DropSnapshotMemory); got != 1 {
		t.Fatalf("%v snapshots dropped for memory, want 1", got)
	}
	if got := strings.Count(n2.logs.String(), "raft snapshot refused"); got != 1 {
		t.Fatalf("the refusal logged %d times, want once:\n%s", got, n2.logs)
	}
	if got := n2.metric("flotilla_raft_snapshot_receiving_bytes", "peer", "3"); got != 0 {
		t.Fatalf("%v bytes held for the refused snapshot", got)
	}

	// Peer 1's completes and frees the budget; peer 3's goes through.
	write(c1, last1)
	waitFor(t, 5*time.Second, "peer 1's snapshot", func() bool { return g7.count() == 1 })
	write(c3, slices.Concat(start3, last3))
	waitFor(t, 5*time.Second, "peer 3's snapshot", func() bool { return g8.count() == 2 })
	if got := g8.received()[1]; got.GetType() != pb.MessageType_MsgSnap || got.GetIndex() != 60 {
		t.Fatalf("group 8 received a %s at %d, want the snapshot at 60", got.GetType(), got.GetIndex())
	}
	for _, c := range []net.Conn{c1, c3} {
		if closedByPeer(c) {
			t.Fatal("a connection was closed")
		}
	}
	if got := n2.metric("flotilla_raft_snapshot_receiving_bytes", "peer", "3"); got != 0 {
		t.Fatalf("%v bytes still being received", got)
	}
}

// Assemblies sharing a budget reserve what a header announces, skip the
// chunks of a snapshot that does not fit, and give the budget back when a
// snapshot completes or is dropped.
func TestAssemblySharesBudget(t *testing.T) {
	hdr := mustMarshal(t, snapHeader(bigSnap(5, 10)))
	first := func(group uint64, size uint64, data string) *SnapChunk {
		return &SnapChunk{Group: group, Header: hdr, Size: size, Data: []byte(data)}
	}
	next := func(group uint64, data string) *SnapChunk { return &SnapChunk{Group: group, Data: []byte(data)} }
	budget := &snapBudget{limit: 10}
	a, b := &assembly{max: 10, budget: budget}, &assembly{max: 10, budget: budget}
	add := func(a *assembly, c *SnapChunk) (*pb.Message, error) {
		t.Helper()
		_, m, err := a.add(c)
		return m, err
	}
	if m, err := add(a, first(7, 6, "ab")); m != nil || err != nil {
		t.Fatalf("first snapshot: %v, %v", m, err)
	}
	_, err := add(b, first(8, 5, "x"))
	if refused, ok := errors.AsType[*snapshotRefusedError](err); !ok || refused.held != 6 || refused.size != 5 {
		t.Fatalf("second snapshot: %v, want it refused with 6 bytes held", err)
	}
	if m, err := add(b, next(8, "yz")); m != nil || err != nil {
		t.Fatalf("chunk of the refused snapshot: %v, %v", m, err)
	}
	if _, err := add(b, next(8, "abc")); !errors.Is(err, ErrMalformedFrame) {
		t.Fatalf("chunk past the refused snapshot's size: %v, want ErrMalformedFrame", err)
	}
	if m, err := add(a, next(7, "cdef")); err != nil || string(m.GetSnapshot().GetData()) != "abcdef" {
		t.Fatalf("completing the first snapshot: %v, %v", m, err)
	}
	if got := budget.held.Load(); got != 0 {
		t.Fatalf("%d bytes held once the snapshot completed", got)
	}
	if m, err := add(b, first(8, 10, "x")); m != nil || err != nil {
		t.Fatalf("a snapshot of the whole budget: %v, %v", m, err)
	}
	b.reset() // its connection closed
	if got := budget.held.Load(); got != 0 {
		t.Fatalf("%d bytes held once the connection closed", got)
	}
}
