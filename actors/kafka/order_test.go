package kafka

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestOrderQueuePopsInRequestOrder(t *testing.T) {
	var q orderQueue
	seqs := make([]uint64, 5)
	for i := range seqs {
		seqs[i] = q.push(pending{correlationID: int32(i)})
	}
	for i, s := range seqs {
		if s != uint64(i) {
			t.Fatalf("sequence %d is %d", i, s)
		}
	}
	// Complete out of order: 3, 1, 4 — nothing can leave before 0.
	for _, s := range []uint64{3, 1, 4} {
		q.get(s).done = true
		if _, ok := q.pop(); ok {
			t.Fatalf("popped with request 0 unanswered")
		}
	}
	q.get(0).done = true
	var got []int32
	for {
		p, ok := q.pop()
		if !ok {
			break
		}
		got = append(got, p.correlationID)
	}
	if len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Fatalf("popped %v, want [0 1]", got)
	}
	if q.get(1) != nil || q.get(2) == nil {
		t.Fatal("get does not track the front")
	}
	q.get(2).done = true
	for want := int32(2); want <= 4; want++ {
		p, ok := q.pop()
		if !ok || p.correlationID != want {
			t.Fatalf("popped %v %v, want %d", p.correlationID, ok, want)
		}
	}
	if q.len() != 0 {
		t.Fatalf("%d left", q.len())
	}
	if s := q.push(pending{}); s != 5 {
		t.Fatalf("next sequence %d, want 5", s)
	}
}

func TestInflightGate(t *testing.T) {
	g := newInflightGate(100)
	g.add(100)
	if !g.wait() {
		t.Fatal("wait refused at the limit")
	}
	g.add(1)
	released := make(chan bool)
	go func() { released <- g.wait() }()
	select {
	case <-released:
		t.Fatal("wait returned over the limit")
	case <-time.After(50 * time.Millisecond):
	}
	g.release(1)
	if !<-released {
		t.Fatal("wait returned false after a release")
	}
	g.add(50)
	go func() { released <- g.wait() }()
	g.close()
	if <-released {
		t.Fatal("wait returned true after close")
	}
}

// testConn builds a Conn outside any actor system, to drive its ordering
// and batching directly. Nothing it does here needs an actor context.
func testConn(t *testing.T) *Conn {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	served, err := newVersions(nil)
	if err != nil {
		t.Fatal(err)
	}
	return newConn(a, &connConfig{served: served, maxInflightBytes: 1 << 20, log: zerolog.Nop()})
}

// TestFlushBatchesReadyResponses: responses that become ready while the
// writer is busy go out together, in order, skipping acks=0, in one write.
func TestFlushBatchesReadyResponses(t *testing.T) {
	c := testConn(t)
	c.gate.add(5 * 10)
	seqs := make([]uint64, 5)
	for i := range seqs {
		seqs[i] = c.queue.push(pending{correlationID: int32(10 + i), key: keyApiVersions, bytes: 10, noResponse: i == 2})
	}
	resp := func() kmsg.Response { r := kmsg.NewPtrApiVersionsResponse(); r.Version = 0; return r }
	c.complete(nil, seqs[0], resp(), false, OutcomeAnswered)
	first := <-c.writes // the writer was idle: request 0 goes at once
	if n := countFrames(t, first); len(n) != 1 || n[0] != 10 {
		t.Fatalf("first batch %v", n)
	}
	// While the writer is busy, answers arrive in reverse order.
	for i := len(seqs) - 1; i >= 1; i-- {
		c.complete(nil, seqs[i], resp(), false, OutcomeAnswered)
	}
	select {
	case <-c.writes:
		t.Fatal("handed the writer a batch while it was busy")
	default:
	}
	if got := c.gate.inFlight(); got != 50 {
		t.Fatalf("%d bytes in flight while the writer is busy, want all 50", got)
	}
	c.written(nil, &batchWritten{buf: first, n: len(first)})
	second := <-c.writes
	if got := c.gate.inFlight(); got != 30 {
		t.Fatalf("%d bytes in flight during the second write, want 30 (request 0 written, 2 needs no write)", got)
	}
	if got := countFrames(t, second); len(got) != 3 || got[0] != 11 || got[1] != 13 || got[2] != 14 {
		t.Fatalf("second batch has correlation ids %v, want [11 13 14]", got)
	}
	c.written(nil, &batchWritten{buf: second, n: len(second)})
	if got := c.gate.inFlight(); got != 0 {
		t.Fatalf("%d bytes still in flight", got)
	}
}

// countFrames returns the correlation ids of the frames in a batch.
func countFrames(t *testing.T, b []byte) []int32 {
	t.Helper()
	var ids []int32
	for len(b) > 0 {
		if len(b) < 8 {
			t.Fatalf("%d stray bytes", len(b))
		}
		n := int(binary.BigEndian.Uint32(b))
		ids = append(ids, int32(binary.BigEndian.Uint32(b[4:])))
		b = b[4+n:]
	}
	return ids
}
