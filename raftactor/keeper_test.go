package raftactor

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/storage"
)

// keepingMachine is a LogKeeper whose log is a map from raft index to body,
// shared across restarts like files on disk. The WAL gets "ref" plus the
// index in place of a body. Sync waits for the test when gated.
type keepingMachine struct {
	countingMachine
	disk     *keptDisk
	gate     chan error  // nil: Sync returns at once
	failKeep atomic.Bool // Keep fails as on a full disk
	released atomic.Uint64
}

type keptDisk struct {
	mu     sync.Mutex
	bodies map[uint64][]byte
	syncs  int
}

func ref(i uint64) []byte { return fmt.Appendf(nil, "ref%d", i) }

func (k *keepingMachine) Keep(ents []*pb.Entry) ([]*pb.Entry, error) {
	if k.failKeep.Load() {
		return nil, errors.New("injected: no space left on device")
	}
	k.disk.mu.Lock()
	defer k.disk.mu.Unlock()
	for i := range k.disk.bodies {
		if i >= ents[0].GetIndex() {
			delete(k.disk.bodies, i)
		}
	}
	out := make([]*pb.Entry, len(ents))
	for n, e := range ents {
		out[n] = e
		if e.GetType() == pb.EntryNormal && len(e.GetData()) > 0 {
			k.disk.bodies[e.GetIndex()] = e.GetData()
			out[n] = &pb.Entry{Index: new(e.GetIndex()), Term: new(e.GetTerm()), Type: e.Type, Data: ref(e.GetIndex())}
		}
	}
	return out, nil
}

func (k *keepingMachine) References(ents []*pb.Entry) ([]*pb.Entry, error) {
	out := make([]*pb.Entry, len(ents))
	for n, e := range ents {
		out[n] = e
		if e.GetType() == pb.EntryNormal && len(e.GetData()) > 0 {
			out[n] = &pb.Entry{Index: new(e.GetIndex()), Term: new(e.GetTerm()), Type: e.Type, Data: ref(e.GetIndex())}
		}
	}
	return out, nil
}

func (k *keepingMachine) Sync() error {
	if k.gate != nil {
		if err := <-k.gate; err != nil {
			return err
		}
	}
	k.disk.mu.Lock()
	k.disk.syncs++
	k.disk.mu.Unlock()
	return nil
}

func (k *keepingMachine) Discard() error { return nil }

func (k *keepingMachine) Release(index uint64) error {
	k.released.Store(index)
	return nil
}

func (k *keepingMachine) Recover(ents []*pb.Entry) ([]*pb.Entry, error) {
	k.disk.mu.Lock()
	defer k.disk.mu.Unlock()
	for n, e := range ents {
		if !bytes.HasPrefix(e.GetData(), []byte("ref")) {
			continue
		}
		body, ok := k.disk.bodies[e.GetIndex()]
		if !ok || !bytes.Equal(e.GetData(), ref(e.GetIndex())) {
			return ents[:n], nil
		}
		ents[n] = &pb.Entry{Index: new(e.GetIndex()), Term: new(e.GetTerm()), Type: e.Type, Data: body}
	}
	return ents, nil
}

// keeperGroup runs one single-voter group over a real storage actor in dir.
type keeperGroup struct {
	sys   *actors.System
	group *actor.PID
	board *StatusBoard
	p     *proposer
	pp    *actor.PID
	stop  func()
}

func startKeeperGroup(t *testing.T, dir string, sm *keepingMachine) *keeperGroup {
	t.Helper()
	w, states, err := storage.Open(dir, storage.Options{Fsync: true, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	sys := actors.NewSystem(zerolog.Nop())
	st, err := sys.Spawn(storage.Kind, storage.Name, storage.NewActor(w, zerolog.Nop()))
	if err != nil {
		t.Fatal(err)
	}
	kg := &keeperGroup{sys: sys, board: NewStatusBoard(), p: &proposer{answers: make(chan *Proposed, 100)}}
	prod, err := NewProducer(Config{
		Group: 7, Name: "p", NodeID: 1, Bootstrap: true, Peers: []uint64{1},
		ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
		Storage: st, Transport: &memTransport{nodes: map[uint64]*actor.PID{}}, StateMachine: sm, Board: kg.board,
		Recovered: states[7], Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if kg.group, err = sys.Spawn("raft", "raft/p", prod); err != nil {
		t.Fatal(err)
	}
	ticker := NewTicker(sys.Root, 5*time.Millisecond)
	ticker.Subscribe(kg.group)
	if kg.pp, err = sys.Spawn("proposer", "proposer", func() actor.Actor { return kg.p }); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			ticker.Stop()
			sys.Shutdown()
		}
	}
	kg.stop = stop
	t.Cleanup(stop)
	waitFor(t, 5*time.Second, func() (struct{}, bool) {
		s := kg.board.Get(7)
		return struct{}{}, s != nil && s.Role == "leader"
	})
	return kg
}

func (kg *keeperGroup) propose(id int) {
	kg.sys.Root.Send(kg.group, &Propose{ID: uint64(id), Data: fmt.Appendf(nil, "e%d", id), ReplyTo: kg.pp})
}

func (kg *keeperGroup) answer(t *testing.T, within time.Duration) *Proposed {
	t.Helper()
	select {
	case m := <-kg.p.answers:
		return m
	case <-time.After(within):
		return nil
	}
}

// TestKeptEntriesWaitForTheirSync: a LogKeeper's entries are acknowledged
// (here: committed and applied on a single voter) only once a Sync that began
// after they were kept has returned, even though the WAL answered at once;
// the WAL holds the references, and a restart gets the bodies back from the
// keeper, dropping the entries whose bodies were lost.
func TestKeptEntriesWaitForTheirSync(t *testing.T) {
	dir := t.TempDir()
	disk := &keptDisk{bodies: map[uint64][]byte{}}
	gate := make(chan error)
	sm := &keepingMachine{disk: disk, gate: gate}
	kg := startKeeperGroup(t, dir, sm)

	kg.propose(1)
	if m := kg.answer(t, 300*time.Millisecond); m != nil {
		t.Fatalf("proposal answered (%v) before the keeper's Sync returned", m.Err)
	}
	gate <- nil // the Sync that may have begun before the entry was kept
	for i := 0; i < 3 && sm.count() == 0; i++ {
		select {
		case gate <- nil:
		case <-time.After(200 * time.Millisecond):
		}
	}
	if m := kg.answer(t, 5*time.Second); m == nil || m.Err != nil {
		t.Fatalf("proposal after its Sync: %+v", m)
	}
	close(gate) // every later Sync returns at once
	for i := 2; i <= 5; i++ {
		kg.propose(i)
		if m := kg.answer(t, 5*time.Second); m == nil || m.Err != nil {
			t.Fatalf("proposal %d: %+v", i, m)
		}
	}
	kg.stop()

	// The WAL holds references only.
	_, states, err := storage.Open(dir, storage.Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, e := range states[7].Entries {
		if e.GetType() == pb.EntryNormal && len(e.GetData()) > 0 {
			if !bytes.Equal(e.GetData(), ref(e.GetIndex())) {
				t.Fatalf("WAL entry %d holds %q, want its reference", e.GetIndex(), e.GetData())
			}
			last = e.GetIndex()
		}
	}
	if last == 0 {
		t.Fatal("no kept entries in the WAL")
	}

	// Lose the last body, as a crash before its sync would: the entry is
	// dropped, the others are replayed with their bodies.
	disk.mu.Lock()
	delete(disk.bodies, last)
	disk.mu.Unlock()
	sm2 := &keepingMachine{disk: disk}
	kg2 := startKeeperGroup(t, dir, sm2)
	got := waitFor(t, 5*time.Second, func() ([][]byte, bool) {
		sm2.mu.Lock()
		defer sm2.mu.Unlock()
		return append([][]byte(nil), sm2.data...), len(sm2.data) >= 4
	})
	for n, d := range got {
		if want := fmt.Appendf(nil, "e%d", n+1); !bytes.HasSuffix(d, want) {
			t.Fatalf("replayed entry %d is %q, want the body %q", n, d, want)
		}
	}
	if len(got) != 4 {
		t.Fatalf("replayed %d entries, want 4: the one whose body was lost must be dropped", len(got))
	}
	kg2.propose(6)
	if m := kg2.answer(t, 5*time.Second); m == nil || m.Err != nil {
		t.Fatalf("proposal after recovery: %+v", m)
	}

	// A durable checkpoint lets the keeper release what it covers.
	applied := kg2.board.Get(7).Applied
	kg2.sys.Root.Send(kg2.group, &storage.CheckpointRequest{Group: 7})
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, sm2.released.Load() >= applied })
}

// TestKeeperSyncFailureHalts: a failed Sync leaves the kept bodies unknown;
// the group halts and acknowledges nothing.
func TestKeeperSyncFailureHalts(t *testing.T) {
	gate := make(chan error, 1)
	sm := &keepingMachine{disk: &keptDisk{bodies: map[uint64][]byte{}}, gate: gate}
	kg := startKeeperGroup(t, t.TempDir(), sm)
	gate <- errors.New("injected sync failure")
	kg.propose(1)
	m := kg.answer(t, 5*time.Second)
	if m == nil || !errors.Is(m.Err, ErrNotReady) {
		t.Fatalf("proposal answered %+v, want ErrNotReady from the halted group", m)
	}
	if sm.count() != 0 {
		t.Fatal("an entry whose Sync failed was applied")
	}
}

// TestKeeperKeepFailureHalts: a Keep that fails (a full disk) halts the
// group, which answers its proposals and stays up: no panic, no restart.
func TestKeeperKeepFailureHalts(t *testing.T) {
	sm := &keepingMachine{disk: &keptDisk{bodies: map[uint64][]byte{}}}
	kg := startKeeperGroup(t, t.TempDir(), sm)
	sm.failKeep.Store(true)
	kg.propose(1)
	m := kg.answer(t, 5*time.Second)
	if m == nil || !errors.Is(m.Err, ErrNotReady) {
		t.Fatalf("proposal answered %+v, want ErrNotReady from the halted group", m)
	}
	kg.propose(2) // handled by the halted group, after the failed Ready
	if m := kg.answer(t, 5*time.Second); m == nil || !errors.Is(m.Err, ErrNotReady) {
		t.Fatalf("second proposal answered %+v, want ErrNotReady", m)
	}
	for _, st := range kg.sys.List() {
		if st.Restarts > 0 {
			t.Fatalf("actor %s restarted %d times after the failed Keep", st.Name, st.Restarts)
		}
	}
	if sm.count() != 0 {
		t.Fatal("an entry that was never kept was applied")
	}
	// The status shows it, for the debug endpoint and the metrics.
	st := kg.board.Get(7)
	if st == nil || st.Role != "halted" || st.Halted == "" {
		t.Fatalf("status of the halted group: %+v, want role halted and the reason", st)
	}
	ch := make(chan prometheus.Metric, 64)
	NewCollector(kg.board).Collect(ch)
	close(ch)
	halted := 0.0
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		for _, l := range pb.GetLabel() {
			if l.GetName() == "role" && l.GetValue() == "halted" {
				halted += pb.GetGauge().GetValue()
			}
		}
	}
	if halted != 1 {
		t.Fatalf("flotilla_raft_role{role=\"halted\"} is %v, want 1", halted)
	}
}
