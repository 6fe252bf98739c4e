package raftactor

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/storage"
)

// holdStorage answers Persists at once, in order, except that once hold
// is above 0 it keeps the first Persist of a term above hold, and every one
// after it, until releaseHeld: a slow write of a new term. durableTerm is
// the highest hard state term it has answered.
type holdStorage struct {
	hold        *atomic.Uint64
	durableTerm *atomic.Uint64
	held        []*storage.Persist
}

type releaseHeld struct{}

func (s *holdStorage) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *storage.Persist:
		if h := s.hold.Load(); len(s.held) > 0 || h > 0 && m.HardState.GetTerm() > h {
			s.held = append(s.held, m)
			return
		}
		s.answer(ctx, m)
	case *releaseHeld:
		s.hold.Store(0)
		for _, p := range s.held {
			s.answer(ctx, p)
		}
		s.held = nil
	}
}

func (s *holdStorage) answer(ctx actor.Context, p *storage.Persist) {
	if t := p.HardState.GetTerm(); t > s.durableTerm.Load() {
		s.durableTerm.Store(t)
	}
	ctx.Send(p.ReplyTo, &storage.Persisted{Group: p.Group, Incarnation: p.Incarnation, Seq: p.Seq})
}

// TestLeaderProposesOnlyOnceItsTermIsDurable: a node that wins an election
// while its own hard state is still being written holds proposals until
// it is durable. Raft counts the peers' votes before the candidate's own is
// written; had it replicated a proposal and crashed, it could win the same
// term again and write a different entry at the same index and term.
func TestLeaderProposesOnlyOnceItsTermIsDurable(t *testing.T) {
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	tr := &memTransport{nodes: map[uint64]*actor.PID{}}
	holds := map[uint64]*atomic.Uint64{}
	durable := map[uint64]*atomic.Uint64{}
	stores := map[uint64]*actor.PID{}
	pids := map[uint64]*actor.PID{}
	boards := map[uint64]*StatusBoard{}
	machines := map[uint64]*countingMachine{}
	for id := uint64(1); id <= 3; id++ {
		holds[id], durable[id], machines[id] = &atomic.Uint64{}, &atomic.Uint64{}, &countingMachine{}
		h, d := holds[id], durable[id]
		st, err := sys.Spawn("storage", fmt.Sprintf("storage/%d", id), func() actor.Actor { return &holdStorage{hold: h, durableTerm: d} })
		if err != nil {
			t.Fatal(err)
		}
		stores[id], boards[id] = st, NewStatusBoard()
		prod, err := NewProducer(Config{Group: 0, Name: "controller", NodeID: id, Bootstrap: true, Peers: []uint64{1, 2, 3},
			ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
			Storage: st, Transport: tr, StateMachine: machines[id], Board: boards[id], Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		pid, err := sys.Spawn("raft", fmt.Sprintf("raft/%d", id), prod)
		if err != nil {
			t.Fatal(err)
		}
		tr.mu.Lock()
		tr.nodes[id] = pid
		tr.mu.Unlock()
		pids[id] = pid
	}
	ticker := NewTicker(sys.Root, 5*time.Millisecond)
	t.Cleanup(ticker.Stop)
	for _, p := range pids {
		ticker.Subscribe(p)
	}
	leader := waitLeader(t, boards, 0)
	x := leader%3 + 1
	const data = "create-topic-orders"
	var violation atomic.Value // string
	var heartbeats atomic.Int64
	tr.mu.Lock()
	tr.spy = func(m *pb.Message) {
		if m.GetFrom() != x {
			return
		}
		if m.GetType() == pb.MsgHeartbeat {
			heartbeats.Add(1)
		}
		for _, e := range m.GetEntries() {
			if len(e.GetData()) > 8 && string(e.GetData()[8:]) == data && durable[x].Load() < e.GetTerm() {
				violation.Store(fmt.Sprintf("sent %q in term %d while its durable term was %d", data, e.GetTerm(), durable[x].Load()))
			}
		}
	}
	tr.mu.Unlock()

	holds[x].Store(boards[leader].Get(0).Term) // x's storage is slow to write a new term
	sys.Root.Send(pids[leader], &TransferLeader{To: x})
	waitFor(t, 5*time.Second, func() (struct{}, bool) {
		s := boards[x].Get(0)
		return struct{}{}, s != nil && s.Role == "leader"
	})
	if durable[x].Load() >= boards[x].Get(0).Term {
		t.Fatal("x's term became durable before the test could propose: it checks nothing")
	}
	sys.Root.Send(pids[x], &Propose{ID: 1, Data: []byte(data)})
	// x heartbeats every tick; three more mean it has handled the Propose.
	seen := heartbeats.Load()
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, heartbeats.Load() >= seen+3 })
	if v := violation.Load(); v != nil {
		t.Fatalf("the new leader %d %s", x, v)
	}

	sys.Root.Send(stores[x], &releaseHeld{})
	waitFor(t, 5*time.Second, func() (struct{}, bool) {
		for _, m := range machines {
			if m.count() < 1 {
				return struct{}{}, false
			}
		}
		return struct{}{}, true
	})
	if v := violation.Load(); v != nil {
		t.Fatalf("the new leader %d %s", x, v)
	}
}
