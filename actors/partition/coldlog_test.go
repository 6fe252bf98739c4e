package partition

import (
	"bytes"
	"slices"
	"testing"

	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
)

// replica is a Machine driven the way its raft group drives it (each entry
// kept, then applied), with the entries it applied as raft holds them.
type replica struct {
	t   *testing.T
	m   *Machine
	wal []*pb.Entry
	// confs holds the configuration after each conf change in wal.
	confs map[uint64]*pb.ConfState
}

func newReplica(t *testing.T, dir string) *replica {
	t.Helper()
	return &replica{t: t, m: openMachine(t, dir, nil), confs: map[uint64]*pb.ConfState{}}
}

// openMachine opens the test partition's Machine in dir, given the entries
// the WAL recovered for it; the test's end closes it.
func openMachine(t *testing.T, dir string, recovered []*pb.Entry) *Machine {
	t.Helper()
	m, err := NewMachine(MachineOptions{
		Topic: "t", Dir: dir, Replicas: []uint64{1, 2, 3},
		Settings:  Settings{RetentionMs: -1, RetentionBytes: -1, SegmentBytes: 2048, MaxMessageBytes: 1 << 20, MinInsyncReplicas: 1},
		Log:       zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Recovered: recovered,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// step applies e as the group would: conf changes go to the cold log, and
// the configuration they make to the ConfChangeApplier.
func (r *replica) step(e *pb.Entry) {
	r.wal = append(r.wal, e)
	if e.GetType() != pb.EntryNormal {
		r.m.KeepEntry(e)
		r.m.ApplyConfChange(e.GetIndex(), e.GetTerm(), nil, r.confs[e.GetIndex()])
		return
	}
	if _, err := r.m.Keep([]*pb.Entry{e}); err != nil {
		r.t.Fatal(err)
	}
	r.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
}

func (r *replica) next() uint64 { return r.m.appliedIndex + 1 }

// confChange applies a conf change that adds a voter: 1, 2, 3, ...
func (r *replica) confChange(term uint64) {
	var voters []uint64
	if len(r.m.confs) > 0 {
		voters = r.m.confs[len(r.m.confs)-1].Conf.GetVoters()
	}
	r.confTo(term, &pb.ConfState{Voters: append(slices.Clone(voters), uint64(len(voters)+1))})
}

// confTo applies a conf change whose outcome is cs.
func (r *replica) confTo(term uint64, cs *pb.ConfState) {
	i := r.next()
	r.confs[i] = cs
	r.step(&pb.Entry{Index: new(i), Term: new(term), Type: pb.EntryConfChange.Enum()})
}

func (r *replica) empty(term uint64) {
	r.step(&pb.Entry{Index: new(r.next()), Term: new(term), Type: pb.EntryNormal.Enum()})
}

// batch stamps a batch at the log end, as the leader of term does, and
// applies it.
func (r *replica) batch(term uint64, s spec) {
	b := mkBatch(r.t, s)
	SetBaseOffset(b, r.m.log.LogEnd())
	SetPartitionLeaderEpoch(b, int32(term))
	r.step(&pb.Entry{Index: new(r.next()), Term: new(term), Type: pb.EntryNormal.Enum(), Data: batchEntry(b)})
}

// retain applies the log-start move the leader would propose to keep about
// bytes of the log.
func (r *replica) retain(term uint64, bytes int64) {
	p := r.m.log.RetentionPoint(0, -1, bytes)
	if p <= r.m.log.LogStart() {
		r.t.Fatalf("retention keeping %d bytes does not move the log start %d", bytes, p)
	}
	boundary, ok := r.m.boundaryAfter(p)
	r.step(&pb.Entry{Index: new(r.next()), Term: new(term), Type: pb.EntryNormal.Enum(), Data: logStartEntry(p, boundary, ok)})
}

// write applies n rounds of batches from three idempotent producers (the
// second one bumps its epoch in round bumpAt) and one plain producer.
func (r *replica) write(term uint64, seqs map[int64]int32, epochs map[int64]int16, n, bumpAt int) {
	for round := 0; round < n; round++ {
		for pid := int64(1); pid <= 3; pid++ {
			if pid == 2 && round == bumpAt {
				epochs[pid]++
				seqs[pid] = 0
			}
			if pid == 3 && round%3 != 0 {
				continue // a producer with few batches: its last five reach far back
			}
			r.batch(term, spec{records: 2, valueSize: 100, idempotent: true, pid: pid, epoch: epochs[pid], seq: seqs[pid], baseTs: int64(round)})
			seqs[pid] += 2
		}
		r.batch(term, spec{records: 1, valueSize: 100})
	}
}

// leaderWithRetention builds a leader's log: bootstrap conf changes, three
// terms of batches, a retention move in the middle of them.
func leaderWithRetention(t *testing.T) *replica {
	t.Helper()
	r := newReplica(t, t.TempDir())
	for range 3 {
		r.confChange(1)
	}
	seqs, epochs := map[int64]int32{}, map[int64]int16{}
	r.empty(1)
	r.write(1, seqs, epochs, 10, -1)
	r.empty(2)
	r.write(2, seqs, epochs, 10, 4)
	r.retain(2, 3000)
	r.empty(3)
	r.write(3, seqs, epochs, 2, -1)
	return r
}

func mustSnapshot(t *testing.T, m *Machine) []byte {
	t.Helper()
	data, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestBoundarySnapshot: a replica that installs the leader's boundary
// snapshot and then applies the entries the leader's cold log serves ends
// in exactly the leader's state: log start, batches, producer state,
// leader-epoch cache, side log and boundary.
func TestBoundarySnapshot(t *testing.T) {
	leader := leaderWithRetention(t)
	lm := leader.m
	b, term, ok := lm.Boundary()
	if !ok || b+1 != lm.FirstIndex() || lm.log.LogStart() == 0 {
		t.Fatalf("leader: boundary %d term %d ok %v, first index %d, log start %d", b, term, ok, lm.FirstIndex(), lm.log.LogStart())
	}
	if want := leader.wal[b-1].GetTerm(); term != want {
		t.Fatalf("boundary term %d, the entry at %d has term %d", term, b, want)
	}
	data, cs, ok := lm.BoundarySnapshot()
	if !ok {
		t.Fatal("no boundary snapshot")
	}
	if !slices.Equal(cs.GetVoters(), []uint64{1, 2, 3}) || len(cs.GetLearners()) > 0 {
		t.Fatalf("boundary snapshot's configuration %v, want voters 1, 2, 3", cs)
	}

	follower := newReplica(t, t.TempDir())
	if err := follower.m.Restore(&pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(b), Term: new(term)}}); err != nil {
		t.Fatal(err)
	}
	if got := follower.m.log.LogStart(); got != lm.log.LogStart() {
		t.Fatalf("follower's log starts at %d, the leader's at %d", got, lm.log.LogStart())
	}
	for i := lm.FirstIndex(); i <= lm.appliedIndex; i++ {
		e, err := lm.Entry(i)
		if err != nil {
			t.Fatalf("leader's cold log, entry %d: %v", i, err)
		}
		follower.step(e)
	}
	if want, got := mustSnapshot(t, lm), mustSnapshot(t, follower.m); !bytes.Equal(want, got) {
		t.Fatalf("follower's checkpoint differs from the leader's:\n%s\n%s", got, want)
	}
	want, err := lm.log.Read(lm.log.LogStart(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := follower.m.log.Read(lm.log.LogStart(), 1<<20); !bytes.Equal(got, want) {
		t.Fatal("follower's first segment differs from the leader's")
	}

	// Conf changes after the boundary, and the checkpoints taken with
	// them: the boundary snapshot still has the configuration at the
	// boundary, on the leader and on a replica restarted from its latest
	// checkpoint.
	leader.confTo(3, &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}})
	leader.confTo(3, &pb.ConfState{Voters: []uint64{1, 2, 3, 4}})
	leader.confTo(3, &pb.ConfState{Voters: []uint64{2, 3, 4}})
	_, cs, ok = lm.BoundarySnapshot()
	if !ok || !slices.Equal(cs.GetVoters(), []uint64{1, 2, 3}) {
		t.Fatalf("after conf changes the boundary snapshot has %v (ok %v), want voters 1, 2, 3", cs, ok)
	}
	cp := mustSnapshot(t, lm)
	if err := lm.Close(); err != nil {
		t.Fatal(err)
	}
	again := newReplica(t, lm.o.Dir)
	if err := again.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(lm.appliedIndex), Term: new(uint64(3))}}); err != nil {
		t.Fatal(err)
	}
	if c, ok := again.m.confAt(b); !ok || !slices.Equal(c.GetVoters(), []uint64{1, 2, 3}) {
		t.Fatalf("restored from a checkpoint, the configuration at the boundary is %v (known %v), want voters 1, 2, 3", c, ok)
	}
	if c, ok := again.m.confAt(lm.appliedIndex); !ok || !slices.Equal(c.GetVoters(), []uint64{2, 3, 4}) {
		t.Fatalf("restored from a checkpoint, the latest configuration is %v (known %v), want voters 2, 3, 4", c, ok)
	}
}

// TestBoundaryAfterRestart: a replica that restarts from a checkpoint
// taken before a retention move finds the log start already moved (the
// segments below the move were released, the checkpoint being durable); it
// learns the boundary again when it replays the move, from the move itself.
func TestBoundaryAfterRestart(t *testing.T) {
	dir := t.TempDir()
	r := newReplica(t, dir)
	for range 3 {
		r.confChange(1)
	}
	seqs, epochs := map[int64]int32{}, map[int64]int16{}
	r.empty(1)
	r.write(1, seqs, epochs, 10, -1)
	cp, index := mustSnapshot(t, r.m), r.m.appliedIndex
	r.retain(1, 3000)
	r.write(1, seqs, epochs, 2, -1)
	b, term, ok := r.m.Boundary()
	if !ok {
		t.Fatal("no boundary after the move")
	}
	if err := r.m.log.ReleaseSegments(index); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}

	again := newReplica(t, dir)
	if err := again.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}}); err != nil {
		t.Fatal(err)
	}
	if again.m.log.LogStart() == 0 {
		t.Fatal("the log start did not survive the restart: the test shows nothing")
	}
	for _, e := range r.wal[index:] {
		again.step(e)
	}
	if b2, term2, ok2 := again.m.Boundary(); !ok2 || b2 != b || term2 != term {
		t.Fatalf("after the restart the boundary is %d term %d (known %v), want %d term %d", b2, term2, ok2, b, term)
	}
}

// TestColdLogFromStartAfterRestart: a replica restarted from a checkpoint,
// whose log was never trimmed, still serves its log from raft index 1 (the
// bootstrap conf changes and the first leader's empty entry included), so
// that a replica added by a reassignment, which starts empty, catches up
// with appends instead of a snapshot that would skip the log before it.
func TestColdLogFromStartAfterRestart(t *testing.T) {
	dir := t.TempDir()
	r := newReplica(t, dir)
	for range 3 {
		r.confChange(1)
	}
	seqs, epochs := map[int64]int32{}, map[int64]int16{}
	r.empty(1)
	r.write(1, seqs, epochs, 5, -1)
	cp, index := mustSnapshot(t, r.m), r.m.appliedIndex
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}

	again := newReplica(t, dir)
	if err := again.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}}); err != nil {
		t.Fatal(err)
	}
	if f := again.m.FirstIndex(); f != 1 {
		t.Fatalf("after the restart the cold log starts at raft index %d, want 1", f)
	}
	for i := uint64(1); i <= index; i++ {
		e, err := again.m.Entry(i)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if want := r.wal[i-1]; e.GetTerm() != want.GetTerm() || e.GetType() != want.GetType() || !bytes.Equal(e.GetData(), want.GetData()) {
			t.Fatalf("entry %d differs from the one applied", i)
		}
	}
}
