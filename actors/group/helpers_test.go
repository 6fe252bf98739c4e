package group

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/storage"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 20 * time.Second

// testTick is the coordinator's tick, real and nominal: its deadlines and
// periodic passes (retention every expireEveryTicks) come that fast.
const testTick = time.Millisecond

// testCoordinator is one offsets partition on a single replica: a raft
// group whose state machine is a Machine, over a storage the test can
// stall, ticked every testTick, with a client actor for its answers.
type testCoordinator struct {
	t       *testing.T
	sys     *actors.System
	pid     *actor.PID // the raft actor: Calls go here
	storage *actor.PID
	client  *actor.PID
	m       *Machine
	now     *atomic.Int64 // the leader's clock, unix ms
	seen    *atomic.Uint64
	answers chan *Answer
	// announced holds what the coordinator announced of its leadership.
	announced chan []netactor.LeaderInfo
	early     map[uint64]any // answers taken off the channel before they were waited for
	ref       uint64
}

// holdStorage answers every Persist at once, except while held: then it
// keeps them, in order, until released (an fsync stall).
type holdStorage struct {
	holding bool
	held    []*storage.Persist
}

// holdWrites starts (On) or ends a holdStorage's stall.
type holdWrites struct{ On bool }

func (s *holdStorage) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *storage.Persist:
		if s.holding {
			s.held = append(s.held, m)
			return
		}
		ctx.Send(m.ReplyTo, &storage.Persisted{Group: m.Group, Incarnation: m.Incarnation, Seq: m.Seq})
	case *holdWrites:
		s.holding = m.On
		if !m.On {
			for _, p := range s.held {
				ctx.Send(p.ReplyTo, &storage.Persisted{Group: p.Group, Incarnation: p.Incarnation, Seq: p.Seq})
			}
			s.held = nil
		}
	}
}

// nopTransport drops every message: the group has no other replica.
type nopTransport struct{}

func (nopTransport) Send(actor.SenderContext, uint64, []*pb.Message) {}

// startCoordinator starts a single-replica offsets partition with settings
// and waits for it to coordinate. Every topic has one partition.
func startCoordinator(t *testing.T, settings Settings) *testCoordinator {
	t.Helper()
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	c := &testCoordinator{t: t, sys: sys, now: &atomic.Int64{}, seen: &atomic.Uint64{},
		answers: make(chan *Answer, 64), early: map[uint64]any{}, announced: make(chan []netactor.LeaderInfo, 16)}
	c.now.Store(100 * 24 * time.Hour.Milliseconds())
	var err error
	if c.storage, err = sys.Spawn("storage", "storage", func() actor.Actor { return &holdStorage{} }); err != nil {
		t.Fatal(err)
	}
	c.m = NewMachine(MachineOptions{Replicas: []uint64{1}, Group: 7, Tick: testTick, Settings: settings,
		Topics: func(string) int32 { return 1 },
		Now:    func() time.Time { return time.UnixMilli(c.now.Load()) },
		Announce: func(_ actor.SenderContext, infos []netactor.LeaderInfo) {
			select {
			case c.announced <- infos:
			default:
			}
		},
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	prod, err := raftactor.NewProducer(raftactor.Config{Group: 7, Name: "__consumer_offsets/0", NodeID: 1, Bootstrap: true,
		Peers: []uint64{1}, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
		RawEntries: true, Storage: c.storage, Transport: nopTransport{}, StateMachine: c.m,
		Board: raftactor.NewStatusBoard(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if c.pid, err = sys.Spawn("raft", "raft/__consumer_offsets/0", prod); err != nil {
		t.Fatal(err)
	}
	answers, seen := c.answers, c.seen
	if c.client, err = sys.Spawn("test", "client", func() actor.Actor {
		return actor.ReceiveFunc(func(ctx actor.Context) {
			switch m := ctx.Message().(type) {
			case *Answer:
				answers <- m
			case *raftactor.Tick:
				seen.Store(m.N)
			}
		})
	}); err != nil {
		t.Fatal(err)
	}
	ticker := raftactor.NewTicker(sys.Root, testTick)
	t.Cleanup(ticker.Stop)
	ticker.Subscribe(c.pid)
	ticker.Subscribe(c.client)
	c.waitFor("the coordinator ready", func() bool { return c.m.Leadership().Leader })
	return c
}

func (c *testCoordinator) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not within %v", what, testTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitTicks waits until the coordinator has been sent n more ticks.
func (c *testCoordinator) waitTicks(n uint64) {
	c.t.Helper()
	until := c.seen.Load() + n
	c.waitFor("ticks", func() bool { return c.seen.Load() >= until })
}

// hold stalls the storage's writes (on) or lets them through.
func (c *testCoordinator) hold(on bool) { c.sys.Root.Send(c.storage, &holdWrites{On: on}) }

// send sends a Call for group with req and returns its Ref.
func (c *testCoordinator) send(group string, req any) uint64 {
	c.ref++
	c.sys.Root.Send(c.pid, &Call{Ref: c.ref, Group: group, Req: req, ClientID: "test", ClientHost: "/127.0.0.1", ReplyTo: c.client})
	return c.ref
}

// answer waits for the answer to the Call with ref.
func (c *testCoordinator) answer(ref uint64) any {
	c.t.Helper()
	if resp, ok := c.early[ref]; ok {
		delete(c.early, ref)
		return resp
	}
	timeout := time.After(testTimeout)
	for {
		select {
		case a := <-c.answers:
			if a.Ref == ref {
				return a.Resp
			}
			c.early[a.Ref] = a.Resp
		case <-timeout:
			c.t.Fatalf("no answer to call %d within %v", ref, testTimeout)
			return nil
		}
	}
}

// call sends a Call and waits for its answer.
func (c *testCoordinator) call(group string, req any) any {
	c.t.Helper()
	return c.answer(c.send(group, req))
}

// joinRequest is a consumer's JoinGroup (v5: no KIP-394 round trip for a
// static member, and the instance id when instance is not nil).
func joinRequest(group, member string, instance *string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = 3
	if instance != nil {
		req.Version = 5
	}
	req.Group, req.MemberID, req.InstanceID, req.ProtocolType = group, member, instance, "consumer"
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 60_000, 60_000
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"t"}
	req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
	return req
}

// syncRequest is a member's SyncGroup; a leader's assigns assignment to
// each member named.
func syncRequest(group, member string, generation int32, instance *string, assignment map[string][]byte) *kmsg.SyncGroupRequest {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = 3
	req.Group, req.MemberID, req.Generation, req.InstanceID = group, member, generation, instance
	for id, a := range assignment {
		req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: a})
	}
	return req
}
