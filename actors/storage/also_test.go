package storage

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedSyncer is a Persist's Also whose Sync waits for the test and returns
// what it is given.
type gatedSyncer struct {
	entered chan struct{}
	release chan error
	calls   atomic.Int32
}

func newGatedSyncer() *gatedSyncer {
	return &gatedSyncer{entered: make(chan struct{}, 16), release: make(chan error, 16)}
}

func (s *gatedSyncer) Sync() error {
	s.calls.Add(1)
	s.entered <- struct{}{}
	return <-s.release
}

func (s *gatedSyncer) started(t *testing.T) {
	t.Helper()
	select {
	case <-s.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for a Sync of Also to start")
	}
}

// TestAlsoSyncedWithTheWAL: a Persist with Also is answered only once the
// WAL's fsync and a Sync of its Also, run in the same group commit, have both
// ended; a failed Sync fails that Persist alone; a roll that waits for the
// job in flight does not lose its outcome; and with fsync off Also is not
// synced at all.
func TestAlsoSyncedWithTheWAL(t *testing.T) {
	opts := testOptions()
	opts.Fsync = true
	opts.SegmentBytes = 1 << 10
	w, _ := mustOpen(t, t.TempDir(), opts)
	g := gateFsyncs(w)
	h := startActor(t, w)
	var once sync.Once
	open := func() { once.Do(g.open) }
	t.Cleanup(open)
	a, b := newGatedSyncer(), newGatedSyncer()

	// Group 1 keeps its bodies in a, group 2 in b; group 3 has none.
	h.sys.Root.Send(h.storage, &Persist{Group: 1, Seq: 1, Entries: ents(1, 2, 1), Sync: true, Also: a, ReplyTo: h.reply})
	h.sys.Root.Send(h.storage, &Persist{Group: 2, Seq: 2, Entries: ents(1, 2, 1), Sync: true, Also: b, ReplyTo: h.reply})
	a.started(t)
	select {
	case <-b.entered: // one job syncs both: the actor had both Persists before it started it
		g.next(t)
		g.let(t, nil) // the WAL is durable; a and b are not
		noAnswer(t, h)
		a.release <- nil
		noAnswer(t, h) // b still syncs
		b.release <- errors.New("injected sync failure")
		answered(t, h, false, 1)
		answered(t, h, true, 2)
	case <-time.After(5 * time.Second):
		// The actor started a job for the first Persist before the
		// second came (a busy machine): b waits for the next job.
		g.next(t)
		g.let(t, nil) // the WAL is durable; a is not
		noAnswer(t, h)
		a.release <- nil
		answered(t, h, false, 1)
		b.started(t)
		g.next(t)
		g.let(t, nil)
		noAnswer(t, h) // b still syncs
		b.release <- errors.New("injected sync failure")
		answered(t, h, true, 2)
	}

	// Only the Also of Persists not covered yet are synced again.
	h.sys.Root.Send(h.storage, &Persist{Group: 3, Seq: 3, Entries: ents(1, 2, 1), Sync: true, ReplyTo: h.reply})
	g.next(t)
	g.let(t, nil)
	answered(t, h, false, 3)
	if n := a.calls.Load(); n != 1 {
		t.Fatalf("a synced %d times for one Persist", n)
	}

	// A job with Also in flight when a record rolls the file: the roll
	// waits for it, and its outcome still counts.
	h.sys.Root.Send(h.storage, &Persist{Group: 3, Seq: 4, Entries: ents(3, 40, 1), Sync: true, ReplyTo: h.reply})
	g.next(t)
	g.let(t, nil) // the file is now past SegmentBytes
	answered(t, h, false, 4)
	h.sys.Root.Send(h.storage, &Persist{Group: 1, Seq: 5, Entries: ents(3, 4, 1), Sync: true, Also: a, ReplyTo: h.reply})
	a.started(t)
	g.next(t)
	h.sys.Root.Send(h.storage, &Persist{Group: 3, Seq: 6, Entries: ents(40, 41, 1), Sync: true, ReplyTo: h.reply})
	noAnswer(t, h)
	a.release <- nil
	g.let(t, nil)
	open() // the roll's fsync of the old file, and the rest
	answered(t, h, false, 5, 6)
}

// TestAlsoNotSyncedWithoutFsync: with Options.Fsync off nothing is synced,
// Also included.
func TestAlsoNotSyncedWithoutFsync(t *testing.T) {
	w, _ := mustOpen(t, t.TempDir(), testOptions())
	h := startActor(t, w)
	a := newGatedSyncer()
	h.sys.Root.Send(h.storage, &Persist{Group: 1, Seq: 1, Entries: ents(1, 2, 1), Sync: true, Also: a, ReplyTo: h.reply})
	answered(t, h, false, 1)
	if n := a.calls.Load(); n != 0 {
		t.Fatalf("Also synced %d times with fsync off", n)
	}
}

// TestCheckpointedOnceDurable: a Checkpoint with a ReplyTo is answered with
// Checkpointed only once an fsync has made it durable.
func TestCheckpointedOnceDurable(t *testing.T) {
	opts := testOptions()
	opts.Fsync = true
	w, _ := mustOpen(t, t.TempDir(), opts)
	g := gateFsyncs(w)
	h := startActor(t, w)
	t.Cleanup(g.open)
	h.sys.Root.Send(h.storage, &Persist{Group: 1, Seq: 1, Entries: ents(1, 5, 1), Sync: true, ReplyTo: h.reply})
	g.next(t)
	g.let(t, nil)
	answered(t, h, false, 1)
	h.sys.Root.Send(h.storage, &Checkpoint{Group: 1, Snapshot: snapshot(3, 1), ReplyTo: h.reply})
	g.next(t)
	noAnswer(t, h)
	g.let(t, nil)
	if c := next[*Checkpointed](t, h); c.Group != 1 || c.Index != 3 {
		t.Fatalf("Checkpointed %+v, want group 1 index 3", c)
	}
}
