package netactor

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

func TestHoldersClaim(t *testing.T) {
	const timeout = time.Second
	type hello struct {
		incarnation uint64
		after       time.Duration // since the previous hello; the holder is silent meanwhile
		release     bool          // the previous hello's connection closed first
		refused     bool
		first       bool // the refusal is the first of that incarnation
	}
	tests := []struct {
		name   string
		hellos []hello
	}{
		{"first process", []hello{{incarnation: 7}}},
		{"reconnection of the holder", []hello{{incarnation: 7}, {incarnation: 7}}},
		{"second live process", []hello{{incarnation: 7}, {incarnation: 8, refused: true, first: true}}},
		{"second process redials", []hello{{incarnation: 7}, {incarnation: 8, refused: true, first: true},
			{incarnation: 8, refused: true}, {incarnation: 9, refused: true, first: true}, {incarnation: 8, refused: true, first: true}}},
		{"restart after the holder's connection closed", []hello{{incarnation: 7}, {incarnation: 8, release: true}}},
		{"holder silent for the timeout", []hello{{incarnation: 7}, {incarnation: 8, after: timeout}}},
		{"holder silent for less", []hello{{incarnation: 7}, {incarnation: 8, after: timeout - time.Millisecond, refused: true, first: true}}},
		{"no incarnation takes the hold", []hello{{incarnation: 7}, {incarnation: 0}, {incarnation: 8}}},
		{"holder with no incarnation", []hello{{incarnation: 0}, {incarnation: 8}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			hs := newHolders(timeout, func() time.Time { return now })
			var last *hold
			for i, h := range tt.hellos {
				now = now.Add(h.after)
				if h.release {
					hs.release(2, last)
				}
				claimed, holder, first := hs.claim(2, h.incarnation, uint64(i+1), "remote")
				if refused := holder != nil; refused != h.refused || first != h.first || (claimed == nil) != refused {
					t.Fatalf("hello %d (incarnation %d): claimed %v, refused %v (first %v); want refused %v (first %v)",
						i, h.incarnation, claimed != nil, refused, first, h.refused, h.first)
				}
				if claimed != nil {
					last = claimed
				}
			}
		})
	}
}

// TestHoldersHeardKeepsTheHold: frames on the holder's connection keep its
// id from a second process however long it runs, and its release lets the
// next one in at once; a release of a connection that no longer holds
// changes nothing.
func TestHoldersHeardKeepsTheHold(t *testing.T) {
	now := time.Unix(1000, 0)
	hs := newHolders(time.Second, func() time.Time { return now })
	a, _, _ := hs.claim(2, 7, 1, "a")
	for range 10 {
		now = now.Add(900 * time.Millisecond)
		hs.heard(a)
		if _, holder, _ := hs.claim(2, 8, 2, "b"); holder != a {
			t.Fatalf("a second process got the id of a holder heard %v ago", 900*time.Millisecond)
		}
	}
	a2, _, _ := hs.claim(2, 7, 3, "a") // the holder reconnects
	hs.release(2, a)                   // its old connection's reader ends later
	if _, holder, _ := hs.claim(2, 8, 4, "b"); holder != a2 {
		t.Fatal("the release of a replaced connection ended the hold of its successor")
	}
	hs.release(2, a2)
	if b, _, _ := hs.claim(2, 8, 5, "b"); b == nil {
		t.Fatal("a second process refused after the holder's connection closed")
	}
}

func TestRefusalRoundTrip(t *testing.T) {
	in := &Envelope{Refused: &Refusal{NodeID: 3, Addr: "127.0.0.1:9194", Remote: "127.0.0.1:40000"}}
	frame, err := AppendFrame(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(frame) > maxRefusalBytes {
		t.Fatalf("a refusal of %d bytes is over what a dialer reads, %d", len(frame), maxRefusalBytes)
	}
	out, err := DecodeEnvelope(frame[FrameHeaderLen:])
	if err != nil {
		t.Fatal(err)
	}
	if out.Refused == nil || *out.Refused != *in.Refused {
		t.Fatalf("decoded %+v, want %+v", out.Refused, in.Refused)
	}
}

// refusals collects what a Peers' OnRefused reports.
type refusals struct {
	mu   sync.Mutex
	errs []*RefusedError
}

func (r *refusals) add(e *RefusedError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, e)
}

func (r *refusals) get() []*RefusedError {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*RefusedError(nil), r.errs...)
}

// TestSecondProcessWithPeerIDRefused: a second process of node 1 dialling
// node 2 while the first runs is refused, told who holds the id, and
// logged once however often it redials; the first keeps its connection
// and is not counted as restarting. Once the first is gone the second is
// taken at once, as a restart. Two processes of one id used to replace
// each other's connection at every dial.
func TestSecondProcessWithPeerIDRefused(t *testing.T) {
	n2 := newNode(t, 2)
	n2.liveness = NewLiveness(2, time.Minute, time.Now)
	// Unticked senders send no keepalives: a long hold keeps the idle
	// holder's id.
	n2.holdTimeout = time.Minute
	n2.peerAddr = func(id uint64) string {
		if id == 1 {
			return "127.0.0.1:9191"
		}
		return ""
	}
	n2.listen("127.0.0.1:0")
	at2 := n2.group(7)

	n1 := newNode(t, 1)
	first := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{Incarnation: 11})
	connect(t, n1.sys.Root, first, 7, 2, at2)

	dup := newNode(t, 1)
	var got refusals
	second := dup.peers(map[uint64]string{2: n2.addr}, SenderOptions{Incarnation: 12, OnRefused: got.add})
	waitFor(t, 10*time.Second, "three refusals of the second process", func() bool { return len(got.get()) >= 3 })
	r := got.get()[0]
	if r.NodeID != 1 || r.Peer != 2 || r.PeerAddr != n2.addr || r.Addr != "127.0.0.1:9191" || r.Remote == "" {
		t.Fatalf("refusal %+v: want node 1, refused by peer 2 at %s, held by 127.0.0.1:9191", r, n2.addr)
	}
	for _, want := range []string{"node id 1 is in use by another live process", "127.0.0.1:9191", "peer 2"} {
		if !strings.Contains(r.Error(), want) {
			t.Fatalf("refusal %q does not say %q", r.Error(), want)
		}
	}
	if n := strings.Count(n2.logs.String(), "refused a second process with a peer's node id"); n != 1 {
		t.Fatalf("node 2 logged the second process %d times over %d refusals, want once", n, len(got.get()))
	}
	if n := strings.Count(dup.logs.String(), "raft peer refused this process"); n != 1 {
		t.Fatalf("the second process logged its refusal %d times, want once:\n%s", n, dup.logs.String())
	}
	// Node 2 counts a refusal once the dialer has hung up, after the
	// dialer has heard it.
	waitFor(t, 5*time.Second, "three duplicate_node_id rejections counted", func() bool {
		return n2.metric("flotilla_raft_connections_rejected_total", "reason", RejectDuplicateID) >= 3
	})
	if got := n2.liveness.Restarts(1); got != 0 {
		t.Fatalf("Restarts(1) = %d while a second process was refused, want 0", got)
	}
	if strings.Contains(n2.logs.String(), "its peer opened a newer one") {
		t.Fatalf("the first process's connection was replaced:\n%s", n2.logs.String())
	}
	// The first process's messages still arrive, the second's never did.
	connect(t, n1.sys.Root, first, 7, 2, at2)
	second.Send(dup.sys.Root, 7, []*pb.Message{msg(pb.MessageType_MsgHeartbeat, 2, 1, 0)})
	before := at2.count()

	// The first process goes away: the second is taken at its next dial,
	// as a restart.
	first.Stop()
	connect(t, dup.sys.Root, second, 7, 2, at2)
	if got := n2.liveness.Restarts(1); got != 1 {
		t.Fatalf("Restarts(1) = %d once the second process got in, want 1", got)
	}
	if at2.count() != before {
		t.Fatalf("%d messages of the second process arrived while it was refused", at2.count()-before)
	}
}

// TestSilentHolderLosesItsID: a holder whose connection stays open but
// silent (its machine died, a network cut) keeps its id only for the hold
// timeout; then the next process of that id is taken, and the old
// connection closed.
func TestSilentHolderLosesItsID(t *testing.T) {
	n2 := newNode(t, 2)
	n2.holdTimeout = 300 * time.Millisecond
	n2.liveness = NewLiveness(2, time.Minute, time.Now)
	n2.listen("127.0.0.1:0")
	at2 := n2.group(7)

	old, err := net.Dial("tcp", n2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	hello, _ := AppendFrame(nil, &Envelope{From: 1, To: 2, Incarnation: 5})
	start := time.Now() // at or before node 2 takes the hello: its hold begins after
	if _, err := old.Write(hello); err != nil {
		t.Fatal(err)
	}
	// Node 2 has taken the silent process as the holder before the next
	// one dials (its reader may see the two hellos in either order).
	waitFor(t, 5*time.Second, "the silent process's hello taken", func() bool {
		_, heard := n2.liveness.LastHeard(1)
		return heard
	})
	var got refusals
	n1 := newNode(t, 1)
	p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{Incarnation: 6, OnRefused: got.add})
	connect(t, n1.sys.Root, p, 7, 2, at2)
	if took := time.Since(start); took < n2.holdTimeout {
		t.Fatalf("a new process got the id %v after the holder's hello, before the hold timeout %v", took, n2.holdTimeout)
	}
	if len(got.get()) == 0 {
		t.Fatal("the new process was never refused while the silent holder held the id")
	}
	// The silent connection is replaced.
	if err := old.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(old).ReadByte(); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("the silent holder's connection: read %v, want it closed", err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

// TestRefusalStreakEndsWhenAConnectionSettles: RefusedError.Since is the
// first refusal since a connection to that peer last settled, the same
// for every refusal of a streak, and a new streak after a connection the
// peer took starts at its own first refusal. A stand-in peer refuses
// twice, takes one connection until it settles, then refuses again.
func TestRefusalStreakEndsWhenAConnectionSettles(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	refusal, _ := AppendFrame(nil, &Envelope{Refused: &Refusal{NodeID: 1, Remote: "127.0.0.1:1"}})
	settled := make(chan struct{})
	go func() {
		for k := 0; ; k++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if _, _, err := ReadFrame(bufio.NewReader(conn), 1<<20, nil); err != nil {
				conn.Close()
				continue
			}
			if k == 2 {
				// Taken: held open past settleAfter, then closed.
				time.Sleep(settleAfter + 200*time.Millisecond)
				close(settled)
			} else {
				conn.Write(refusal)
			}
			conn.Close()
		}
	}()
	n1 := newNode(t, 1)
	var got refusals
	n1.peers(map[uint64]string{2: ln.Addr().String()}, SenderOptions{Incarnation: 7, OnRefused: got.add})
	waitFor(t, 10*time.Second, "two refusals", func() bool { return len(got.get()) >= 2 })
	before := got.get()
	if !before[0].Since.Equal(before[1].Since) || before[0].Since.IsZero() {
		t.Fatalf("one streak's refusals say they began at %v and %v", before[0].Since, before[1].Since)
	}
	select {
	case <-settled:
	case <-time.After(10 * time.Second):
		t.Fatal("the stand-in peer never took a connection")
	}
	waitFor(t, 10*time.Second, "a refusal after the settled connection", func() bool { return len(got.get()) > len(before) })
	after := got.get()[len(before)]
	if !after.Since.After(before[0].Since.Add(settleAfter)) {
		t.Fatalf("a refusal after a settled connection says its streak began at %v, the first streak's start %v", after.Since, before[0].Since)
	}
}
