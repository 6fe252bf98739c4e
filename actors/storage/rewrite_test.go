package storage

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	pb "go.etcd.io/raft/v3/raftpb"
)

// TestRewriteReleasesOlderFilesOnceDurable: group 1's entries 6..10 never
// commit, so its checkpoints stay at 5 and file 1, which holds them, stays.
// A rewrite of 6..10 in a later file lets a checkpoint at 5 release file 1,
// but only a checkpoint after the rewrite, and only once it is durable:
// until then file 1 is what recovery has (the group's earlier checkpoint
// at 5 must not release it). Recovery after the rewrite, with or without
// file 1, returns the entries once.
func TestRewriteReleasesOlderFilesOnceDurable(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	w, _ := mustOpen(t, dir, opts)
	mustUpdate(t, w, 1, ents(1, 10, 1), hardState(1, 1, 5), nil)
	mustCommit(t, w)
	if err := w.roll(); err != nil {
		t.Fatal(err)
	}
	if err := w.AppendCheckpoint(1, snapshot(5, 1)); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, w)
	if err := w.roll(); err != nil {
		t.Fatal(err)
	}
	if n := removeCovered(t, w); n != 0 {
		t.Fatalf("released %d files before the rewrite", n)
	}
	if err := w.AppendRewrite(1, ents(6, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.flush(); err != nil { // written, not durable
		t.Fatal(err)
	}
	if n := removeCovered(t, w); n != 0 {
		t.Fatalf("released %d files on the strength of a rewrite not yet durable", n)
	}
	mustCommit(t, w)
	if n := removeCovered(t, w); n != 0 {
		t.Fatalf("released %d files on the strength of a rewrite no checkpoint followed", n)
	}
	if err := w.AppendCheckpoint(1, snapshot(5, 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	if n := removeCovered(t, w); n != 0 {
		t.Fatalf("released %d files before the checkpoint after the rewrite was durable", n)
	}
	mustCommit(t, w)
	if n := removeCovered(t, w); n != 2 {
		t.Fatalf("released %d files after the checkpoint after the rewrite became durable, want files 1 and 2; held back by %v", n, w.holdingBack())
	}
	mustClose(t, w)
	w, states := mustOpen(t, dir, opts)
	want := &GroupState{HardState: hardState(1, 1, 5), Snapshot: snapshot(5, 1), Entries: ents(6, 10, 1)}
	requireState(t, 1, want, states[1])
	// The rewritten record still holds its file back: only a checkpoint
	// past 10 (or another rewrite) releases it.
	if err := w.AppendCheckpoint(1, snapshot(5, 1)); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, w)
	if err := w.roll(); err != nil {
		t.Fatal(err)
	}
	removeCovered(t, w)
	mustClose(t, w)
	_, states = mustOpen(t, dir, opts)
	requireState(t, 1, want, states[1])
}

// TestRewriteReplayIsIdempotent: a crash after the rewrite and before the
// checkpoint leaves both copies of the entries; recovery returns them once,
// with what came after them.
func TestRewriteReplayIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	w, _ := mustOpen(t, dir, opts)
	mustUpdate(t, w, 1, ents(1, 10, 1), hardState(1, 1, 5), nil)
	mustCommit(t, w)
	if err := w.roll(); err != nil {
		t.Fatal(err)
	}
	if err := w.AppendRewrite(1, ents(6, 10, 1)); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, w, 1, ents(11, 12, 1), hardState(1, 1, 5), nil)
	mustCommit(t, w)
	mustClose(t, w)
	w, states := mustOpen(t, dir, opts)
	requireState(t, 1, &GroupState{HardState: hardState(1, 1, 5), Entries: ents(1, 12, 1)}, states[1])
	mustClose(t, w)
}

// TestUncommittedEntriesDoNotPinTheWAL: group 1 is a replica whose last
// entries (6..10) never commit (its group lost quorum): its checkpoints stay
// at its applied index, 5. Asked again for the same file, it rewrites 6..10
// before its checkpoint, as a raft group does. Group 2 is healthy and
// checkpoints whenever asked. The WAL stays near its budget, and recovery
// returns group 1's entries.
func TestUncommittedEntriesDoNotPinTheWAL(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	opts.SegmentBytes = 64 << 10
	opts.BudgetBytes = 256 << 10
	opts.Metrics = NewMetrics(nil)
	w, _ := mustOpen(t, dir, opts)
	h := startActor(t, w)
	seq := uint64(1)
	h.sys.Root.Send(h.storage, &Persist{Group: 1, Seq: seq, Entries: ents(1, 10, 1), HardState: hardState(1, 1, 5), Sync: true, ReplyTo: h.reply})
	big := make([]byte, 8<<10)
	idx := uint64(0)
	rewrites := 0
	for round := 0; round < 400; round++ {
		idx++
		seq++
		e := ent(idx, 1)
		e.Data = big
		h.sys.Root.Send(h.storage, &Persist{Group: 2, Seq: seq, Entries: []*pb.Entry{e}, HardState: hardState(1, 1, idx), Sync: true, ReplyTo: h.reply})
		for done := false; !done; {
			select {
			case m := <-h.ch:
				switch m := m.(type) {
				case *CheckpointRequest:
					at := idx
					if m.Group == 1 {
						at = 5
						if m.Index != 10 {
							t.Fatalf("group 1 asked with index %d, want 10", m.Index)
						}
						if m.Rewrite {
							rewrites++
							h.sys.Root.Send(h.storage, &Rewrite{Group: 1, Entries: ents(6, 10, 1)})
						}
					}
					h.sys.Root.Send(h.storage, &Checkpoint{Group: m.Group, Snapshot: snapshot(at, 1)})
				case *Persisted:
					if m.Err != nil {
						t.Fatal(m.Err)
					}
					if m.Group == 2 && m.Seq == seq {
						done = true
					}
				}
			case <-time.After(5 * time.Second):
				t.Fatal("timeout")
			}
		}
	}
	h.flush(t)
	files := walFiles(t, dir)
	t.Logf("%d WAL files (%d KiB) with a budget of %d KiB; group 1 rewrote its entries %d times",
		len(files), int64(len(files))*opts.SegmentBytes>>10, opts.BudgetBytes>>10, rewrites)
	if int64(len(files))*opts.SegmentBytes > 2*opts.BudgetBytes {
		t.Fatalf("WAL grew to %d files, far past its budget: group 1's uncommitted entries hold back every file", len(files))
	}
	if rewrites == 0 {
		t.Fatal("group 1 was never asked to rewrite")
	}
	if n := gauge(t, opts.Metrics.StuckGroups); n != 0 {
		t.Fatalf("%v stuck groups, want 0", n)
	}
	h.stop(t)
	w, states := mustOpen(t, dir, opts)
	requireState(t, 1, &GroupState{HardState: hardState(1, 1, 5), Snapshot: snapshot(5, 1), Entries: ents(6, 10, 1)}, states[1])
	mustClose(t, w)
}

// TestStuckGroupIsCounted: a group that never answers the checkpoint
// requests (a halted one) holds back every file; once it has held the file
// over a few rolls and for stuckFor it is counted as stuck, and no longer
// once a checkpoint releases its file. Rolls in quick succession (a flood
// of writes with small files) are not enough.
func TestStuckGroupIsCounted(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentBytes = 16 << 10
	opts.BudgetBytes = 1 << 30
	opts.Metrics = NewMetrics(nil)
	var clock atomic.Int64 // seconds since the Unix epoch
	clock.Store(1000)
	opts.now = func() time.Time { return time.Unix(clock.Load(), 0) }
	w, _ := mustOpen(t, dir, opts)
	h := startActor(t, w)
	h.sys.Root.Send(h.storage, &Persist{Group: 1, Seq: 1, Entries: ents(1, 10, 1), HardState: hardState(1, 1, 10), ReplyTo: h.reply})
	big := make([]byte, 4<<10)
	var asked []bool // the Rewrite flag of group 1's requests
	idx := uint64(0)
	// write has group 2 write n entries of 4 KiB (4 to a file) and
	// checkpoint past them whenever asked.
	write := func(n int) {
		for range n {
			idx++
			e := ent(idx, 1)
			e.Data = big
			h.sys.Root.Send(h.storage, &Persist{Group: 2, Seq: idx + 1, Entries: []*pb.Entry{e}, ReplyTo: h.reply})
			for done := false; !done; {
				switch m := next[any](t, h).(type) {
				case *CheckpointRequest:
					if m.Group == 1 {
						asked = append(asked, m.Rewrite)
						continue
					}
					h.sys.Root.Send(h.storage, &Checkpoint{Group: 2, Snapshot: snapshot(idx, 1)})
				case *Persisted:
					done = m.Group == 2 && m.Seq == idx+1
				}
			}
		}
		h.flush(t)
	}
	write(4 * (stuckRolls + 2))
	if len(asked) < stuckRolls || asked[0] || !slices.Contains(asked, true) {
		t.Fatalf("group 1's requests asked to rewrite %v: want a first one without, then with", asked)
	}
	if n := gauge(t, opts.Metrics.StuckGroups); n != 0 {
		t.Fatalf("%v stuck groups after %d rolls within a second, want 0", n, len(asked))
	}
	clock.Add(int64(stuckFor / time.Second))
	write(4) // one more roll
	if n := gauge(t, opts.Metrics.StuckGroups); n != 1 {
		t.Fatalf("%v stuck groups, want 1", n)
	}
	h.sys.Root.Send(h.storage, &Checkpoint{Group: 1, Snapshot: snapshot(10, 1)})
	h.flush(t)
	deadline := time.Now().Add(5 * time.Second)
	for gauge(t, opts.Metrics.StuckGroups) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("group 1 still counted as stuck after its checkpoint released its files")
		}
		time.Sleep(time.Millisecond)
	}
	h.stop(t)
}

func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
