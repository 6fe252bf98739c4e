package partition

import (
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
