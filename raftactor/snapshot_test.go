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

// snapHoldStorage answers Persists at once, in order, until one carries a
// snapshot: that one and every one after it wait for releaseHeld.
type snapHoldStorage struct {
	held     []*storage.Persist
	heldSnap *atomic.Bool
}

func (s *snapHoldStorage) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *storage.Persist:
		if len(s.held) > 0 || m.Snapshot != nil {
			s.held = append(s.held, m)
			s.heldSnap.Store(true)
			return
		}
		ctx.Send(m.ReplyTo, &storage.Persisted{Group: m.Group, Incarnation: m.Incarnation, Seq: m.Seq})
	case *releaseHeld:
		for _, p := range s.held {
			ctx.Send(p.ReplyTo, &storage.Persisted{Group: p.Group, Incarnation: p.Incarnation, Seq: p.Seq})
		}
		s.held = nil
	}
}

// restoreCounter counts the leader snapshots (index above 0) it restores.
type restoreCounter struct {
	countingMachine
	restores atomic.Int32
}

func (r *restoreCounter) Restore(snap *pb.Snapshot) error {
	if snap.GetMetadata().GetIndex() > 0 {
		r.restores.Add(1)
	}
	return nil
}

// TestLeaderSnapshotInstalledOnceDurable: a follower that gets a leader's
// snapshot hands it to its state machine only once the snapshot's Persist
// is durable. A state machine that keeps the raft log in files of its own
// drops that log when it installs the snapshot; before the snapshot can be
// recovered, a crash would lose entries the follower had acknowledged.
func TestLeaderSnapshotInstalledOnceDurable(t *testing.T) {
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	tr := &memTransport{nodes: map[uint64]*actor.PID{}, down: map[uint64]bool{}}
	pids, boards := map[uint64]*actor.PID{}, map[uint64]*StatusBoard{}
	machines := map[uint64]*restoreCounter{}
	stores := map[uint64]*actor.PID{}
	heldSnap := &atomic.Bool{}
	for id := uint64(1); id <= 3; id++ {
		machines[id], boards[id] = &restoreCounter{}, NewStatusBoard()
		st, err := sys.Spawn("storage", fmt.Sprintf("storage/%d", id), func() actor.Actor { return &snapHoldStorage{heldSnap: heldSnap} })
		if err != nil {
			t.Fatal(err)
		}
		stores[id] = st
		prod, err := NewProducer(Config{Group: 0, Name: "controller", NodeID: id, Bootstrap: true, Peers: []uint64{1, 2, 3},
			ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
			SnapshotEntries: 5, CatchUpEntries: 1,
			Storage: st, Transport: tr, StateMachine: machines[id], Board: boards[id], Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		if pids[id], err = sys.Spawn("raft", fmt.Sprintf("raft/%d", id), prod); err != nil {
			t.Fatal(err)
		}
		tr.mu.Lock()
		tr.nodes[id] = pids[id]
		tr.mu.Unlock()
	}
	ticker := NewTicker(sys.Root, 5*time.Millisecond)
	t.Cleanup(ticker.Stop)
	for _, p := range pids {
		ticker.Subscribe(p)
	}
	leader := waitLeader(t, boards, 0)
	x := leader%3 + 1
	tr.mu.Lock()
	tr.down[x] = true
	tr.mu.Unlock()
	for i := range 40 {
		sys.Root.Send(pids[leader], &Propose{ID: uint64(i), Data: fmt.Appendf(nil, "e%d", i)})
	}
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, machines[leader].count() >= 40 })
	tr.mu.Lock()
	delete(tr.down, x)
	tr.mu.Unlock()

	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, heldSnap.Load() })
	// Had x installed it before durability, it would have done so while
	// taking the Ready that brought it, which is before it sent the Persist.
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := machines[x].restores.Load(); n != 0 {
			t.Fatalf("follower %d restored the leader's snapshot %d times before its Persist was durable", x, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	sys.Root.Send(stores[x], &releaseHeld{})
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, machines[x].restores.Load() == 1 })
	sys.Root.Send(pids[leader], &Propose{ID: 99, Data: []byte("after")})
	waitFor(t, 5*time.Second, func() (struct{}, bool) {
		st := boards[x].Get(0)
		return struct{}{}, st != nil && st.Applied >= boards[leader].Get(0).Applied
	})
}
