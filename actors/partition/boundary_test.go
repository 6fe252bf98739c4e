package partition

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// moveEntry is the log-start move to offset as the leader proposes it now,
// with the boundary it sees; the caller applies it at index.
func (r *replica) moveEntry(index, term uint64, offset int64) *pb.Entry {
	boundary, ok := r.m.boundaryAfter(offset)
	return &pb.Entry{Index: new(index), Term: new(term), Type: pb.EntryNormal.Enum(), Data: logStartEntry(offset, boundary, ok)}
}

// checkBoundary fails unless r knows the entry just below its cold log,
// whose term is the one in wal (the entries from index 1 on), and can
// describe it to a replica behind its log start.
func checkBoundary(t *testing.T, who string, r *replica, wal []*pb.Entry) {
	t.Helper()
	first := r.m.FirstIndex()
	if first == 0 {
		t.Fatalf("%s: the cold log serves nothing", who)
	}
	want := entryID{Index: first - 1}
	if want.Index > 0 {
		want.Term = wal[want.Index-1].GetTerm()
	}
	b, term, ok := r.m.Boundary()
	if !ok || b != want.Index || term != want.Term {
		t.Fatalf("%s: Boundary() = (%d, %d, %v), want (%d, %d, true): the cold log starts at %d", who, b, term, ok, want.Index, want.Term, first)
	}
	if _, _, ok := r.m.BoundarySnapshot(); !ok {
		t.Fatalf("%s: no boundary snapshot", who)
	}
}

// TestBoundaryAfterAMoveWithABatchInFlight: the leader proposes a
// log-start move to its high watermark (DeleteRecords(-1), or retention of
// everything) while a batch of its own sits there, not yet applied, and an
// entry without a batch separates that batch from the last applied one.
// The boundary the leader sees when it proposes the move is the last
// applied batch; when the move applies, the batch in flight is the log's
// first, and the boundary is the entry before it. The leader, a follower
// that applied the same entries, and a replica that replays the move after
// a restart from a checkpoint before it (the segments below the move
// released) must all know it: without it raft sends a replica behind the
// log start the latest snapshot, which skips every record from the log
// start up to that snapshot.
func TestBoundaryAfterAMoveWithABatchInFlight(t *testing.T) {
	tests := []struct {
		name string
		side func(r *replica) // applies the entry between the batches
	}{
		{"a new term's empty entry", func(r *replica) { r.empty(2) }},
		{"an earlier log-start move", func(r *replica) {
			start, end := r.m.log.LogStart(), r.m.log.LogEnd()
			r.step(r.moveEntry(r.next(), 1, start+(end-start)/2))
		}},
		{"a producer expiry", func(r *replica) { r.expire(1, 0) }},
		{"a conf change", func(r *replica) { r.confTo(1, &pb.ConfState{Voters: []uint64{1, 2, 3}}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			r := bootstrapped(t, dir)
			seqs, epochs := map[int64]int32{}, map[int64]int16{}
			r.write(1, seqs, epochs, 3, -1)
			lastBatch := r.m.appliedIndex
			tt.side(r)
			term := r.m.lastAppliedTerm
			// Checkpoints before the batch in flight and between it and
			// the move.
			cps := map[uint64][]byte{r.m.appliedIndex: mustSnapshot(t, r.m)}
			before := r.m.appliedIndex

			// The batch in flight at the high watermark, large enough to
			// start a segment of its own, and the move proposed to it.
			hw := r.m.log.LogEnd()
			inflight, _ := batchEntryAt(t, hw, r.next(), term, spec{records: 3, valueSize: 700})
			move := r.moveEntry(inflight.GetIndex()+1, term, hw)
			if _, proposed, _ := logStartBody(move.GetData()[1:]); proposed.Index != lastBatch {
				t.Fatalf("the leader proposed the boundary %d, want the last batch it applied, %d: the test shows nothing", proposed.Index, lastBatch)
			}
			r.step(inflight)
			cps[r.m.appliedIndex] = mustSnapshot(t, r.m)
			r.step(move)

			if got := r.m.log.LogStart(); got != hw {
				t.Fatalf("log start %d, want %d", got, hw)
			}
			if got := r.m.FirstIndex(); got != inflight.GetIndex() {
				t.Fatalf("the cold log starts at %d, want the batch at the log start, %d", got, inflight.GetIndex())
			}
			checkBoundary(t, "leader", r, r.wal)
			f := r.replay(t)
			checkBoundary(t, "follower", f, r.wal)
			if want, got := mustSnapshot(t, r.m), mustSnapshot(t, f.m); !bytes.Equal(want, got) {
				t.Fatalf("follower's checkpoint differs from the leader's:\n%s\n%s", got, want)
			}

			// A replica behind the log start (hw, checked above) installs
			// the boundary snapshot and then has the batch at the log start.
			checkBehind(t, "leader", r)

			// The restarts: a checkpoint before the move is durable, so the
			// segments the move retired are released.
			if err := r.m.log.ReleaseSegments(before); err != nil {
				t.Fatal(err)
			}
			if err := r.m.Close(); err != nil {
				t.Fatal(err)
			}
			files := dirFiles(t, dir)
			for index, cp := range cps {
				restoreDir(t, dir, files)
				again := newReplica(t, dir)
				if err := again.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(term)}}); err != nil {
					t.Fatal(err)
				}
				if got, was := again.m.log.LogStart(), decodeCheckpoint(t, cp).LogStart; got <= was {
					t.Fatalf("restarted from %d, the log starts at %d, the checkpoint's %d: the test shows nothing", index, got, was)
				}
				for _, e := range r.wal[index:] {
					again.step(e)
				}
				checkBoundary(t, fmt.Sprintf("restarted from %d", index), again, r.wal)
				if err := again.m.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestBoundaryAfterInstallingTheLatestSnapshot: a replica that installs a
// leader's latest checkpoint (its log then starts empty at the
// checkpoint's end) knows its own boundary, which is not the leader's:
// the checkpoint's last batch when entries without a batch follow it, else
// the snapshot's own entry, from the entry after it on. It can then send
// a replica behind it the boundary snapshot, not its own latest one.
func TestBoundaryAfterInstallingTheLatestSnapshot(t *testing.T) {
	tests := []struct {
		name string
		tail func(r *replica) // the last entries before the checkpoint
	}{
		{"a batch last", func(*replica) {}},
		{"entries without a batch last", func(r *replica) {
			r.empty(3)
			r.expire(3, 0)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leader := leaderWithRetention(t)
			tt.tail(leader)
			cp, index := mustSnapshot(t, leader.m), leader.m.appliedIndex
			term := leader.wal[index-1].GetTerm()

			f := newReplica(t, t.TempDir())
			f.confs = leader.confs
			if err := f.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(term)}}); err != nil {
				t.Fatal(err)
			}
			if f.m.log.LogStart() != leader.m.log.LogEnd() {
				t.Fatalf("the replica's log starts at %d, want the leader's end %d", f.m.log.LogStart(), leader.m.log.LogEnd())
			}
			for range 2 {
				leader.batch(3, spec{records: 2, valueSize: 100})
				for _, e := range leader.wal[f.m.appliedIndex:] {
					f.step(e)
				}
				checkBoundary(t, "replica", f, leader.wal)
			}
		})
	}
}

// TestBoundaryRandom runs random sequences of batches, entries without a
// batch, log-start moves applied some entries after the leader proposed
// them (to its high watermark or inside its log), checkpoints, releases
// of retired segments, restarts and actor restarts from the latest
// checkpoint, and checks
// after each step that the leader (restarted now and then) and a follower
// that applies every entry know the boundary below their cold logs and
// agree on it, and that a replica behind the log start that installs the
// boundary snapshot ends with the leader's log.
func TestBoundaryRandom(t *testing.T) {
	seeds := 8
	if testing.Short() {
		seeds = 2
	}
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 7))
		dir := t.TempDir()
		r := bootstrapped(t, dir)
		f := r.replay(t)
		term := uint64(1)
		var proposals [][]byte // log-start moves proposed, not yet applied
		type cp struct {
			index, term uint64
			data        []byte
		}
		var cps []cp
		step := func(e *pb.Entry) {
			r.step(e)
			f.step(e)
		}
		for i := range 120 {
			what := ""
			switch op := rng.IntN(100); {
			case op < 35:
				what = "batch"
				b := mkBatch(t, spec{records: 1 + rng.IntN(3), valueSize: 20 + rng.IntN(300)})
				SetBaseOffset(b, r.m.log.LogEnd())
				SetPartitionLeaderEpoch(b, int32(term))
				step(&pb.Entry{Index: new(r.next()), Term: new(term), Type: pb.EntryNormal.Enum(), Data: batchEntry(b)})
			case op < 40:
				what = "new term"
				term++
				step(&pb.Entry{Index: new(r.next()), Term: new(term), Type: pb.EntryNormal.Enum()})
			case op < 45:
				what = "producer expiry"
				step(&pb.Entry{Index: new(r.next()), Term: new(term), Type: pb.EntryNormal.Enum(), Data: expireProducersEntry(0)})
			case op < 60:
				what = "propose move"
				start, hw := r.m.log.LogStart(), r.m.log.LogEnd()
				if hw == start {
					continue
				}
				p := hw
				if rng.IntN(2) == 0 {
					p = start + 1 + rng.Int64N(hw-start)
				}
				boundary, ok := r.m.boundaryAfter(p)
				proposals = append(proposals, logStartEntry(p, boundary, ok))
			case op < 75:
				what = "apply move"
				if len(proposals) == 0 {
					continue
				}
				step(&pb.Entry{Index: new(r.next()), Term: new(term), Type: pb.EntryNormal.Enum(), Data: proposals[0]})
				proposals = proposals[1:]
			case op < 85:
				what = "checkpoint"
				cps = append(cps, cp{r.m.appliedIndex, r.m.lastAppliedTerm, mustSnapshot(t, r.m)})
			case op < 90:
				what = "release"
				if len(cps) > 0 {
					if err := r.m.log.ReleaseSegments(cps[len(cps)-1].index); err != nil {
						t.Fatal(err)
					}
				}
			case op < 94:
				what = "restart"
				if len(cps) == 0 {
					continue
				}
				last := cps[len(cps)-1]
				if err := r.m.Close(); err != nil {
					t.Fatal(err)
				}
				again := newReplica(t, dir)
				again.confs = r.confs
				again.wal = slices.Clone(r.wal[:last.index])
				if err := again.m.Restore(&pb.Snapshot{Data: last.data, Metadata: &pb.SnapshotMetadata{Index: new(last.index), Term: new(last.term)}}); err != nil {
					t.Fatal(err)
				}
				for _, e := range r.wal[last.index:] {
					again.step(e)
				}
				r = again
			case op < 97:
				// The group's actor restarts: the same Machine goes back to
				// the latest checkpoint and applies the entries after it
				// again, which its segments still hold.
				what = "actor restart"
				if len(cps) == 0 {
					continue
				}
				last := cps[len(cps)-1]
				if err := r.m.Restore(&pb.Snapshot{Data: last.data, Metadata: &pb.SnapshotMetadata{Index: new(last.index), Term: new(last.term)}}); err != nil {
					t.Fatal(err)
				}
				for _, e := range r.wal[last.index:] {
					r.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
				}
			default:
				what = "replica behind"
				if _, _, ok := r.m.BoundarySnapshot(); !ok {
					continue
				}
				checkBehind(t, fmt.Sprintf("seed %d step %d", seed, i), r)
			}
			who := fmt.Sprintf("seed %d step %d (%s)", seed, i, what)
			checkBoundary(t, who+" leader", r, r.wal)
			checkBoundary(t, who+" follower", f, r.wal)
			if r.m.FirstIndex() != f.m.FirstIndex() {
				t.Fatalf("%s: the leader's cold log starts at %d, the follower's at %d", who, r.m.FirstIndex(), f.m.FirstIndex())
			}
		}
	}
}

// TestBoundaryAfterRestartOnARefilledLog: a move to the high watermark
// with nothing in flight leaves the log empty, its boundary the last
// batch and the entries after it in the side log; batches then refill the
// log. A replica restarted from a checkpoint taken after that still knows
// its boundary: dropping the side entries below the first batch at the
// restore would leave it with a boundary that is no longer the entry below
// its cold log, and a replica behind its log start would be sent the
// latest snapshot.
func TestBoundaryAfterRestartOnARefilledLog(t *testing.T) {
	dir := t.TempDir()
	r := bootstrapped(t, dir)
	seqs, epochs := map[int64]int32{}, map[int64]int16{}
	r.write(1, seqs, epochs, 3, -1)
	r.step(r.moveEntry(r.next(), 1, r.m.log.LogEnd()))
	r.empty(2)
	r.batch(2, spec{records: 2, valueSize: 100})
	r.batch(2, spec{records: 2, valueSize: 100})
	checkBoundary(t, "before the restart", r, r.wal)
	cp, index := mustSnapshot(t, r.m), r.m.appliedIndex
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}
	again := newReplica(t, dir)
	if err := again.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(2))}}); err != nil {
		t.Fatal(err)
	}
	checkBoundary(t, "after the restart", again, r.wal)
	if again.m.FirstIndex() != r.m.FirstIndex() {
		t.Fatalf("after the restart the cold log starts at %d, before it at %d", again.m.FirstIndex(), r.m.FirstIndex())
	}
}

// firstBatchEnd is the offset just past the batch at r's log start.
func firstBatchEnd(t *testing.T, r *replica) int64 {
	t.Helper()
	b, _, err := r.m.log.EntryByRaftIndex(r.m.log.FirstRaftIndex())
	if err != nil {
		t.Fatal(err)
	}
	return decodeHeader(b).NextOffset()
}

// checkBehind installs r's boundary snapshot on a new replica, which then
// applies every entry r's cold log serves, and fails unless it ends with
// r's log.
func checkBehind(t *testing.T, who string, r *replica) {
	t.Helper()
	data, _, ok := r.m.BoundarySnapshot()
	if !ok {
		t.Fatalf("%s: no boundary snapshot", who)
	}
	b, term, _ := r.m.Boundary()
	behind := newReplica(t, t.TempDir())
	behind.confs = r.confs
	if err := behind.m.Restore(&pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(b), Term: new(term)}}); err != nil {
		t.Fatal(err)
	}
	for i := r.m.FirstIndex(); i <= r.m.appliedIndex; i++ {
		e, err := r.m.Entry(i)
		if err != nil {
			t.Fatal(err)
		}
		behind.step(e)
	}
	if behind.m.log.LogStart() != r.m.log.LogStart() || !bytes.Equal(readAll(t, behind.m.log), readAll(t, r.m.log)) {
		t.Fatalf("%s: a replica behind the log start has [%d, %d), the leader [%d, %d)", who,
			behind.m.log.LogStart(), behind.m.log.LogEnd(), r.m.log.LogStart(), r.m.log.LogEnd())
	}
	if err := behind.m.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBoundaryLegacyWayOut: states that older versions leave behind make
// a partition restart with its boundary unknown, and nothing it applies
// then teaches it (more batches, a move inside the first batch): the
// tiered storage withholds every snapshot from a replica behind its log
// start. A log-start move past the first batch (DeleteRecords) is the way
// out (docs/decisions.md): the boundary is then an entry the cold log
// holds, and a replica behind the log start catches up.
func TestBoundaryLegacyWayOut(t *testing.T) {
	tests := []struct {
		name string
		// restarted builds the state and returns the restarted replica
		// and the entries applied from index 1 on.
		restarted func(t *testing.T) (*replica, []*pb.Entry)
	}{
		{"a checkpoint main wrote after DeleteRecords(-1) with a batch in flight", func(t *testing.T) (*replica, []*pb.Entry) {
			dir := t.TempDir()
			r := bootstrapped(t, dir)
			seqs, epochs := map[int64]int32{}, map[int64]int16{}
			r.write(1, seqs, epochs, 3, -1)
			r.empty(2)
			hw := r.m.log.LogEnd()
			inflight, _ := batchEntryAt(t, hw, r.next(), 2, spec{records: 3, valueSize: 700})
			move := r.moveEntry(inflight.GetIndex()+1, 2, hw)
			r.step(inflight)
			r.step(move)
			r.batch(2, spec{records: 2, valueSize: 100})
			// main recorded no boundary at the move (the proposed one was
			// not below its cold log) and pruned the entry below it.
			cp := decodeCheckpoint(t, mustSnapshot(t, r.m))
			cp.Boundary = entryID{}
			data, err := json.Marshal(cp)
			if err != nil {
				t.Fatal(err)
			}
			index := r.m.appliedIndex
			if err := r.m.log.ReleaseSegments(index); err != nil {
				t.Fatal(err)
			}
			if err := r.m.Close(); err != nil {
				t.Fatal(err)
			}
			again := newReplica(t, dir)
			again.confs, again.wal = r.confs, slices.Clone(r.wal)
			if err := again.m.Restore(&pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(2)), ConfState: r.confs[3]}}); err != nil {
				t.Fatal(err)
			}
			return again, again.wal
		}},
		{"an 8-byte log-start move replayed after its segments were released", func(t *testing.T) (*replica, []*pb.Entry) {
			dir := t.TempDir()
			r := bootstrapped(t, dir)
			seqs, epochs := map[int64]int32{}, map[int64]int16{}
			r.write(1, seqs, epochs, 8, -1)
			cp, index := mustSnapshot(t, r.m), r.m.appliedIndex
			p := r.m.log.RetentionPoint(0, -1, 3000)
			if base, _, ok := r.m.log.BatchAt(p); !ok || base != p {
				t.Fatalf("retention point %d is not a batch base", p)
			}
			r.step(&pb.Entry{Index: new(r.next()), Term: new(uint64(1)), Type: pb.EntryNormal.Enum(), Data: logStartEntry(p, entryID{}, false)})
			// The storage answered Checkpointed for the checkpoint before
			// the move only once the move had applied.
			if err := r.m.log.ReleaseSegments(index); err != nil {
				t.Fatal(err)
			}
			if err := r.m.Close(); err != nil {
				t.Fatal(err)
			}
			again := newReplica(t, dir)
			again.confs, again.wal = r.confs, slices.Clone(r.wal[:index])
			if err := again.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(1)), ConfState: r.confs[3]}}); err != nil {
				t.Fatal(err)
			}
			for _, e := range r.wal[index:] {
				again.step(e)
			}
			return again, again.wal
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, wal := tt.restarted(t)
			unknown := func(who string) {
				t.Helper()
				if b, _, ok := r.m.Boundary(); ok {
					t.Fatalf("%s: the boundary %d is known: the test shows nothing", who, b)
				}
				if r.m.FirstIndex() == 0 {
					t.Fatalf("%s: the cold log serves nothing", who)
				}
			}
			unknown("restarted")
			r.empty(2)
			for range 3 {
				r.batch(2, spec{records: 2, valueSize: 100})
			}
			unknown("more batches")
			r.step(r.moveEntry(r.next(), 2, r.m.log.LogStart()+1))
			unknown("a move inside the first batch")

			r.step(r.moveEntry(r.next(), 2, firstBatchEnd(t, r)))
			checkBoundary(t, "a move past the first batch", r, wal)
			checkBehind(t, "a move past the first batch", r)
		})
	}
}

// TestBoundaryFromACheckpointWithoutConfs: a checkpoint written before the
// partition kept its configurations (90259c6) restores a known boundary.
// With no conf change between the boundary and the checkpoint, the
// configuration there is the snapshot's own, raft's at its index: the
// boundary snapshot can be sent, with the configuration it had, after the
// conf changes that follow the restore too (a reassignment's learner).
// With a conf change between them the configuration at the boundary is
// not known, and the boundary snapshot is withheld until a log-start move
// passes that conf change.
func TestBoundaryFromACheckpointWithoutConfs(t *testing.T) {
	v123 := &pb.ConfState{Voters: []uint64{1, 2, 3}}
	v123l5 := &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{5}}
	tests := []struct {
		name string
		// between applies what comes between the boundary and the checkpoint.
		between func(r *replica)
		known   bool
	}{
		{"batches only", func(r *replica) { r.batch(1, spec{records: 2, valueSize: 100}) }, true},
		{"entries without a batch", func(r *replica) {
			r.empty(2)
			r.expire(2, 0)
			r.batch(2, spec{records: 2, valueSize: 100})
		}, true},
		{"a conf change", func(r *replica) {
			r.confTo(1, v123l5)
			r.batch(1, spec{records: 2, valueSize: 100})
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			r := bootstrapped(t, dir)
			seqs, epochs := map[int64]int32{}, map[int64]int16{}
			r.write(1, seqs, epochs, 8, -1)
			r.retain(1, 3000)
			tt.between(r)
			checkBoundary(t, "before", r, r.wal)
			cp := decodeCheckpoint(t, mustSnapshot(t, r.m))
			cp.Confs = nil // as written before the configurations were kept
			data, err := json.Marshal(cp)
			if err != nil {
				t.Fatal(err)
			}
			index := r.m.appliedIndex
			now, _ := r.m.confAt(index)
			if err := r.m.Close(); err != nil {
				t.Fatal(err)
			}
			again := newReplica(t, dir)
			again.confs, again.wal = r.confs, slices.Clone(r.wal)
			if err := again.m.Restore(&pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(r.m.lastAppliedTerm), ConfState: now}}); err != nil {
				t.Fatal(err)
			}
			again.confTo(2, &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}) // the reassignment adds a learner
			again.batch(2, spec{records: 2, valueSize: 100})
			if !tt.known {
				if _, _, ok := again.m.BoundarySnapshot(); ok {
					t.Fatal("a boundary snapshot with a conf change between the boundary and the checkpoint: its configuration is a guess")
				}
				// The way out: a move past the conf change.
				again.step(again.moveEntry(again.next(), 2, again.m.log.LogEnd()))
			}
			checkBoundary(t, "restored", again, again.wal)
			b, _, _ := again.m.Boundary()
			want := v123
			if !tt.known {
				want = &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
			}
			if _, cs, _ := again.m.BoundarySnapshot(); !proto.Equal(cs, want) {
				t.Fatalf("the configuration at the boundary %d is %v, want %v", b, cs, want)
			}
			checkBehind(t, "restored", again)
		})
	}
}
