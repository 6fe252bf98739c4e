package netactor

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/raftactor"
)

// tickSpy is the Ticker's sender: it records the last Tick each actor was
// sent and passes every message on.
type tickSpy struct {
	*actor.RootContext
	mu   sync.Mutex
	last map[string]uint64 // PID.Id → N of the last Tick sent to it
	top  uint64            // highest N sent to anyone
}

func (s *tickSpy) Send(pid *actor.PID, msg any) {
	if t, ok := msg.(*raftactor.Tick); ok {
		s.mu.Lock()
		s.last[pid.Id] = max(s.last[pid.Id], t.N)
		s.top = max(s.top, t.N)
		s.mu.Unlock()
	}
	s.RootContext.Send(pid, msg)
}

// lastTick returns the N of the last Tick sent to pid, 0 for none.
func (s *tickSpy) lastTick(pid *actor.PID) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[pid.Id]
}

func (s *tickSpy) topTick() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.top
}

// ticker starts a fast Ticker that sends through a tickSpy.
func (n *node) ticker() (*raftactor.Ticker, *tickSpy) {
	spy := &tickSpy{RootContext: n.sys.Root, last: map[string]uint64{}}
	t := raftactor.NewTicker(spy, 5*time.Millisecond)
	n.t.Cleanup(t.Stop)
	return t, spy
}

func TestSetPeerRejectsBadInput(t *testing.T) {
	n1 := newNode(t, 1)
	p := n1.peers(nil, SenderOptions{})
	tests := []struct {
		name string
		id   uint64
		addr string
		want string
	}{
		{"id zero", 0, "127.0.0.1:1", "id 0"},
		{"self", 1, "127.0.0.1:1", "this node"},
		{"no address", 2, "", "no address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.SetPeer(tt.id, tt.addr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("SetPeer(%d, %q) = %v, want an error saying %q", tt.id, tt.addr, err, tt.want)
			}
			if len(p.Addrs()) != 0 {
				t.Fatalf("table after a refused SetPeer: %v", p.Addrs())
			}
		})
	}
	if _, err := StartPeers(n1.sys, 1, map[uint64]string{0: "127.0.0.1:1", 3: ""}, n1.router, SenderOptions{}); err == nil ||
		!strings.Contains(err.Error(), "id 0") || !strings.Contains(err.Error(), "peer 3: no address") {
		t.Fatalf("StartPeers with bad peers: %v", err)
	}

	p.Stop()
	if err := p.SetPeer(2, "127.0.0.1:1"); err == nil {
		t.Fatal("SetPeer after Stop succeeded")
	}
}

func TestSendControlRefuses(t *testing.T) {
	n1 := newNode(t, 1)
	p := n1.peers(map[uint64]string{2: freeAddr(t)}, SenderOptions{MaxFrameBytes: 4 << 10})
	tests := []struct {
		name string
		to   uint64
		size int
		want bool
	}{
		{"known peer", 2, 100, true},
		{"empty payload", 2, 0, true},
		{"unknown peer", 3, 100, false},
		{"larger than a frame", 2, 4 << 10, false},
		{"larger than MaxControlBytes", 2, MaxControlBytes + 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.SendControl(n1.sys.Root, tt.to, make([]byte, tt.size)); got != tt.want {
				t.Fatalf("SendControl(%d, %d bytes) = %v, want %v", tt.to, tt.size, got, tt.want)
			}
		})
	}
}

// sendControls sends n numbered control messages to peer to.
func sendControls(t *testing.T, root actor.SenderContext, p *Peers, to uint64, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if !p.SendControl(root, to, fmt.Appendf(nil, "control %d", i)) {
			t.Fatalf("SendControl to %d refused", to)
		}
	}
}

// requireControls checks that sink got exactly the numbered control messages
// from..from+n-1 of peer from, in order.
func requireControls(t *testing.T, sink *recorder, peer uint64, from, n int) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%d control messages", n), func() bool { return len(sink.controls()) >= n })
	got := sink.controls()
	if len(got) != n {
		t.Fatalf("%d control messages, want %d", len(got), n)
	}
	for i, c := range got {
		if want := fmt.Appendf(nil, "control %d", from+i); c.From != peer || !bytes.Equal(c.Data, want) {
			t.Fatalf("control message %d: from %d %q, want from %d %q", i, c.From, c.Data, peer, want)
		}
	}
}

func TestPeerAddedAtRunTime(t *testing.T) {
	n1, n2, n3 := newNode(t, 1), newNode(t, 2), newNode(t, 3)
	n2.listen("127.0.0.1:0")
	n3.listen("127.0.0.1:0")
	at2, at3, sink3 := n2.group(7), n3.group(7), n3.group(ControlSink)
	p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{})
	ticker, spy := n1.ticker()
	p.TickWith(ticker)
	root := n1.sys.Root
	connect(t, root, p, 7, 2, at2)

	if p.SendControl(root, 3, []byte("early")) {
		t.Fatal("SendControl to a peer not yet added succeeded")
	}
	if err := p.SetPeer(3, n3.addr); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Addrs(), map[uint64]string{2: n2.addr, 3: n3.addr}; !maps.Equal(got, want) {
		t.Fatalf("Addrs() = %v, want %v", got, want)
	}
	if got := p.IDs(); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("IDs() = %v", got)
	}

	// Control messages go out at once although no raft message does, none
	// coalesced away, in order.
	sendControls(t, root, p, 3, 0, 10)
	requireControls(t, sink3, 1, 0, 10)

	// Raft messages too.
	connect(t, root, p, 7, 3, at3)
	p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgApp, 3, 1, 1), msg(pb.MessageType_MsgApp, 2, 1, 1)})
	waitFor(t, 5*time.Second, "appends to both peers", func() bool { return at2.count() == 1 && at3.count() == 1 })

	// The added sender is ticked like those that were there at TickWith.
	sender3, _ := p.Sender(3)
	waitFor(t, 5*time.Second, "a tick for the added sender", func() bool { return spy.lastTick(sender3) > 0 })

	// A peer without a control sink drops control messages and keeps its
	// connection.
	sendControls(t, root, p, 2, 0, 3)
	waitFor(t, 5*time.Second, "control drop counted", func() bool {
		return n2.metric("flotilla_raft_messages_dropped_total", "reason", DropUnknownGroup) == 3
	})
	p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgApp, 2, 1, 2)})
	waitFor(t, 5*time.Second, "append after dropped control", func() bool { return at2.count() == 2 })
}

func TestSetPeerNewAddressReconnects(t *testing.T) {
	n1, old, moved := newNode(t, 1), newNode(t, 3), newNode(t, 3)
	old.listen("127.0.0.1:0")
	moved.listen("127.0.0.1:0")
	atOld, atMoved, sinkMoved := old.group(7), moved.group(7), moved.group(ControlSink)
	p := n1.peers(map[uint64]string{3: old.addr}, SenderOptions{})
	root := n1.sys.Root
	connect(t, root, p, 7, 3, atOld)
	first, _ := p.Sender(3)

	// The same address again changes nothing.
	if err := p.SetPeer(3, old.addr); err != nil {
		t.Fatal(err)
	}
	if pid, _ := p.Sender(3); !pid.Equal(first) {
		t.Fatalf("SetPeer with the same address replaced the sender %v with %v", first, pid)
	}

	if err := p.SetPeer(3, moved.addr); err != nil {
		t.Fatal(err)
	}
	if pid, _ := p.Sender(3); pid.Equal(first) {
		t.Fatal("SetPeer with a new address kept the old sender")
	}
	if got := p.Addrs()[3]; got != moved.addr {
		t.Fatalf("Addrs()[3] = %q, want %q", got, moved.addr)
	}
	// The old connection closes: nothing more can reach the old address.
	waitFor(t, 5*time.Second, "the old connection to close", func() bool {
		return strings.Contains(old.logs.String(), "raft connection closed")
	})
	before := atOld.count()
	connect(t, root, p, 7, 3, atMoved)
	p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgApp, 3, 1, 5)})
	sendControls(t, root, p, 3, 0, 2)
	waitFor(t, 5*time.Second, "the append at the new address", func() bool { return atMoved.count() == 1 })
	requireControls(t, sinkMoved, 1, 0, 2)
	if got := atOld.count(); got != before {
		t.Fatalf("the old address got %d more messages after the move", got-before)
	}
}

func TestRemovePeerStopsDelivery(t *testing.T) {
	n1, n2, n3 := newNode(t, 1), newNode(t, 2), newNode(t, 3)
	n2.listen("127.0.0.1:0")
	n3.listen("127.0.0.1:0")
	local, at2, at3 := n1.group(7), n2.group(7), n3.group(7)
	p := n1.peers(map[uint64]string{2: n2.addr, 3: n3.addr}, SenderOptions{})
	ticker, spy := n1.ticker()
	p.TickWith(ticker)
	root := n1.sys.Root
	connect(t, root, p, 7, 2, at2)
	connect(t, root, p, 7, 3, at3)
	sender2, _ := p.Sender(2)
	sender3, _ := p.Sender(3)
	waitFor(t, 5*time.Second, "ticks for both senders", func() bool {
		return spy.lastTick(sender2) > 0 && spy.lastTick(sender3) > 0
	})

	p.RemovePeer(3)
	// A tick already being sent may still reach the removed sender; the
	// one after it must not.
	removedAt := spy.topTick()
	if _, ok := p.Sender(3); ok {
		t.Fatal("removed peer still has a sender")
	}
	if got := p.IDs(); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("IDs() = %v after removing 3", got)
	}
	if p.SendControl(root, 3, []byte("bye")) {
		t.Fatal("SendControl to a removed peer succeeded")
	}
	waitFor(t, 5*time.Second, "the connection to the removed peer to close", func() bool {
		return strings.Contains(n3.logs.String(), "raft connection closed")
	})

	before := at3.count()
	unreachable := local.unreachableTo(3)
	p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgApp, 3, 1, 9), msg(pb.MessageType_MsgApp, 2, 1, 9)})
	waitFor(t, 5*time.Second, "the removed peer reported unreachable", func() bool { return local.unreachableTo(3) > unreachable })
	waitFor(t, 5*time.Second, "the remaining peer's append", func() bool { return at2.count() == 1 })
	if got := at3.count(); got != before {
		t.Fatalf("removed peer got %d messages", got-before)
	}
	if got := n1.metric("flotilla_raft_messages_dropped_total", "reason", DropUnknownPeer); got != 1 {
		t.Fatalf("unknown_peer drops = %v, want 1", got)
	}
	waitFor(t, 5*time.Second, "more ticks for the remaining sender", func() bool { return spy.lastTick(sender2) > removedAt+2 })
	if got := spy.lastTick(sender3); got > removedAt+1 {
		t.Fatalf("removed sender ticked at %d, removed at tick %d", got, removedAt)
	}

	// Removing it again, or a peer never added, does nothing.
	p.RemovePeer(3)
	p.RemovePeer(9)
	if got := p.IDs(); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("IDs() = %v", got)
	}
}

// TestControlQueuedUntilConnected: control messages for a peer not yet
// reachable wait for it, the newest maxQueuedControl of them.
func TestControlQueuedUntilConnected(t *testing.T) {
	addr := freeAddr(t)
	n1 := newNode(t, 1)
	p := n1.peers(nil, SenderOptions{})
	root := n1.sys.Root
	if err := p.SetPeer(2, addr); err != nil {
		t.Fatal(err)
	}
	const extra = 6
	sendControls(t, root, p, 2, 0, maxQueuedControl+extra)
	waitFor(t, 5*time.Second, "the oldest to be dropped", func() bool {
		return n1.metric("flotilla_raft_messages_dropped_total", "reason", DropControlQueueFull) == extra
	})

	n2 := newNode(t, 2)
	sink := n2.group(ControlSink)
	n2.listen(addr)
	requireControls(t, sink, 1, extra, maxQueuedControl)
}

// TestPeersConcurrentChurn: groups send while the table changes under them
// (run with -race).
func TestPeersConcurrentChurn(t *testing.T) {
	n1 := newNode(t, 1)
	addrs := []string{freeAddr(t), freeAddr(t)}
	p := n1.peers(nil, SenderOptions{})
	root := n1.sys.Root
	var wg sync.WaitGroup
	for g := range uint64(4) {
		wg.Go(func() {
			for i := range uint64(500) {
				to := 2 + i%3
				p.Send(root, 100+g, []*pb.Message{msg(pb.MessageType_MsgHeartbeat, to, 1, i)})
				p.SendControl(root, to, []byte("x"))
				p.Broadcast(root, nil)
				_ = p.IDs()
			}
		})
	}
	for i := range 100 {
		id := uint64(2 + i%3)
		if i%4 == 3 {
			p.RemovePeer(id)
			continue
		}
		if err := p.SetPeer(id, addrs[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for id, addr := range p.Addrs() {
		if pid, ok := p.Sender(id); !ok || pid == nil || addr == "" {
			t.Fatalf("peer %d at %q has sender %v", id, addr, pid)
		}
	}
}

// A MsgSnap handed to a sender that SetPeer replaces (address change) or
// RemovePeer removes right after must still end in exactly one
// SnapshotStatus, or its leader keeps the follower in StateSnapshot until it
// loses leadership.
func TestSnapRacingSenderReplacementIsReported(t *testing.T) {
	for _, tt := range []struct {
		name   string
		remove bool
	}{{"set peer", false}, {"remove peer", true}} {
		t.Run(tt.name, func(t *testing.T) {
			n1, n2 := newNode(t, 1), newNode(t, 2)
			n2.listen("127.0.0.1:0")
			remote, local := n2.group(7), n1.group(7)
			p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{})
			root := n1.sys.Root
			connect(t, root, p, 7, 2, remote)
			old, _ := p.Sender(2)

			p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgSnap, 2, 1, 21)})
			if tt.remove {
				p.RemovePeer(2)
			} else if err := p.SetPeer(2, freeAddr(t)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the old sender to stop", func() bool {
				_, alive := n1.sys.Actors.ProcessRegistry.GetLocal(old.Id)
				return !alive
			})
			// The old sender has posted all it will ever post to the group;
			// once the group has handled a probe posted after it, it has
			// handled those too.
			settle(t, n1, 7, local)
			if got := local.snapStatuses(); len(got) != 1 {
				t.Fatalf("MsgSnap got %d SnapshotStatus reports (%+v), want exactly 1; snapshot delivered: %d",
					len(got), got, remote.count())
			}
		})
	}
}

// Every MsgSnap sent while SetPeer and RemovePeer keep changing the peer's
// sender ends in exactly one SnapshotStatus, whichever sender, if any, it
// meets.
func TestSnapshotsReportedThroughPeerChurn(t *testing.T) {
	n1 := newNode(t, 1)
	local := n1.group(7)
	addrs := []string{freeAddr(t), freeAddr(t)}
	p := n1.peers(map[uint64]string{2: addrs[0]}, SenderOptions{})
	root := n1.sys.Root
	var sent atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := uint64(1); ; i++ {
				select {
				case <-done:
					return
				default:
				}
				p.Send(root, 7, []*pb.Message{msg(pb.MessageType_MsgSnap, 2, 1, i)})
				sent.Add(1)
			}
		})
	}
	for i := range 2000 {
		if i%5 == 4 {
			p.RemovePeer(2)
			continue
		}
		if err := p.SetPeer(2, addrs[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	p.Stop()
	waitFor(t, 10*time.Second, "a SnapshotStatus for every MsgSnap", func() bool {
		return int64(len(local.snapStatuses())) >= sent.Load()
	})
	settle(t, n1, 7, local)
	t.Logf("%d MsgSnap sent", sent.Load())
	if got, want := len(local.snapStatuses()), sent.Load(); int64(got) != want {
		t.Fatalf("%d SnapshotStatus reports for %d MsgSnap", got, want)
	}
}

// settle waits until group's recorder has handled everything posted to it
// before now.
func settle(t *testing.T, n *node, group uint64, r *recorder) {
	t.Helper()
	pid, ok := n.router.Lookup(group)
	if !ok {
		t.Fatalf("group %d not in the router", group)
	}
	m := msg(pb.MessageType_MsgHeartbeat, n.id, 2, 0)
	m.Context = probe
	before := r.probeCount()
	n.sys.Root.Send(pid, &raftactor.Step{Msgs: []*pb.Message{m}})
	waitFor(t, 5*time.Second, "the group to handle a probe", func() bool { return r.probeCount() > before })
}
