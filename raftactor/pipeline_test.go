package raftactor

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/storage"
)

// eventLog is one totally ordered record of what every node did, so the test
// can compare the moment a response left with the moment its Persist finished.
type eventLog struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	node  uint64
	ready uint64
	kind  string // a PipelineStep name, "durable" or "sent"
	msg   *pb.Message
}

func (l *eventLog) add(e event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) snapshot() []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]event(nil), l.events...)
}

// ObserveStep implements Observer.
func (l *eventLog) ObserveStep(node, group, ready uint64, step PipelineStep, msgs []*pb.Message) {
	l.add(event{node: node, ready: ready, kind: step.String()})
	for _, m := range msgs {
		l.add(event{node: node, ready: ready, kind: "sent", msg: m})
	}
}

// slowStorage answers Persist only after a delay, recording "durable" when it
// does, so that any response sent before its Persist is answered shows up.
type slowStorage struct {
	node uint64
	log  *eventLog
}

type persistDone struct{ p *storage.Persist }

func (s *slowStorage) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *storage.Persist:
		self := ctx.Self()
		root := ctx.ActorSystem().Root
		time.AfterFunc(2*time.Millisecond, func() { root.Send(self, &persistDone{m}) })
	case *persistDone:
		s.log.add(event{node: s.node, ready: m.p.Seq, kind: "durable"})
		ctx.Send(m.p.ReplyTo, &storage.Persisted{Group: m.p.Group, Incarnation: m.p.Incarnation, Seq: m.p.Seq})
	}
}

// memTransport delivers messages straight to the peer group's actor.
type memTransport struct {
	mu    sync.Mutex
	nodes map[uint64]*actor.PID
}

func (t *memTransport) Send(ctx actor.SenderContext, group uint64, msgs []*pb.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		if pid, ok := t.nodes[m.GetTo()]; ok {
			ctx.Send(pid, &Step{Msgs: []*pb.Message{m}})
		}
	}
}

type countingMachine struct {
	mu      sync.Mutex
	applied uint64
	data    [][]byte
}

func (c *countingMachine) Apply(index, term uint64, data []byte) {
	c.mu.Lock()
	c.applied = index
	if data != nil {
		c.data = append(c.data, append([]byte(nil), data...))
	}
	c.mu.Unlock()
}
func (c *countingMachine) Snapshot() ([]byte, error)  { return nil, nil }
func (c *countingMachine) Restore(*pb.Snapshot) error { return nil }
func (c *countingMachine) count() int                 { c.mu.Lock(); defer c.mu.Unlock(); return len(c.data) }

func TestPipelineOrder(t *testing.T) {
	sys := actors.NewSystem(zerolog.Nop())
	defer sys.Shutdown()
	elog := &eventLog{}
	tr := &memTransport{nodes: map[uint64]*actor.PID{}}
	boards := map[uint64]*StatusBoard{}
	machines := map[uint64]*countingMachine{}
	var pids []*actor.PID
	for id := uint64(1); id <= 3; id++ {
		st, err := sys.Spawn("storage", fmt.Sprintf("storage/%d", id), func() actor.Actor { return &slowStorage{node: id, log: elog} })
		if err != nil {
			t.Fatal(err)
		}
		boards[id] = NewStatusBoard()
		machines[id] = &countingMachine{}
		prod, err := NewProducer(Config{
			Group: 0, Name: "controller", NodeID: id, Bootstrap: true, Peers: []uint64{1, 2, 3},
			ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
			Storage: st, Transport: tr, StateMachine: machines[id], Board: boards[id], Observer: elog,
			Log: zerolog.Nop(),
		})
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
		pids = append(pids, pid)
	}
	ticker := NewTicker(sys.Root, 5*time.Millisecond)
	defer ticker.Stop()
	for _, pid := range pids {
		ticker.Subscribe(pid)
	}

	leader := waitFor(t, 5*time.Second, func() (uint64, bool) {
		for id, b := range boards {
			if s := b.Get(0); s != nil && s.Role == "leader" {
				return id, true
			}
		}
		return 0, false
	})
	const n = 50
	for i := 0; i < n; i++ {
		// Proposals on followers are forwarded; both paths must keep the order.
		target := pids[i%3]
		sys.Root.Send(target, &Propose{ID: uint64(i), Data: []byte(fmt.Sprintf("entry-%d", i))})
	}
	waitFor(t, 10*time.Second, func() (struct{}, bool) {
		for _, m := range machines {
			if m.count() < n {
				return struct{}{}, false
			}
		}
		return struct{}{}, true
	})
	t.Logf("leader %d; checking %d events", leader, len(elog.snapshot()))
	checkPipelineOrder(t, elog.snapshot())
}

// checkPipelineOrder asserts the Ready contract on a recorded event log.
func checkPipelineOrder(t *testing.T, events []event) {
	t.Helper()
	order := map[string]int{}
	for s := StepMessages; s <= StepAdvance; s++ {
		order[s.String()] = int(s)
	}
	type key struct{ node, ready uint64 }
	last := map[key]int{}     // last step seen per Ready
	durable := map[key]bool{} // Persist answered
	persisted := map[key]bool{}
	lastStepOf := map[uint64]key{} // node → Ready currently in its pipeline
	responses := 0
	for i, e := range events {
		k := key{e.node, e.ready}
		switch e.kind {
		case "durable":
			durable[k] = true
		case "sent":
			switch e.msg.GetType() {
			case pb.MsgAppResp, pb.MsgVoteResp, pb.MsgPreVoteResp: // the contract, written out independently of the code
			default:
				continue
			}
			responses++
			if last[k] != int(StepPersistedMessages) {
				t.Fatalf("event %d: node %d sent %s in step %d of ready %d, before its persisted step",
					i, e.node, e.msg.GetType(), last[k], e.ready)
			}
			if persisted[k] && !durable[k] {
				t.Fatalf("event %d: node %d sent %s for ready %d before storage answered its Persist", i, e.node, e.msg.GetType(), e.ready)
			}
		default:
			step := order[e.kind]
			if prev, ok := lastStepOf[e.node]; ok && prev != k && last[prev] != int(StepAdvance) {
				t.Fatalf("event %d: node %d began ready %d before advancing ready %d (at step %d)", i, e.node, e.ready, prev.ready, last[prev])
			}
			want := last[k] + 1
			if step != want && !(step == int(StepPersistedMessages) && last[k] == int(StepPersist)) {
				t.Fatalf("event %d: node %d ready %d: step %s, want step %d next", i, e.node, e.ready, e.kind, want)
			}
			if step == int(StepPersisted) {
				persisted[k] = true
				if !durable[k] {
					t.Fatalf("event %d: node %d ready %d: persisted step before storage answered", i, e.node, e.ready)
				}
			}
			last[k] = step
			lastStepOf[e.node] = k
		}
	}
	if responses == 0 {
		t.Fatal("no MsgAppResp/MsgVoteResp/MsgPreVoteResp seen: the test checked nothing")
	}
	t.Logf("%d held-back responses checked", responses)
}

func waitFor[T any](t *testing.T, d time.Duration, f func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if v, ok := f(); ok {
			return v
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("condition not met within %v", d)
	var zero T
	return zero
}
