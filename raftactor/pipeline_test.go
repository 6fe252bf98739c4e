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
		if s.log != nil {
			s.log.add(event{node: s.node, ready: m.p.Seq, kind: "durable"})
		}
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

// memCluster is three raft groups in one actor system, over memTransport,
// each with a slowStorage: enough to watch the pipeline, not a durability test.
type memCluster struct {
	sys      *actors.System
	pids     map[uint64]*actor.PID
	boards   map[uint64]*StatusBoard
	machines map[uint64]StateMachine
}

func newMemCluster(t *testing.T, elog *eventLog, machines map[uint64]StateMachine) *memCluster {
	t.Helper()
	c := &memCluster{sys: actors.NewSystem(zerolog.Nop()), pids: map[uint64]*actor.PID{}, boards: map[uint64]*StatusBoard{}, machines: machines}
	t.Cleanup(c.sys.Shutdown)
	tr := &memTransport{nodes: map[uint64]*actor.PID{}}
	for id := uint64(1); id <= 3; id++ {
		st, err := c.sys.Spawn("storage", fmt.Sprintf("storage/%d", id), func() actor.Actor { return &slowStorage{node: id, log: elog} })
		if err != nil {
			t.Fatal(err)
		}
		c.boards[id] = NewStatusBoard()
		cfg := Config{
			Group: 0, Name: "controller", NodeID: id, Bootstrap: true, Peers: []uint64{1, 2, 3},
			ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
			Storage: st, Transport: tr, StateMachine: machines[id], Board: c.boards[id],
			Log: zerolog.Nop(),
		}
		if elog != nil {
			cfg.Observer = elog
		}
		prod, err := NewProducer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := c.sys.Spawn("raft", fmt.Sprintf("raft/%d", id), prod)
		if err != nil {
			t.Fatal(err)
		}
		tr.mu.Lock()
		tr.nodes[id] = pid
		tr.mu.Unlock()
		c.pids[id] = pid
	}
	ticker := NewTicker(c.sys.Root, 5*time.Millisecond)
	t.Cleanup(ticker.Stop)
	for _, pid := range c.pids {
		ticker.Subscribe(pid)
	}
	return c
}

func (c *memCluster) leader(t *testing.T) uint64 {
	t.Helper()
	return waitFor(t, 5*time.Second, func() (uint64, bool) {
		for id, b := range c.boards {
			if s := b.Get(0); s != nil && s.Role == "leader" {
				return id, true
			}
		}
		return 0, false
	})
}

// proposeAll proposes n entries round-robin on every node (followers forward).
func (c *memCluster) proposeAll(n int) {
	for i := 0; i < n; i++ {
		c.sys.Root.Send(c.pids[uint64(i%3+1)], &Propose{ID: uint64(i), Data: []byte(fmt.Sprintf("entry-%d", i))})
	}
}

func TestPipelineOrder(t *testing.T) {
	elog := &eventLog{}
	machines := map[uint64]*countingMachine{1: {}, 2: {}, 3: {}}
	c := newMemCluster(t, elog, map[uint64]StateMachine{1: machines[1], 2: machines[2], 3: machines[3]})
	leader := c.leader(t)
	const n = 50
	c.proposeAll(n)
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

// panickyMachine panics the first time it applies the entry poison.
type panickyMachine struct {
	countingMachine
	poison   string
	panicked bool
}

func (p *panickyMachine) Apply(index, term uint64, data []byte) {
	p.mu.Lock()
	poisoned := data != nil && string(data) == p.poison && !p.panicked
	if poisoned {
		p.panicked = true
	}
	p.mu.Unlock()
	if poisoned {
		panic("poisoned entry")
	}
	p.countingMachine.Apply(index, term, data)
}

func (p *panickyMachine) setPoison(s string) {
	p.mu.Lock()
	p.poison = s
	p.mu.Unlock()
}

// Restore resets to the empty state (no snapshots are taken in this test).
func (p *panickyMachine) Restore(*pb.Snapshot) error {
	p.mu.Lock()
	p.data, p.applied = nil, 0
	p.mu.Unlock()
	return nil
}

// TestRestartAfterPanic: a raft actor that panics in the middle of applying
// a Ready is restarted by its supervisor, resets its state machine to the
// last snapshot, and replays: every entry ends up applied exactly once.
func TestRestartAfterPanic(t *testing.T) {
	machines := map[uint64]*panickyMachine{1: {}, 2: {}, 3: {}}
	sms := map[uint64]StateMachine{}
	for id, m := range machines {
		sms[id] = m
	}
	c := newMemCluster(t, nil, sms)
	leader := c.leader(t)
	victim := leader%3 + 1 // a follower
	machines[victim].setPoison("entry-25")
	const n = 60
	for i := 0; i < n; i++ {
		// At the leader: the victim refuses proposals while it restarts.
		c.sys.Root.Send(c.pids[leader], &Propose{ID: uint64(i), Data: []byte(fmt.Sprintf("entry-%d", i))})
	}
	waitFor(t, 10*time.Second, func() (struct{}, bool) {
		for _, m := range machines {
			if m.count() < n {
				return struct{}{}, false
			}
		}
		return struct{}{}, true
	})
	m := machines[victim]
	m.mu.Lock()
	panicked := m.panicked
	m.mu.Unlock()
	if !panicked {
		t.Fatal("the poisoned entry never reached the victim")
	}
	m.mu.Lock()
	seen := map[string]int{}
	for _, d := range m.data {
		seen[string(d)]++
	}
	m.mu.Unlock()
	for i := 0; i < n; i++ {
		if k := fmt.Sprintf("entry-%d", i); seen[k] != 1 {
			t.Fatalf("%s applied %d times on the restarted node", k, seen[k])
		}
	}
	for _, s := range c.sys.List() {
		if s.Name == fmt.Sprintf("raft/%d", victim) && s.Restarts != 1 {
			t.Fatalf("victim restarts %d, want 1", s.Restarts)
		}
	}
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
