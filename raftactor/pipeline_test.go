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

// slowStorage answers each Persist only after a delay, in the order they
// came, as the storage actor does, recording "durable" when it does, so that
// any response sent before its Persist is answered shows up.
type slowStorage struct {
	node  uint64
	log   *eventLog
	queue []*storage.Persist
}

type persistDue struct{}

func (s *slowStorage) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *storage.Persist:
		s.queue = append(s.queue, m)
		self := ctx.Self()
		root := ctx.ActorSystem().Root
		time.AfterFunc(2*time.Millisecond, func() { root.Send(self, &persistDue{}) })
	case *persistDue:
		p := s.queue[0]
		s.queue = s.queue[1:]
		if s.log != nil {
			s.log.add(event{node: s.node, ready: p.Seq, kind: "durable"})
		}
		ctx.Send(p.ReplyTo, &storage.Persisted{Group: p.Group, Incarnation: p.Incarnation, Seq: p.Seq})
	}
}

// memTransport delivers messages straight to the peer group's actor,
// showing each to spy first when it is set.
type memTransport struct {
	mu    sync.Mutex
	nodes map[uint64]*actor.PID
	spy   func(m *pb.Message)
	down  map[uint64]bool // nodes cut off: messages to and from them are dropped
	drop  func(m *pb.Message) bool
}

func (t *memTransport) Send(ctx actor.SenderContext, group uint64, msgs []*pb.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		if t.spy != nil {
			t.spy(m)
		}
		if t.down[m.GetTo()] || t.down[m.GetFrom()] || t.drop != nil && t.drop(m) {
			continue
		}
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
	tr       *memTransport
}

func newMemCluster(t *testing.T, elog *eventLog, machines map[uint64]StateMachine, tune ...func(*Config)) *memCluster {
	t.Helper()
	c := &memCluster{sys: actors.NewSystem(zerolog.Nop()), pids: map[uint64]*actor.PID{}, boards: map[uint64]*StatusBoard{}, machines: machines}
	t.Cleanup(c.sys.Shutdown)
	tr := &memTransport{nodes: map[uint64]*actor.PID{}}
	c.tr = tr
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
		for _, f := range tune {
			f(&cfg)
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
	return waitLeader(t, c.boards, 0)
}

// waitLeader waits until one of the nodes whose boards are given leads
// group, and returns its id.
func waitLeader(t *testing.T, boards map[uint64]*StatusBoard, group uint64) uint64 {
	t.Helper()
	return waitFor(t, 5*time.Second, func() (uint64, bool) {
		for id, b := range boards {
			if s := b.Get(group); s != nil && s.Role == "leader" {
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

// checkPipelineOrder asserts the Ready contract on a recorded event log:
// each Ready's steps run in order; Persists are answered, and their
// Persisted taken, in the order they were sent; a held-back response
// (MsgAppResp, MsgVoteResp, MsgPreVoteResp) leaves only once every Persist
// its node sent up to its Ready is durable. It also requires that some
// node had more than one Persist in flight: the pipeline was exercised.
func checkPipelineOrder(t *testing.T, events []event) {
	t.Helper()
	type key struct{ node, ready uint64 }
	last := map[key]PipelineStep{}       // last step seen per Ready
	open := map[uint64]map[uint64]bool{} // node → Persists sent and not answered
	lastPersisted := map[uint64]uint64{} // node → ready of its last persisted step
	durable := map[key]bool{}
	responses, maxOpen := 0, 0
	for i, e := range events {
		k := key{e.node, e.ready}
		if open[e.node] == nil {
			open[e.node] = map[uint64]bool{}
		}
		switch e.kind {
		case "durable":
			if !open[e.node][e.ready] {
				t.Fatalf("event %d: node %d: storage answered ready %d, which sent no Persist", i, e.node, e.ready)
			}
			for seq := range open[e.node] {
				if seq < e.ready {
					t.Fatalf("event %d: node %d: ready %d answered before ready %d", i, e.node, e.ready, seq)
				}
			}
			delete(open[e.node], e.ready)
			durable[k] = true
		case "sent":
			switch e.msg.GetType() {
			case pb.MsgAppResp, pb.MsgVoteResp, pb.MsgPreVoteResp: // the contract, written out independently of the code
			default:
				continue
			}
			responses++
			if last[k] != StepPersistedMessages {
				t.Fatalf("event %d: node %d sent %s in step %s of ready %d, not after its persisted step",
					i, e.node, e.msg.GetType(), last[k], e.ready)
			}
			for seq := range open[e.node] {
				if seq <= e.ready {
					t.Fatalf("event %d: node %d sent %s for ready %d while the Persist of ready %d was in flight",
						i, e.node, e.msg.GetType(), e.ready, seq)
				}
			}
		default:
			var step PipelineStep
			for s := StepMessages; s <= StepPersistedMessages; s++ {
				if s.String() == e.kind {
					step = s
				}
			}
			switch {
			case step == 0:
				t.Fatalf("event %d: unknown step %q", i, e.kind)
			case step <= StepPersist && step <= last[k]:
				t.Fatalf("event %d: node %d ready %d: step %s after step %s", i, e.node, e.ready, step, last[k])
			case step == StepPersist:
				open[e.node][e.ready] = true
				maxOpen = max(maxOpen, len(open[e.node]))
			case step == StepPersisted:
				if last[k] != StepPersist || !durable[k] {
					t.Fatalf("event %d: node %d ready %d: persisted step after step %s, durable %v", i, e.node, e.ready, last[k], durable[k])
				}
				if e.ready <= lastPersisted[e.node] {
					t.Fatalf("event %d: node %d: ready %d persisted after ready %d", i, e.node, e.ready, lastPersisted[e.node])
				}
				lastPersisted[e.node] = e.ready
			case step == StepPersistedMessages:
				if last[k] == StepPersist {
					t.Fatalf("event %d: node %d ready %d: its messages left before its Persisted", i, e.node, e.ready)
				}
			}
			last[k] = step
		}
	}
	if responses == 0 {
		t.Fatal("no MsgAppResp/MsgVoteResp/MsgPreVoteResp seen: the test checked nothing")
	}
	if maxOpen < 2 {
		t.Fatalf("at most %d Persist in flight per node: the pipeline was not exercised", maxOpen)
	}
	t.Logf("%d held-back responses checked; up to %d Persists in flight on a node", responses, maxOpen)
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
