package raftactor

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/storage"
)

// checkpointStorage answers every Persist at once, in order, and records the
// checkpoints it is sent.
type checkpointStorage struct {
	mu          sync.Mutex
	checkpoints []uint64 // snapshot index of each Checkpoint
}

func (s *checkpointStorage) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *storage.Persist:
		ctx.Send(m.ReplyTo, &storage.Persisted{Group: m.Group, Incarnation: m.Incarnation, Seq: m.Seq})
	case *storage.Checkpoint:
		s.mu.Lock()
		s.checkpoints = append(s.checkpoints, m.Snapshot.GetMetadata().GetIndex())
		s.mu.Unlock()
	}
}

func (s *checkpointStorage) got() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.checkpoints...)
}

// flushingMachine is a Flusher whose Flush waits for the test to let it end,
// with the error the test gives.
type flushingMachine struct {
	countingMachine
	started chan struct{}
	result  chan error
}

func (f *flushingMachine) Flush() error {
	f.started <- struct{}{}
	return <-f.result
}

// proposer collects the answers to Propose.
type proposer struct{ answers chan *Proposed }

func (p *proposer) Receive(ctx actor.Context) {
	if m, ok := ctx.Message().(*Proposed); ok {
		p.answers <- m
	}
}

// TestCheckpointFlushesOffTheActor: a Flusher's snapshots stay in memory
// until the storage asks for a checkpoint; then it is flushed on a goroutine
// of its own while the group goes on applying, and the storage gets the
// checkpoint only once the flush is done. A failed flush halts the group.
func TestCheckpointFlushesOffTheActor(t *testing.T) {
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	st := &checkpointStorage{}
	stPID, err := sys.Spawn("storage", "storage", func() actor.Actor { return st })
	if err != nil {
		t.Fatal(err)
	}
	sm := &flushingMachine{started: make(chan struct{}), result: make(chan error)}
	board := NewStatusBoard()
	prod, err := NewProducer(Config{
		Group: 7, Name: "p", NodeID: 1, Bootstrap: true, Peers: []uint64{1},
		ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
		SnapshotEntries: 5,
		Storage:         stPID, Transport: &memTransport{nodes: map[uint64]*actor.PID{}}, StateMachine: sm, Board: board,
		Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	group, err := sys.Spawn("raft", "raft/p", prod)
	if err != nil {
		t.Fatal(err)
	}
	ticker := NewTicker(sys.Root, 5*time.Millisecond)
	t.Cleanup(ticker.Stop)
	ticker.Subscribe(group)
	p := &proposer{answers: make(chan *Proposed, 100)}
	pp, err := sys.Spawn("proposer", "proposer", func() actor.Actor { return p })
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() (struct{}, bool) {
		s := board.Get(7)
		return struct{}{}, s != nil && s.Role == "leader"
	})
	propose := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			sys.Root.Send(group, &Propose{ID: uint64(i), Data: []byte(fmt.Sprintf("e%d", i)), ReplyTo: pp})
		}
		for i := from; i < to; i++ {
			select {
			case m := <-p.answers:
				if m.Err != nil {
					t.Fatalf("proposal %d: %v", m.ID, m.Err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("proposals %d..%d: %d not applied within 5s", from, to-1, to-i)
			}
		}
	}

	propose(0, 20) // four snapshots' worth
	if got := st.got(); len(got) != 0 {
		t.Fatalf("checkpoints %v before the storage asked for one: snapshots of a Flusher are memory only", got)
	}

	sys.Root.Send(group, &storage.CheckpointRequest{Group: 7})
	select {
	case <-sm.started:
	case <-time.After(5 * time.Second):
		t.Fatal("no flush after a CheckpointRequest")
	}
	applied := board.Get(7).Applied
	propose(20, 40) // the group goes on while the flush runs
	// A request during the flush is taken once it ends.
	sys.Root.Send(group, &storage.CheckpointRequest{Group: 7})
	propose(40, 60)
	if got := st.got(); len(got) != 0 {
		t.Fatalf("checkpoint %v sent before its flush ended", got)
	}
	sm.result <- nil
	got := waitFor(t, 5*time.Second, func() ([]uint64, bool) { g := st.got(); return g, len(g) == 1 })
	if got[0] == 0 || got[0] > applied {
		t.Fatalf("checkpoint at %d, want a snapshot taken by the request, at most %d", got[0], applied)
	}
	select {
	case <-sm.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the request made during the flush was dropped")
	}
	sm.result <- nil
	got = waitFor(t, 5*time.Second, func() ([]uint64, bool) { g := st.got(); return g, len(g) == 2 })
	if got[1] <= got[0] {
		t.Fatalf("checkpoints at %v: the second one should cover what was applied during the first flush", got)
	}

	sys.Root.Send(group, &storage.CheckpointRequest{Group: 7})
	<-sm.started
	sm.result <- errors.New("injected flush failure")
	// A proposal raft took before the halt is refused by it too.
	deadline := time.After(5 * time.Second)
	for refused := false; !refused; {
		sys.Root.Send(group, &Propose{ID: 99, Data: []byte("after"), ReplyTo: pp})
		select {
		case m := <-p.answers:
			refused = errors.Is(m.Err, ErrNotReady)
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("the group still takes proposals after its flush failed")
		}
	}
	if got := st.got(); len(got) != 2 {
		t.Fatalf("checkpoints %v: a failed flush must not count", got)
	}
}
