package partition

import (
	"bytes"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

// TestRetiredSegmentsAskForCheckpoint: a log-start move that retires
// segments, and a restart from a checkpoint whose log start retires them
// again, make the Machine ask for a checkpoint at its next Tick (and keep
// its ticks from sleeping until then): the storage would ask only once the
// WAL grows, and a broker that writes nothing more would keep the files.
func TestRetiredSegmentsAskForCheckpoint(t *testing.T) {
	dir := t.TempDir()
	r := bootstrapped(t, dir)
	seqs, epochs := map[int64]int32{}, map[int64]int16{}
	r.write(1, seqs, epochs, 10, -1)
	if r.m.releaseDue || !r.m.TicksCanWait() {
		t.Fatal("a checkpoint is due before anything was retired")
	}
	r.retain(1, 1000)
	if r.m.log.RetiredSegments() == 0 {
		t.Fatal("retention retired no segment; the test shows nothing")
	}
	if !r.m.releaseDue || r.m.TicksCanWait() {
		t.Fatal("a log-start move retired segments and no checkpoint is due")
	}

	// The checkpoint after the move is durable, but the broker stops
	// before the segments are released.
	cp, index := mustSnapshot(t, r.m), r.m.appliedIndex
	if err := r.m.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}
	again := newReplica(t, dir)
	if err := again.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}}); err != nil {
		t.Fatal(err)
	}
	if again.m.log.RetiredSegments() == 0 {
		t.Fatal("the restored checkpoint retired no segment")
	}
	if !again.m.releaseDue || again.m.TicksCanWait() {
		t.Fatal("restored with retired segments and no checkpoint is due")
	}
	before := countSegments(t, dir)
	if err := again.m.Release(index); err != nil {
		t.Fatal(err)
	}
	if n := countSegments(t, dir); n >= before {
		t.Fatalf("%d segments before Release of the restored checkpoint, %d after", before, n)
	}
}

// TestRetentionOfEverything: retention that takes the whole log, the
// active segment included (its move rolls it), then more batches: a
// restart from a checkpoint before the move, an actor restart to a
// snapshot before it, and a restart from a checkpoint after it with the
// old segments released all replay to the same state.
func TestRetentionOfEverything(t *testing.T) {
	for _, tc := range []struct {
		name string
		// released: the checkpoint after the move became durable and the
		// old segments went; otherwise the one before it is restored.
		released bool
		// actor: the group's actor restarts (no reopen, RewindLogStart).
		actor bool
	}{
		{"restart from a checkpoint before the move", false, false},
		{"actor restart to a snapshot before the move", false, true},
		{"restart from a checkpoint after the move, released", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := bootstrapped(t, dir)
			seqs, epochs := map[int64]int32{}, map[int64]int16{}
			r.write(1, seqs, epochs, 3, -1)
			cp, index := mustSnapshot(t, r.m), r.m.appliedIndex
			if err := r.m.Flush(); err != nil {
				t.Fatal(err)
			}
			after := len(r.wal)
			r.write(1, seqs, epochs, 3, -1)
			end := r.m.log.LogEnd()
			r.retain(1, 0)
			if r.m.log.LogStart() != end || r.m.log.WrittenEnd() != end {
				t.Fatalf("log [%d, %d) written to %d after retention of everything, want [%d, %d)",
					r.m.log.LogStart(), r.m.log.LogEnd(), r.m.log.WrittenEnd(), end, end)
			}
			if _, err := r.m.Entry(r.m.lastBatch.Index); err == nil {
				t.Fatal("the cold log still serves the last batch below the log start")
			}
			if tc.released {
				cp, index = mustSnapshot(t, r.m), r.m.appliedIndex
				if err := r.m.Flush(); err != nil {
					t.Fatal(err)
				}
				if err := r.m.Release(index); err != nil {
					t.Fatal(err)
				}
				if n := countSegments(t, dir); n != 1 {
					t.Fatalf("%d segments after the release, want the empty one", n)
				}
				after = len(r.wal)
			}
			r.write(1, seqs, epochs, 2, -1)
			want, wantLog := mustSnapshot(t, r.m), readAll(t, r.m.log)
			snap := &pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}}

			m := r.m
			wal := r.wal[after:]
			if !tc.actor {
				if err := r.m.Flush(); err != nil {
					t.Fatal(err)
				}
				if err := r.m.Close(); err != nil {
					t.Fatal(err)
				}
				m = newReplica(t, dir).m
			}
			if err := m.Restore(snap); err != nil {
				t.Fatal(err)
			}
			if !tc.actor {
				var err error
				if wal, err = m.Recover(walForm(t, wal)); err != nil {
					t.Fatal(err)
				}
			}
			for _, e := range wal {
				m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
			}
			if got := mustSnapshot(t, m); !bytes.Equal(got, want) {
				t.Fatalf("replayed state differs:\n%s\nwant\n%s", got, want)
			}
			if got := readAll(t, m.log); !bytes.Equal(got, wantLog) {
				t.Fatal("replayed batches differ")
			}
		})
	}
}

// TestRetentionOfEverythingOnAFollower: a follower that has already kept
// the entries after the move when it applies it cannot roll its active
// segment there; it still ends with the leader's log start, batches and
// state, only with other segment boundaries.
func TestRetentionOfEverythingOnAFollower(t *testing.T) {
	leader := bootstrapped(t, t.TempDir())
	seqs, epochs := map[int64]int32{}, map[int64]int16{}
	leader.write(1, seqs, epochs, 3, -1)
	from := len(leader.wal)
	leader.retain(1, 0)
	leader.write(1, seqs, epochs, 2, -1)

	follower := bootstrapped(t, t.TempDir())
	for _, e := range leader.wal[len(follower.wal):from] {
		follower.step(e)
	}
	ents := cloneEntries(leader.wal[from:])
	mustKeep(t, follower.m, ents)
	for _, e := range leader.wal[from:] {
		follower.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
	}
	if want, got := mustSnapshot(t, leader.m), mustSnapshot(t, follower.m); !bytes.Equal(got, want) {
		t.Fatalf("follower's state differs:\n%s\nwant\n%s", got, want)
	}
	if !bytes.Equal(readAll(t, follower.m.log), readAll(t, leader.m.log)) {
		t.Fatal("follower's batches differ from the leader's")
	}
	if l, f := leader.m.log.RetiredSegments(), follower.m.log.RetiredSegments(); l != f+1 {
		t.Fatalf("retired segments: leader %d, follower %d; want the follower's and the leader's rolled active one", l, f)
	}
}
