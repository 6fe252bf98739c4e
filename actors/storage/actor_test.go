package storage

import (
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestActorRoundTrip(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	w, states := mustOpen(t, dir, opts)
	if len(states) != 0 {
		t.Fatalf("a new WAL has %d groups", len(states))
	}
	h := startActor(t, w)

	persists := []*Persist{
		{Group: 1, Entries: ents(1, 5, 1), HardState: hardState(1, 1, 0), Sync: true},
		{Group: 2, Entries: ents(1, 3, 1), Sync: true},
		{Group: 1, Entries: ents(6, 8, 1), HardState: hardState(1, 1, 5), Sync: true},
		{Group: 3, Entries: ents(1, 4, 1), HardState: hardState(1, 2, 2), Sync: true},
		{Group: 2, Entries: ents(3, 4, 2), HardState: hardState(2, 2, 2), Sync: true},
		{Group: 1, HardState: hardState(1, 1, 8)}, // commit only: no fsync needed
		{Group: 3, Snapshot: snapshot(10, 2), Entries: ents(11, 12, 2), HardState: hardState(2, 3, 10), Sync: true},
		{Group: 4, HardState: hardState(5, 0, 0), Sync: true},
		{Group: 5}, // nothing to write, still answered
	}
	for i, p := range persists {
		p.Incarnation = 7
		p.Seq = uint64(i + 1)
		p.ReplyTo = h.reply
		h.sys.Root.Send(h.storage, p)
	}
	for _, p := range persists {
		got := next[*Persisted](t, h)
		if got.Group != p.Group || got.Incarnation != p.Incarnation || got.Seq != p.Seq || got.Err != nil {
			t.Fatalf("answer %+v, want group %d incarnation %d seq %d without error", got, p.Group, p.Incarnation, p.Seq)
		}
	}
	h.sys.Root.Send(h.storage, &Checkpoint{Group: 1, Snapshot: snapshot(6, 1)})
	h.stop(t)

	want := map[uint64]*GroupState{
		1: {HardState: hardState(1, 1, 8), Snapshot: snapshot(6, 1), Entries: ents(7, 8, 1)},
		2: {HardState: hardState(2, 2, 2), Entries: concat(ents(1, 2, 1), ents(3, 4, 2))},
		3: {HardState: hardState(2, 3, 10), Snapshot: snapshot(10, 2), Entries: ents(11, 12, 2), Replaced: ents(1, 4, 1)},
		4: {HardState: hardState(5, 0, 0)},
	}
	_, got := mustOpen(t, dir, opts)
	requireStates(t, want, got)
}

// suspend keeps the storage actor from taking messages until the returned
// function is called, so that a test can fill its mailbox first.
func suspend(h *harness) (resume func()) {
	proc, _ := h.sys.Actors.ProcessRegistry.Get(h.storage)
	proc.SendSystemMessage(h.storage, &actor.SuspendMailbox{})
	return func() { proc.SendSystemMessage(h.storage, &actor.ResumeMailbox{}) }
}

func histogram(t *testing.T, hist prometheus.Histogram) *dto.Histogram {
	t.Helper()
	var m dto.Metric
	if err := hist.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram()
}

func TestGroupCommit(t *testing.T) {
	const n = 200
	tests := []struct {
		name       string
		fsync      bool
		sync       func(i int) bool
		wantFsyncs uint64
	}{
		{"all ask for sync", true, func(int) bool { return true }, 1},
		{"one asks for sync", true, func(i int) bool { return i == n/2 }, 1},
		{"none asks for sync", true, func(int) bool { return false }, 0},
		{"fsync off", false, func(int) bool { return true }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.Fsync = tt.fsync
			opts.Metrics = NewMetrics(prometheus.NewRegistry())
			w, _ := mustOpen(t, t.TempDir(), opts)
			h := startActor(t, w)
			h.flush(t) // the actor is running: Started is handled
			before := w.Fsyncs()

			resume := suspend(h)
			for i := range n {
				h.sys.Root.Send(h.storage, &Persist{
					Group: uint64(i%10 + 1), Seq: uint64(i), Entries: ents(uint64(i/10+1), uint64(i/10+1), 1),
					Sync: tt.sync(i), ReplyTo: h.reply,
				})
			}
			resume()
			for i := range n {
				if got := next[*Persisted](t, h); got.Seq != uint64(i) || got.Err != nil {
					t.Fatalf("answer %d: %+v", i, got)
				}
			}
			if got := w.Fsyncs() - before; got != tt.wantFsyncs {
				t.Errorf("%d fsyncs for %d persists, want %d", got, n, tt.wantFsyncs)
			}
			// One fsync for the whole mailbox, holding every record.
			hist := histogram(t, opts.Metrics.GroupCommitRecords)
			if want := float64(tt.wantFsyncs * n); hist.GetSampleCount() != tt.wantFsyncs || hist.GetSampleSum() != want {
				t.Errorf("fsyncs observed: %d holding %v records, want %d holding %v",
					hist.GetSampleCount(), hist.GetSampleSum(), tt.wantFsyncs, want)
			}
			h.stop(t)
		})
	}
}

func TestActorWriteErrorFailsPersists(t *testing.T) {
	w, _ := mustOpen(t, t.TempDir(), testOptions())
	// A file closed under the WAL makes the next write fail.
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	h := startActor(t, w)
	for seq := uint64(1); seq <= 2; seq++ {
		h.sys.Root.Send(h.storage, &Persist{Group: 1, Seq: seq, Entries: ents(seq, seq, 1), Sync: true, ReplyTo: h.reply})
		if got := next[*Persisted](t, h); got.Seq != seq || got.Err == nil {
			t.Fatalf("answer %+v, want seq %d with an error", got, seq)
		}
	}
	h.sys.Root.Send(h.storage, &Flush{ReplyTo: h.reply})
	if got := next[*Flushed](t, h); got.Err == nil {
		t.Fatal("Flush succeeded on a failed WAL")
	}
	h.stop(t)
}

func TestFileDeletion(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	opts.SegmentBytes = 2 << 10
	opts.BudgetBytes = 4 << 10
	w, _ := mustOpen(t, dir, opts)
	h := startActor(t, w)

	// Group 2 writes once, in the first file; group 1 writes enough to roll
	// several files.
	h.sys.Root.Send(h.storage, &Persist{Group: 2, Entries: ents(1, 1, 1), HardState: hardState(1, 2, 0), Sync: true, ReplyTo: h.reply})
	next[*Persisted](t, h)
	const last = 200
	var requests []uint64
	for i := uint64(1); i <= last; i++ {
		h.sys.Root.Send(h.storage, &Persist{Group: 1, Seq: i, Entries: ents(i, i, 1), HardState: hardState(1, 1, i-1), Sync: true, ReplyTo: h.reply})
		// Waiting for each answer makes each Persist its own commit,
		// the worst case for asking too often.
		for {
			var m any
			select {
			case m = <-h.ch:
			case <-time.After(5 * time.Second):
				t.Fatalf("no answer to persist %d", i)
			}
			if r, ok := m.(*CheckpointRequest); ok {
				requests = append(requests, r.Group)
				continue
			}
			if p := m.(*Persisted); p.Err != nil || p.Seq != i {
				t.Fatalf("answer %+v", p)
			}
			break
		}
	}
	files := walFiles(t, dir)
	if len(files) < 4 {
		t.Fatalf("only %d files; the test needs several rolls", len(files))
	}
	perGroup := map[uint64]int{}
	for _, g := range requests {
		perGroup[g]++
	}
	if perGroup[1] == 0 || perGroup[2] == 0 {
		t.Fatalf("CheckpointRequests %v: both groups hold back the oldest file and should be asked", perGroup)
	}
	if rolls := len(files) - 1; perGroup[1] > rolls || perGroup[2] > rolls {
		t.Errorf("requests %v for %d rolls: more than one per group per roll", perGroup, rolls)
	}

	// Group 1 checkpoints past everything; group 2, with a record in the
	// first file, still holds every file back.
	h.sys.Root.Send(h.storage, &Checkpoint{Group: 1, Snapshot: snapshot(last-10, 1)})
	h.flush(t)
	if got := walFiles(t, dir); len(got) != len(files) {
		t.Fatalf("files deleted while group 2 holds the first one: %v -> %v", files, got)
	}
	h.sys.Root.Send(h.storage, &Checkpoint{Group: 2, Snapshot: snapshot(1, 1)})
	h.flush(t)
	remaining := walFiles(t, dir)
	// Every file but the current is covered, except those with group 1's
	// entries above last-10.
	if len(remaining) >= len(files) || remaining[len(remaining)-1] != files[len(files)-1] {
		t.Fatalf("files %v -> %v: the covered ones should be gone, the current kept", files, remaining)
	}
	if remaining[0] == files[0] {
		t.Fatalf("the oldest file %s survived", files[0])
	}
	h.stop(t)

	want := map[uint64]*GroupState{
		1: {HardState: hardState(1, 1, last-1), Snapshot: snapshot(last-10, 1), Entries: ents(last-9, last, 1)},
		2: {HardState: hardState(1, 2, 0), Snapshot: snapshot(1, 1)},
	}
	w, got := mustOpen(t, dir, opts)
	requireStates(t, want, got)

	// The bookkeeping survives recovery: a checkpoint after reopening
	// releases the files written before it.
	h = startActor(t, w)
	h.sys.Root.Send(h.storage, &Checkpoint{Group: 1, Snapshot: snapshot(last, 1)})
	h.flush(t)
	if got := walFiles(t, dir); len(got) != 1 || got[0] != remaining[len(remaining)-1] {
		t.Fatalf("after the last checkpoint: files %v, want only %s", got, remaining[len(remaining)-1])
	}
	h.stop(t)
	want[1] = &GroupState{HardState: hardState(1, 1, last-1), Snapshot: snapshot(last, 1)}
	_, got = mustOpen(t, dir, opts)
	requireStates(t, want, got)
}

// TestRetentionBookkeeping checks the deletion rule on the WAL alone, file
// by file.
func TestRetentionBookkeeping(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	w, _ := mustOpen(t, dir, opts)
	defer w.Close()
	roll := func() {
		t.Helper()
		if err := w.roll(); err != nil {
			t.Fatal(err)
		}
	}
	mustUpdate(t, w, 1, ents(1, 10, 1), nil, nil) // file 1
	mustUpdate(t, w, 2, nil, hardState(1, 0, 0), nil)
	// A checkpoint in the file itself does not release it: deleting the
	// file would delete the checkpoint too.
	if err := w.AppendCheckpoint(1, snapshot(10, 1)); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, w)
	roll()
	mustUpdate(t, w, 1, ents(11, 20, 1), nil, nil) // file 2
	roll()                                         // file 3 is current

	steps := []struct {
		group, index uint64
		wantFiles    int
		wantHolding  []uint64 // the oldest file, after deletion
	}{
		{1, 5, 3, []uint64{1, 2}}, // in a later file, but below group 1's highest index in file 1
		{1, 10, 3, []uint64{2}},   // group 1 releases file 1; group 2 has no checkpoint
		{2, 0, 2, []uint64{1}},    // file 1 goes; file 2 has group 1 up to 20
		{1, 20, 1, nil},           // file 2 goes; file 3 is current and stays
		{1, 30, 1, nil},           // nothing left to delete
	}
	for i, s := range steps {
		if err := w.AppendCheckpoint(s.group, snapshot(s.index, 1)); err != nil {
			t.Fatal(err)
		}
		// Not durable yet: nothing may go.
		if n := w.deleteCovered(); n != 0 {
			t.Fatalf("step %d: deleted %d files for a checkpoint not yet committed", i, n)
		}
		mustCommit(t, w)
		removeCovered(t, w)
		if got := len(walFiles(t, dir)); got != s.wantFiles || len(w.segs) != s.wantFiles {
			t.Errorf("step %d: %d files (%d tracked), want %d", i, got, len(w.segs), s.wantFiles)
		}
		if holding := w.holdingBack(); !slices.Equal(holding, s.wantHolding) {
			t.Errorf("step %d: holding back %v, want %v", i, holding, s.wantHolding)
		}
	}
}
