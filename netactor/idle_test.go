package netactor

import (
	"bytes"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

func TestIdleTimeoutFromTick(t *testing.T) {
	tests := []struct {
		tick, want time.Duration
	}{
		{time.Millisecond, minIdleTimeout},
		{50 * time.Millisecond, minIdleTimeout}, // keepalives every 500 ms
		{500 * time.Millisecond, minIdleTimeout},
		{time.Second, time.Minute},
		{2 * time.Second, 2 * time.Minute},
	}
	for _, tt := range tests {
		if got := IdleTimeout(tt.tick); got != tt.want {
			t.Errorf("IdleTimeout(%s) = %s, want %s", tt.tick, got, tt.want)
		}
		if keepalive := keepaliveTicks * tt.tick; IdleTimeout(tt.tick) < 5*keepalive {
			t.Errorf("IdleTimeout(%s) is within 5 keepalive intervals (%s)", tt.tick, keepalive)
		}
	}
}

// A connection that says hello and then nothing, as a half-open one does,
// or stops in the middle of a frame, is closed after the idle timeout
// instead of holding its reader (and partial frame) until TCP gives up. It
// is no protocol violation.
func TestIdleInboundConnectionClosed(t *testing.T) {
	n2 := newNode(t, 2)
	n2.idleTimeout = 200 * time.Millisecond
	n2.listen("127.0.0.1:0")
	hello := encode(t, &Envelope{From: 1, To: 2})
	tests := []struct {
		name  string
		input []byte
	}{
		{"silent after hello", hello},
		{"stalled mid-frame", append(binary.BigEndian.AppendUint32(bytes.Clone(hello), 100), 1, 2, 3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dialAndExpectClose(t, n2.addr, tt.input)
		})
	}
	waitFor(t, 5*time.Second, "the idle connections logged", func() bool {
		return strings.Count(n2.logs.String(), "nothing received from peer 1 for 200ms") == len(tests)
	})
	if got := n2.metric("flotilla_raft_connections_rejected_total", "reason", RejectMalformed); got != 0 {
		t.Fatalf("%v idle connections counted as malformed", got)
	}
}

// The idle timeout bounds the wait for each byte, not for a frame: a slow
// link that keeps delivering keeps its connection.
func TestSlowFrameOutlastsIdleTimeout(t *testing.T) {
	n2 := newNode(t, 2)
	n2.idleTimeout = 200 * time.Millisecond
	n2.listen("127.0.0.1:0")
	r := n2.group(7)
	c, err := net.Dial("tcp", n2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := msg(pb.MessageType_MsgApp, 2, 1, 1, make([]byte, 16))
	frame := encode(t, &Envelope{Batches: []GroupBatch{{Group: 7, Msgs: []*pb.Message{m}}}})
	if _, err := c.Write(encode(t, &Envelope{From: 1, To: 2})); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, b := range frame {
		time.Sleep(20 * time.Millisecond) // the pace of the slow link
		if _, err := c.Write([]byte{b}); err != nil {
			t.Fatalf("after %s: %v", time.Since(start), err)
		}
	}
	if d := time.Since(start); d < 3*n2.idleTimeout {
		t.Fatalf("the frame took %s, not several idle timeouts", d)
	}
	waitFor(t, 5*time.Second, "the slow frame", func() bool { return r.count() == 1 })
	if got := n2.accepts.Load(); got != 1 {
		t.Fatalf("%d connections accepted", got)
	}
}

// An idle but ticked sender sends keepalives often enough that the idle
// timeout its ticks imply never closes its connection.
func TestKeepalivesHoldIdleConnectionOpen(t *testing.T) {
	const tick = 5 * time.Millisecond // keepalives every 50 ms
	n1, n2 := newNode(t, 1), newNode(t, 2)
	// Less than IdleTimeout(tick), which has a floor of seconds, to make
	// the test quick: still six keepalive intervals.
	n2.idleTimeout = idleKeepalives * keepaliveTicks * tick
	n2.listen("127.0.0.1:0")
	at2 := n2.group(7)
	p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{})
	ticker, _ := n1.ticker()
	p.TickWith(ticker)
	connect(t, n1.sys.Root, p, 7, 2, at2)

	frames := func() float64 { return n2.metric("flotilla_raft_frames_received_total", "peer", "1") }
	start, before := time.Now(), frames()
	waitFor(t, 10*time.Second, "keepalives over several idle timeouts", func() bool {
		return frames() >= before+30 && time.Since(start) > 3*n2.idleTimeout
	})
	if got := n2.accepts.Load(); got != 1 {
		t.Fatalf("%d connections accepted: the idle connection was closed", got)
	}
	if strings.Contains(n2.logs.String(), "nothing received") {
		t.Fatalf("an idle connection timed out:\n%s", n2.logs)
	}
}
