package storage

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fsyncGate holds back every fsync of a WAL file until the test lets it go.
// The fsyncs themselves are real: the gate only decides when they start, or
// fails one instead.
type fsyncGate struct {
	entered chan string // the name of the file an fsync is about to sync
	release chan error  // nil: go on with the fsync; an error: fail with it
	opened  chan struct{}
}

// gateFsyncs puts a gate in front of w's file fsyncs. Call it before the
// storage actor starts, and register open as a cleanup after it, so that a
// failing test never leaves an fsync held.
func gateFsyncs(w *WAL) *fsyncGate {
	g := &fsyncGate{entered: make(chan string, 16), release: make(chan error), opened: make(chan struct{})}
	w.syncFile = func(f *os.File) error {
		select {
		case g.entered <- filepath.Base(f.Name()):
		case <-g.opened:
			return f.Sync()
		}
		select {
		case err := <-g.release:
			if err != nil {
				return err
			}
		case <-g.opened:
		}
		return f.Sync()
	}
	return g
}

// open lets every fsync through from now on.
func (g *fsyncGate) open() { close(g.opened) }

// next waits for the next fsync to start and returns the name of its file.
func (g *fsyncGate) next(t *testing.T) string {
	t.Helper()
	select {
	case name := <-g.entered:
		return name
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for an fsync to start")
		return ""
	}
}

// let ends the fsync being held: with err instead of syncing when err is
// not nil.
func (g *fsyncGate) let(t *testing.T, err error) {
	t.Helper()
	select {
	case g.release <- err:
	case <-time.After(5 * time.Second):
		t.Fatal("timed out: no fsync is being held")
	}
}

// idle fails if an fsync starts within a short grace period.
func (g *fsyncGate) idle(t *testing.T) {
	t.Helper()
	select {
	case name := <-g.entered:
		t.Fatalf("an fsync of %s started", name)
	case <-time.After(100 * time.Millisecond):
	}
}

// noAnswer fails if the collector receives anything but a
// CheckpointRequest within a short grace period. An answer that should not
// exist would have been sent by a handler that the test has already seen
// finish, so the grace period only covers delivery.
func noAnswer(t *testing.T, h *harness) {
	t.Helper()
	grace := time.After(100 * time.Millisecond)
	for {
		select {
		case m := <-h.ch:
			if _, ok := m.(*CheckpointRequest); !ok {
				t.Fatalf("unexpected %T %+v", m, m)
			}
		case <-grace:
			return
		}
	}
}

// waitFor polls cond until it holds, for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recordBytes is the size of the WAL record of p.
func recordBytes(t *testing.T, p *Persist) int64 {
	t.Helper()
	rec, err := appendRecord(nil, recordUpdate, p.Group, p.Entries, p.HardState, p.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(rec))
}

// answered takes the next answers, skipping CheckpointRequests, and checks
// their sequence numbers and that each failed or not as wanted.
func answered(t *testing.T, h *harness, failed bool, seqs ...uint64) {
	t.Helper()
	for _, seq := range seqs {
		var got *Persisted
		for got == nil {
			switch m := next[any](t, h).(type) {
			case *Persisted:
				got = m
			case *CheckpointRequest:
			default:
				t.Fatalf("want Persisted, got %T %+v", m, m)
			}
		}
		if got.Seq != seq || (got.Err != nil) != failed {
			t.Fatalf("answer %+v, want seq %d (failed: %v)", got, seq, failed)
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestPipelinedCommit: while one fsync runs, the next Persists are written
// to the OS but answered only once an fsync that started after they were
// written has ended; a Persist that needs no fsync is not answered ahead of
// an earlier one that does.
func TestPipelinedCommit(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	opts.Metrics = NewMetrics(prometheus.NewRegistry())
	w, _ := mustOpen(t, dir, opts)
	g := gateFsyncs(w)
	h := startActor(t, w)
	t.Cleanup(g.open)
	file := filepath.Join(dir, segmentName(1))

	a := &Persist{Group: 1, Seq: 1, Entries: ents(1, 3, 1), HardState: hardState(1, 1, 0), Sync: true, ReplyTo: h.reply}
	b := &Persist{Group: 2, Seq: 2, Entries: ents(1, 2, 1), HardState: hardState(1, 2, 0), Sync: true, ReplyTo: h.reply}
	c := &Persist{Group: 3, Seq: 3, HardState: hardState(1, 0, 0), ReplyTo: h.reply} // asks for no fsync
	h.sys.Root.Send(h.storage, a)
	if got := g.next(t); got != segmentName(1) {
		t.Fatalf("fsync of %s, want %s", got, segmentName(1))
	}
	if got, want := fileSize(t, file), recordBytes(t, a); got != want {
		t.Fatalf("the fsync started with %d bytes in the file, want A's %d", got, want)
	}

	// The fsync of A is held: B and C are still written...
	h.sys.Root.Send(h.storage, b)
	h.sys.Root.Send(h.storage, c)
	want := recordBytes(t, a) + recordBytes(t, b) + recordBytes(t, c)
	waitFor(t, "B and C written during A's fsync", func() bool { return fileSize(t, file) == want })
	// ...but no one is answered, and no second fsync starts.
	noAnswer(t, h)
	g.idle(t)

	g.let(t, nil)
	answered(t, h, false, 1)
	// B's fsync starts when A's ends; C waits behind B.
	if got := g.next(t); got != segmentName(1) {
		t.Fatalf("fsync of %s, want %s", got, segmentName(1))
	}
	noAnswer(t, h)
	g.let(t, nil)
	answered(t, h, false, 2, 3)
	g.idle(t)

	if got := w.Fsyncs(); got != 2 {
		t.Errorf("%d fsyncs, want 2", got)
	}
	// A's fsync made one record durable, B's two (B and C).
	if hist := histogram(t, opts.Metrics.GroupCommitRecords); hist.GetSampleCount() != 2 || hist.GetSampleSum() != 3 {
		t.Errorf("fsyncs observed: %d holding %v records, want 2 holding 3", hist.GetSampleCount(), hist.GetSampleSum())
	}
	h.stop(t)
	_, states := mustOpen(t, dir, testOptions())
	requireStates(t, map[uint64]*GroupState{
		1: {HardState: a.HardState, Entries: a.Entries},
		2: {HardState: b.HardState, Entries: b.Entries},
		3: {HardState: c.HardState},
	}, states)
}

// TestRollDuringFsync: a roll to a new file while the old file's fsync is in
// flight waits for that fsync, then syncs the old file to its end, and only
// then creates the new file; if the fsync in flight fails, the roll fails
// and so does every Persist not yet answered.
func TestRollDuringFsync(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error // of the fsync in flight
	}{
		{"fsync succeeds", nil},
		{"fsync fails", errors.New("injected fsync failure")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			a := &Persist{Group: 1, Seq: 1, Entries: ents(1, 3, 1), HardState: hardState(1, 1, 0), Sync: true}
			c := &Persist{Group: 3, Seq: 2, HardState: hardState(1, 0, 0)} // asks for no fsync
			b := &Persist{Group: 2, Seq: 3, Entries: ents(1, 2, 1), Sync: true}
			opts := testOptions()
			opts.Fsync = true
			// A and C fill the first file, so B rolls to the second.
			opts.SegmentBytes = recordBytes(t, a) + recordBytes(t, c)
			w, _ := mustOpen(t, dir, opts)
			g := gateFsyncs(w)
			h := startActor(t, w)
			t.Cleanup(g.open)
			first, second := filepath.Join(dir, segmentName(1)), filepath.Join(dir, segmentName(2))
			for _, p := range []*Persist{a, b, c} {
				p.ReplyTo = h.reply
			}

			h.sys.Root.Send(h.storage, a)
			if got := g.next(t); got != segmentName(1) {
				t.Fatalf("fsync of %s, want %s", got, segmentName(1))
			}
			// C goes into the first file while A's fsync is held.
			h.sys.Root.Send(h.storage, c)
			waitFor(t, "C written", func() bool { return fileSize(t, first) == opts.SegmentBytes })
			// B rolls: the roll waits for A's fsync.
			h.sys.Root.Send(h.storage, b)
			noAnswer(t, h)
			g.idle(t)
			if exists(second) {
				t.Fatalf("%s created while the fsync of %s was in flight", second, first)
			}

			g.let(t, tt.err)
			if tt.err != nil {
				// Nothing is answered as written: A's fsync failed, C
				// and B come after it.
				answered(t, h, true, 1, 2, 3)
				g.idle(t)
				if exists(second) {
					t.Fatalf("%s created after the fsync of %s failed", second, first)
				}
				h.sys.Root.Send(h.storage, &Persist{Group: 4, Seq: 4, HardState: hardState(1, 0, 0), ReplyTo: h.reply})
				answered(t, h, true, 4)
				h.sys.Root.Send(h.storage, &Flush{ReplyTo: h.reply})
				if got := next[*Flushed](t, h); got.Err == nil {
					t.Fatal("Flush succeeded after a failed fsync")
				}
				h.stop(t)
				return
			}

			// The roll syncs the rest of the first file (C) before the
			// second exists.
			if got := g.next(t); got != segmentName(1) {
				t.Fatalf("the roll's fsync is of %s, want %s", got, segmentName(1))
			}
			if exists(second) {
				t.Fatalf("%s created before %s was synced to its end", second, first)
			}
			noAnswer(t, h)
			g.let(t, nil)
			answered(t, h, false, 1, 2)
			if got := g.next(t); got != segmentName(2) {
				t.Fatalf("fsync of %s, want %s", got, segmentName(2))
			}
			noAnswer(t, h)
			g.let(t, nil)
			answered(t, h, false, 3)
			h.stop(t)
			if got := walFiles(t, dir); !slices.Equal(got, []string{segmentName(1), segmentName(2)}) {
				t.Fatalf("files %v", got)
			}
			_, states := mustOpen(t, dir, testOptions())
			requireStates(t, map[uint64]*GroupState{
				1: {HardState: a.HardState, Entries: a.Entries},
				2: {Entries: b.Entries},
				3: {HardState: c.HardState},
			}, states)
		})
	}
}

// TestStopDuringFsync: stopping the actor with an fsync in flight waits for
// it, then writes and fsyncs everything and answers every Persist before the
// WAL is closed.
func TestStopDuringFsync(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	w, _ := mustOpen(t, dir, opts)
	g := gateFsyncs(w)
	h := startActor(t, w)
	t.Cleanup(g.open)
	file := filepath.Join(dir, segmentName(1))

	a := &Persist{Group: 1, Seq: 1, Entries: ents(1, 3, 1), Sync: true, ReplyTo: h.reply}
	b := &Persist{Group: 2, Seq: 2, Entries: ents(1, 2, 1), Sync: true, ReplyTo: h.reply}
	h.sys.Root.Send(h.storage, a)
	g.next(t)
	h.sys.Root.Send(h.storage, b)
	waitFor(t, "B written", func() bool { return fileSize(t, file) == recordBytes(t, a)+recordBytes(t, b) })

	stopped := make(chan error, 1)
	go func() { stopped <- h.sys.Root.PoisonFuture(h.storage).Wait() }()
	noAnswer(t, h)
	g.idle(t) // stopping waits for A's fsync before it syncs B
	g.let(t, nil)
	// Stopping syncs B on the actor's goroutine once A's fsync is done.
	if got := g.next(t); got != segmentName(1) {
		t.Fatalf("fsync of %s, want %s", got, segmentName(1))
	}
	select {
	case err := <-stopped:
		t.Fatalf("stopped (%v) with B not yet synced", err)
	default:
	}
	noAnswer(t, h)
	g.let(t, nil)
	answered(t, h, false, 1, 2)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the storage actor did not stop")
	}
	_, states := mustOpen(t, dir, testOptions())
	requireStates(t, map[uint64]*GroupState{1: {Entries: a.Entries}, 2: {Entries: b.Entries}}, states)
}

// TestRestartDuringFsync: a panic with an fsync in flight restarts the actor
// after the fsync ended and everything appended was synced and answered;
// the restarted actor pipelines as before.
func TestRestartDuringFsync(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	w, _ := mustOpen(t, dir, opts)
	g := gateFsyncs(w)
	h := startActor(t, w)
	t.Cleanup(g.open)
	file := filepath.Join(dir, segmentName(1))

	a := &Persist{Group: 1, Seq: 1, Entries: ents(1, 3, 1), Sync: true, ReplyTo: h.reply}
	b := &Persist{Group: 2, Seq: 2, Entries: ents(1, 2, 1), Sync: true, ReplyTo: h.reply}
	c := &Persist{Group: 1, Seq: 3, Entries: ents(4, 4, 1), Sync: true, ReplyTo: h.reply}
	h.sys.Root.Send(h.storage, a)
	g.next(t)
	h.sys.Root.Send(h.storage, b)
	waitFor(t, "B written", func() bool { return fileSize(t, file) == recordBytes(t, a)+recordBytes(t, b) })
	h.sys.Root.Send(h.storage, (*Persist)(nil)) // a bug: the actor panics
	noAnswer(t, h)
	g.idle(t) // restarting waits for A's fsync before it syncs B
	g.let(t, nil)
	// Restarting syncs B once A's fsync is done.
	if got := g.next(t); got != segmentName(1) {
		t.Fatalf("fsync of %s, want %s", got, segmentName(1))
	}
	noAnswer(t, h)
	g.let(t, nil)
	answered(t, h, false, 1, 2)

	h.sys.Root.Send(h.storage, c)
	g.next(t)
	noAnswer(t, h)
	g.let(t, nil)
	answered(t, h, false, 3)
	h.stop(t)
	_, states := mustOpen(t, dir, testOptions())
	requireStates(t, map[uint64]*GroupState{1: {Entries: ents(1, 4, 1)}, 2: {Entries: b.Entries}}, states)
}

// TestFsyncErrorFailsWaiters: when the fsync in flight fails, every Persist
// not yet answered fails, those written during the fsync included, and the
// WAL refuses everything after; no fsync starts again.
func TestFsyncErrorFailsWaiters(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	opts.Metrics = NewMetrics(prometheus.NewRegistry())
	w, _ := mustOpen(t, dir, opts)
	g := gateFsyncs(w)
	h := startActor(t, w)
	t.Cleanup(g.open)
	file := filepath.Join(dir, segmentName(1))

	a := &Persist{Group: 1, Seq: 1, Entries: ents(1, 3, 1), Sync: true, ReplyTo: h.reply}
	b := &Persist{Group: 2, Seq: 2, Entries: ents(1, 2, 1), Sync: true, ReplyTo: h.reply}
	c := &Persist{Group: 3, Seq: 3, HardState: hardState(1, 0, 0), ReplyTo: h.reply} // asks for no fsync
	h.sys.Root.Send(h.storage, a)
	g.next(t)
	h.sys.Root.Send(h.storage, b)
	h.sys.Root.Send(h.storage, c)
	waitFor(t, "B and C written", func() bool {
		return fileSize(t, file) == recordBytes(t, a)+recordBytes(t, b)+recordBytes(t, c)
	})
	g.let(t, errors.New("injected fsync failure"))
	answered(t, h, true, 1, 2, 3)
	h.sys.Root.Send(h.storage, &Persist{Group: 1, Seq: 4, Entries: ents(4, 4, 1), Sync: true, ReplyTo: h.reply})
	answered(t, h, true, 4)
	g.idle(t)
	if got := counter(t, opts.Metrics.WriteErrors); got != 1 {
		t.Errorf("write errors %v, want 1", got)
	}
	h.stop(t)
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
