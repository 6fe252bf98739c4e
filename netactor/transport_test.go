package netactor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/flotilla/flotilla/raftactor"
)

func TestDeliversInOrderPerGroupOverOneConnection(t *testing.T) {
	n1, n2 := newNode(t, 1), newNode(t, 2)
	n2.listen("127.0.0.1:0")
	const groups, perGroup = 50, 200
	recorders := map[uint64]*recorder{}
	for g := uint64(1); g <= groups; g++ {
		recorders[g] = n2.group(g)
	}
	p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{})
	root := n1.sys.Root
	connect(t, root, p, 7, 2, recorders[7])

	for i := uint64(1); i <= perGroup; i++ {
		for g := uint64(1); g <= groups; g++ {
			p.Send(root, g, []*pb.Message{msg(pb.MessageType_MsgApp, 2, 1, i, []byte("entry"))})
		}
	}
	for g, r := range recorders {
		waitFor(t, 10*time.Second, "every message", func() bool { return r.count() == perGroup })
		for i, m := range r.received() {
			if m.GetIndex() != uint64(i+1) {
				t.Fatalf("group %d: message %d has index %d", g, i, m.GetIndex())
			}
		}
	}
	if got := n2.accepts.Load(); got != 1 {
		t.Fatalf("%d connections accepted, want all groups on 1", got)
	}
	if got := n1.metric("flotilla_raft_frames_sent_total", "peer", "2"); got == 0 {
		t.Fatal("frames_sent_total not counted")
	}
	if got := n2.metric("flotilla_raft_frames_received_total", "peer", "1"); got == 0 {
		t.Fatal("frames_received_total not counted")
	}
}

func TestSendSplitsByPeerAndReportsUnknownPeers(t *testing.T) {
	n1, n2, n3 := newNode(t, 1), newNode(t, 2), newNode(t, 3)
	n2.listen("127.0.0.1:0")
	n3.listen("127.0.0.1:0")
	local, at2, at3 := n1.group(7), n2.group(7), n3.group(7)
	p := n1.peers(map[uint64]string{2: n2.addr, 3: n3.addr}, SenderOptions{})
	root := n1.sys.Root
	connect(t, root, p, 7, 2, at2)
	connect(t, root, p, 7, 3, at3)

	p.Send(root, 7, []*pb.Message{
		msg(pb.MessageType_MsgApp, 2, 1, 1),
		msg(pb.MessageType_MsgApp, 3, 1, 2),
		msg(pb.MessageType_MsgApp, 2, 1, 3),
		msg(pb.MessageType_MsgSnap, 9, 1, 4),
	})
	waitFor(t, 5*time.Second, "both peers", func() bool { return at2.count() == 2 && at3.count() == 1 })
	if got := at2.received(); got[0].GetIndex() != 1 || got[1].GetIndex() != 3 {
		t.Fatalf("peer 2 got indexes %d, %d; want 1, 3", got[0].GetIndex(), got[1].GetIndex())
	}
	waitFor(t, 5*time.Second, "unknown peer reported", func() bool {
		s := local.snapStatuses()
		return local.unreachableTo(9) == 1 && len(s) == 1 && s[0] == raftactor.SnapshotStatus{To: 9, Failed: true}
	})
	if got := n1.metric("flotilla_raft_messages_dropped_total", "reason", DropUnknownPeer); got != 1 {
		t.Fatalf("unknown_peer drops = %v, want 1", got)
	}
}

func TestHeartbeatOvertakesBulkBacklog(t *testing.T) {
	n1, n2 := newNode(t, 1), newNode(t, 2)
	n2.listen("127.0.0.1:0")
	r := n2.group(7)
	p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{
		MaxFrameBytes: 4 << 20, QueueBytes: 256 << 20, BulkBytesPerFrame: 256 << 10,
	})
	root := n1.sys.Root
	connect(t, root, p, 7, 2, r)

	const apps = 100
	entry := make([]byte, 256<<10)
	var backlog []*pb.Message
	for i := uint64(1); i <= apps; i++ {
		backlog = append(backlog, msg(pb.MessageType_MsgApp, 2, 1, i, entry))
	}
	p.Send(root, 7, backlog)
	p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgHeartbeat, 2, 1, 1000)})

	waitFor(t, 10*time.Second, "backlog and heartbeat", func() bool { return r.count() == apps+1 })
	heartbeat, lastApp := -1, -1
	next := uint64(1)
	for i, m := range r.received() {
		switch m.GetType() {
		case pb.MessageType_MsgHeartbeat:
			heartbeat = i
		case pb.MessageType_MsgApp:
			if m.GetIndex() != next {
				t.Fatalf("append %d arrived where %d was due", m.GetIndex(), next)
			}
			next++
			lastApp = i
		}
	}
	if heartbeat > lastApp {
		t.Fatalf("heartbeat arrived at position %d, after the last append at %d", heartbeat, lastApp)
	}
	t.Logf("heartbeat arrived at position %d of %d", heartbeat, apps+1)
}

func TestHeartbeatsCoalescedPerTick(t *testing.T) {
	n1, n2 := newNode(t, 1), newNode(t, 2)
	n2.listen("127.0.0.1:0")
	beats, votes := n2.group(7), n2.group(8)
	p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{})
	root := n1.sys.Root
	connect(t, root, p, 7, 2, beats)
	sender, _ := p.Sender(2)
	heartbeats := func(from, n uint64) {
		for i := from; i < from+n; i++ {
			p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgHeartbeat, 2, 1, i)})
		}
	}
	// A vote queued after the heartbeats is in their frame unless they are
	// held: once it has arrived, so have they, or they are held.
	voted := 0
	voteAndWait := func() {
		voted++
		p.Send(root, 8, []*pb.Message{msg(pb.MessageType_MsgVote, 2, 1, uint64(voted))})
		waitFor(t, 5*time.Second, "the vote", func() bool { return votes.count() == voted })
	}

	// Few heartbeats per tick go at once. (The second tick forgets the
	// probes connect sent.)
	root.Send(sender, &raftactor.Tick{})
	root.Send(sender, &raftactor.Tick{})
	heartbeats(1, coalesceHeartbeats)
	voteAndWait()
	waitFor(t, 5*time.Second, "heartbeats sent at once", func() bool { return beats.count() == coalesceHeartbeats })

	// That was enough heartbeats in a tick: from the next one on they are
	// held until a Tick, then go together in one frame.
	root.Send(sender, &raftactor.Tick{})
	heartbeats(100, coalesceHeartbeats)
	voteAndWait()
	if got := beats.count(); got != coalesceHeartbeats {
		t.Fatalf("%d heartbeats arrived before the tick, want only the %d sent before coalescing", got, coalesceHeartbeats)
	}
	frames := n1.metric("flotilla_raft_frames_sent_total", "peer", "2")
	root.Send(sender, &raftactor.Tick{})
	waitFor(t, 5*time.Second, "held heartbeats", func() bool { return beats.count() == 2*coalesceHeartbeats })
	if got := n1.metric("flotilla_raft_frames_sent_total", "peer", "2") - frames; got != 1 {
		t.Fatalf("held heartbeats went out in %v frames, want 1", got)
	}
	for i, m := range beats.received()[coalesceHeartbeats:] {
		if m.GetIndex() != uint64(100+i) {
			t.Fatalf("held heartbeat %d has index %d: order lost", i, m.GetIndex())
		}
	}

	// A tick without heartbeats ends the coalescing.
	root.Send(sender, &raftactor.Tick{})
	heartbeats(200, 1)
	waitFor(t, 5*time.Second, "a heartbeat sent at once", func() bool { return beats.count() == 2*coalesceHeartbeats+1 })
}

// dialAndExpectClose writes b to the listener and waits for it to hang up.
func dialAndExpectClose(t *testing.T, addr string, b []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(b) // the listener may hang up before reading everything
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("listener did not close the connection: %v", err)
	}
}

func TestListenerClosesBadConnectionsOnly(t *testing.T) {
	n1, n2 := newNode(t, 1), newNode(t, 2)
	n2.listen("127.0.0.1:0")
	r := n2.group(7)

	hello := encode(t, &Envelope{From: 1, To: 2})
	oversized := binary.BigEndian.AppendUint32(bytes.Clone(hello), 1<<32-1)
	garbage := append(bytes.Clone(hello), 0, 0, 0, 4, 0x1a, 0x02, 0x12, 0xff)
	bigControl := protowire.AppendTag(nil, fieldEnvelopeControl, protowire.BytesType)
	bigControl = protowire.AppendBytes(bigControl, make([]byte, MaxControlBytes+1))
	bigControl = append(binary.BigEndian.AppendUint32(bytes.Clone(hello), uint32(len(bigControl))), bigControl...)
	manyMessages := field(nil, fieldEnvelopeBatches, repeated(fieldBatchMessages, maxFrameMessages+1))
	manyMessages = append(binary.BigEndian.AppendUint32(bytes.Clone(hello), uint32(len(manyMessages))), manyMessages...)
	random := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	tests := []struct {
		name, reason string
		input        []byte
	}{
		{"http request", RejectFrameTooLarge, []byte("GET / HTTP/1.1\r\nHost: raft\r\n\r\n")},
		{"random bytes", "", random},
		{"oversized length", RejectFrameTooLarge, oversized},
		{"malformed frame", RejectMalformed, garbage},
		{"hello to another node", RejectBadHello, encode(t, &Envelope{From: 1, To: 99})},
		{"hello without sender", RejectBadHello, encode(t, &Envelope{To: 2})},
		{"hello with control", RejectBadHello, encode(t, &Envelope{From: 1, To: 2, Control: [][]byte{[]byte("join")}})},
		{"control message too large", RejectMalformed, bigControl},
		{"too many messages", RejectMalformed, manyMessages},
	}
	rejected := func() float64 {
		sum := 0.0
		for _, reason := range []string{RejectFrameTooLarge, RejectMalformed, RejectBadHello, RejectHelloTimeout} {
			sum += n2.metric("flotilla_raft_connections_rejected_total", "reason", reason)
		}
		return sum
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before float64
			if tt.reason != "" {
				before = n2.metric("flotilla_raft_connections_rejected_total", "reason", tt.reason)
			}
			dialAndExpectClose(t, n2.addr, tt.input)
			waitFor(t, 5*time.Second, "the rejection to be counted", func() bool { return rejected() == float64(i+1) })
			if tt.reason != "" {
				if got := n2.metric("flotilla_raft_connections_rejected_total", "reason", tt.reason); got != before+1 {
					t.Fatalf("rejections for %s: %v, want %v", tt.reason, got, before+1)
				}
			}
		})
	}
	// The warning is logged right after the rejection is counted: poll.
	waitFor(t, 5*time.Second, "one warning per bad connection", func() bool {
		return strings.Count(n2.logs.String(), "closed raft connection that broke the protocol") == len(tests)
	})
	if !strings.Contains(n2.logs.String(), `"remote":"127.0.0.1:`) {
		t.Fatalf("warnings do not name the remote address:\n%s", n2.logs)
	}

	// A peer that vanishes mid-frame is not a protocol violation.
	c, err := net.Dial("tcp", n2.addr)
	if err != nil {
		t.Fatal(err)
	}
	partial := binary.BigEndian.AppendUint32(bytes.Clone(hello), 100)
	if _, err := c.Write(append(partial, 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// The listener still serves a good peer.
	p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{})
	connect(t, n1.sys.Root, p, 7, 2, r)
	p.Send(n1.sys.Root, 7, []*pb.Message{msg(pb.MessageType_MsgApp, 2, 1, 1)})
	waitFor(t, 5*time.Second, "delivery after bad peers", func() bool { return r.count() == 1 })
	if got := rejected(); got != float64(len(tests)) {
		t.Fatalf("%v rejections after a truncated frame, want %d", got, len(tests))
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestPeerDownThenUp(t *testing.T) {
	addr := freeAddr(t)
	n1 := newNode(t, 1)
	local := n1.group(7)
	p := n1.peers(map[uint64]string{2: addr}, SenderOptions{})
	root := n1.sys.Root

	for i := range uint64(20) {
		p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgApp, 2, 1, i, make([]byte, 1<<20))})
	}
	p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgSnap, 2, 1, 21)})
	// The sender handles Outbounds in order, so once the snapshot's failure
	// is in, every earlier report is too.
	waitFor(t, 5*time.Second, "snapshot failure", func() bool { return len(local.snapStatuses()) == 1 })
	if s := local.snapStatuses()[0]; !s.Failed || s.To != 2 {
		t.Fatalf("snapshot status %+v, want a failure for peer 2", s)
	}
	if got := local.unreachableCount(); got != 1 {
		t.Fatalf("group told Unreachable %d times during one outage, want once", got)
	}
	if got := n1.metric("flotilla_raft_queued_bytes", "peer", "2"); got != 0 {
		t.Fatalf("%v bytes queued for a peer that is down", got)
	}
	if got := n1.metric("flotilla_raft_messages_dropped_total", "reason", DropDisconnected); got != 21 {
		t.Fatalf("disconnected drops = %v, want 21", got)
	}

	// The peer comes up: the sender's redial finds it.
	n2 := newNode(t, 2)
	n2.listen(addr)
	remote := n2.group(7)
	connect(t, root, p, 7, 2, remote)
	p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgSnap, 2, 1, 30)})
	waitFor(t, 5*time.Second, "snapshot delivered", func() bool {
		got := remote.received()
		return len(got) == 1 && got[0].GetType() == pb.MessageType_MsgSnap
	})
	waitFor(t, 5*time.Second, "snapshot success reported", func() bool {
		s := local.snapStatuses()
		return len(s) == 2 && s[1] == raftactor.SnapshotStatus{To: 2}
	})

	// It goes away again: a new outage, a new report.
	n2.stopListener()
	waitFor(t, 5*time.Second, "second outage reported", func() bool {
		p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgHeartbeat, 2, 1, 0)})
		return local.unreachableCount() == 2
	})

	// And comes back, on a fresh broker process at the same address.
	n3 := newNode(t, 2)
	n3.listen(addr)
	connect(t, root, p, 7, 2, n3.group(7))
}

func TestQueueBoundedWhilePeerStalls(t *testing.T) {
	// A peer that accepts and never reads: writes block once the socket
	// buffers are full, and the queue must not grow past its bound.
	stall, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := stall.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		stall.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})

	const bound = 2 << 20
	n1 := newNode(t, 1)
	local := n1.group(7)
	p := n1.peers(map[uint64]string{2: stall.Addr().String()}, SenderOptions{
		MaxFrameBytes: 1 << 20, QueueBytes: bound, BulkBytesPerFrame: 256 << 10, WriteTimeout: time.Minute,
	})
	root := n1.sys.Root
	entry := make([]byte, 60<<10)
	queued := func() float64 {
		q := n1.metric("flotilla_raft_queued_bytes", "peer", "2")
		if q > bound {
			t.Fatalf("%v bytes queued, bound %d", q, bound)
		}
		return q
	}
	index := uint64(0)
	send := func() {
		for range 16 {
			index++
			p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgApp, 2, 1, index, entry)})
		}
	}
	waitFor(t, 15*time.Second, "the queue to overflow", func() bool {
		send()
		queued()
		return n1.metric("flotilla_raft_messages_dropped_total", "reason", DropQueueFull) > 0
	})
	waitFor(t, 5*time.Second, "the group to hear Unreachable", func() bool { return local.unreachableCount() > 0 })
	peak := 0.0
	for range 50 {
		send()
		peak = max(peak, queued())
	}
	waitFor(t, 5*time.Second, "the last sends to be queued", func() bool { return queued() > bound/2 })
	t.Logf("sent %d appends of %d bytes; peak queued sample %v bytes", index, len(entry), peak)
}

// TestForgedMessagesDropped: a connection may only carry messages from the
// peer its hello named, to this node, and never raft's local types.
func TestForgedMessagesDropped(t *testing.T) {
	n2 := newNode(t, 2)
	n2.listen("127.0.0.1:0")
	r := n2.group(7)
	msg := func(typ pb.MessageType, from, to uint64) *pb.Message {
		return &pb.Message{Type: typ.Enum(), From: new(from), To: new(to), Term: new(uint64(1))}
	}
	frame := encode(t, &Envelope{From: 1, To: 2})
	frame = append(frame, encode(t, &Envelope{From: 1, To: 2, Batches: []GroupBatch{{Group: 7, Msgs: []*pb.Message{
		msg(pb.MsgHeartbeat, 3, 2),         // not from the hello's peer
		msg(pb.MsgHeartbeat, 1, 9),         // not to this node
		msg(pb.MsgStorageAppendResp, 1, 2), // a local message type
		msg(pb.MsgHup, 1, 2),               // a local message type
		msg(pb.MsgHeartbeat, 1, 2),         // the only admissible one
	}}}})...)
	conn, err := net.Dial("tcp", n2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the admissible message", func() bool { return r.count() == 1 })
	if got := r.received()[0]; got.GetFrom() != 1 || got.GetType() != pb.MsgHeartbeat {
		t.Fatalf("delivered %v", got)
	}
	if got := n2.metric("flotilla_raft_messages_dropped_total", "reason", DropForged); got != 4 {
		t.Fatalf("forged drops counted %v, want 4", got)
	}
}

// TestPeerThatDropsAtOnceWarnsOnce: a peer address that accepts TCP and
// closes at once (another service on the port, a peer refusing the hello)
// is a failed dial: one warning for the whole outage, not a "connected" and
// a "lost connection" line per attempt.
func TestPeerThatDropsAtOnceWarnsOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepts atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.Close()
		}
	}()
	n1 := newNode(t, 1)
	n1.peers(map[uint64]string{2: ln.Addr().String()}, SenderOptions{BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond})
	waitFor(t, 10*time.Second, "ten connections accepted and dropped", func() bool { return accepts.Load() >= 10 })
	logs := n1.logs.String()
	if got := strings.Count(logs, "cannot reach raft peer"); got != 1 {
		t.Errorf("%d warnings that the peer is unreachable, want 1", got)
	}
	for _, quiet := range []string{"connected to raft peer", "lost connection to raft peer"} {
		if strings.Contains(logs, quiet) {
			t.Errorf("logged %q for a connection the peer dropped at once", quiet)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", logs)
	}
}

// TestSettledConnectionLogged: a connection the peer keeps is logged as up
// once it has lived settleAfter.
func TestSettledConnectionLogged(t *testing.T) {
	n2 := newNode(t, 2)
	n2.listen("127.0.0.1:0")
	n1 := newNode(t, 1)
	n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{})
	waitFor(t, 3*settleAfter, "the connection logged as up", func() bool {
		return strings.Contains(n1.logs.String(), "connected to raft peer")
	})
	if strings.Contains(n1.logs.String(), "cannot reach raft peer") {
		t.Fatalf("a working peer was reported unreachable:\n%s", n1.logs.String())
	}
}
