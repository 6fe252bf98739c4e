package storage

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// rolledWAL opens a WAL in dir whose group 1 has entries 1..files-1 in
// files 1..files-1, one entry a file, and whose current file is files. A
// checkpoint of group 1 at index files-1 then covers every file but the
// current one.
func rolledWAL(t *testing.T, dir string, opts Options, files int) *WAL {
	t.Helper()
	w, _ := mustOpen(t, dir, opts)
	for i := 1; i < files; i++ {
		mustUpdate(t, w, 1, ents(uint64(i), uint64(i), 1), hardState(1, 1, uint64(i)), nil)
		mustCommit(t, w)
		if err := w.roll(); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(walFiles(t, dir)); got != files {
		t.Fatalf("%d files, want %d", got, files)
	}
	return w
}

// TestPersistDoesNotWaitForUnlink holds the removal of a released file and
// checks that the storage actor goes on answering Persists meanwhile.
func TestPersistDoesNotWaitForUnlink(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	w := rolledWAL(t, dir, opts, 4)
	entered, unblock := make(chan string, 10), make(chan struct{})
	w.removeFile = func(path string) error {
		entered <- filepath.Base(path)
		<-unblock
		return os.Remove(path)
	}
	h := startActor(t, w)

	h.sys.Root.Send(h.storage, &Checkpoint{Group: 1, Snapshot: snapshot(3, 1)})
	select {
	case name := <-entered:
		if name != segmentName(1) {
			t.Fatalf("removing %s first, want %s", name, segmentName(1))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the covered files were never removed")
	}
	// The unlink is stuck; a Persist must still be written, fsynced and
	// answered.
	h.sys.Root.Send(h.storage, &Persist{Group: 2, Seq: 1, Entries: ents(1, 1, 1), Sync: true, ReplyTo: h.reply})
	if p := next[*Persisted](t, h); p.Err != nil || p.Seq != 1 {
		t.Fatalf("answer %+v", p)
	}
	close(unblock)
	h.flush(t) // waits for the removals
	if got := walFiles(t, dir); !slices.Equal(got, []string{segmentName(4)}) {
		t.Fatalf("files %v after the removals, want only %s", got, segmentName(4))
	}
	h.stop(t)
}

// TestRemovalFailure checks that a file the remover fails to remove stays,
// with every file after it (a gap would read as lost data), that it is
// tried again (and fails again), and that recovery copes with released files a crash (here:
// removals failing to the end) left on disk.
func TestRemovalFailure(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	w := rolledWAL(t, dir, opts, 4)
	w.removeFile = func(path string) error {
		if filepath.Base(path) == segmentName(2) {
			return errors.New("injected")
		}
		return os.Remove(path)
	}
	if err := w.AppendCheckpoint(1, snapshot(3, 1)); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, w)
	if n := w.deleteCovered(); n != 3 {
		t.Fatalf("released %d files, want 3", n)
	}
	if err := w.waitRemoved(); err == nil {
		t.Fatal("waitRemoved: no error for a file that could not be removed")
	}
	want := []string{segmentName(2), segmentName(3), segmentName(4)}
	if got := walFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v: file 1 removed, the rest kept in order", got, want)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close: no error although files 2 and 3 are left")
	}
	// The storage actor closes its WAL as it stops; the broker asks again
	// afterwards to learn whether the stop was clean.
	if err := w.Close(); err == nil {
		t.Fatal("second Close: no error, the first one failed")
	}

	// What a crash between release and removal leaves: recovery replays
	// the released files and releases them again.
	wantStates := map[uint64]*GroupState{1: {HardState: hardState(1, 1, 3), Snapshot: snapshot(3, 1)}}
	w, got := mustOpen(t, dir, opts)
	requireStates(t, wantStates, got)
	if n := removeCovered(t, w); n != 2 {
		t.Fatalf("released %d files after recovery, want 2", n)
	}
	if got := walFiles(t, dir); !slices.Equal(got, []string{segmentName(4)}) {
		t.Fatalf("files %v, want only %s", got, segmentName(4))
	}
	mustClose(t, w)
	_, got = mustOpen(t, dir, opts)
	requireStates(t, wantStates, got)
}
