package storage

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
)

// syncLog records, per WAL file, whether each commit's fsync was an
// fdatasync.
type syncLog struct {
	mu       sync.Mutex
	dataOnly map[string][]bool
}

func logSyncs(w *WAL) *syncLog {
	l := &syncLog{dataOnly: make(map[string][]bool)}
	w.syncFile = func(f *os.File, dataOnly bool) error {
		l.mu.Lock()
		name := filepath.Base(f.Name())
		l.dataOnly[name] = append(l.dataOnly[name], dataOnly)
		l.mu.Unlock()
		return fsyncFile(f, dataOnly)
	}
	return l
}

func (l *syncLog) take(file string) []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	got := l.dataOnly[file]
	delete(l.dataOnly, file)
	return got
}

// waitPrepared waits until the next file is prepared.
func waitPrepared(t *testing.T, w *WAL) {
	t.Helper()
	if w.next == nil {
		t.Fatal("no next file is being prepared")
	}
	<-w.next.done
	if w.next.err != nil {
		t.Fatal(w.next.err)
	}
}

// copyWAL copies the WAL files in dir as they are on the OS's side now,
// which is what a crash of the process would leave.
func copyWAL(t *testing.T, dir string) string {
	t.Helper()
	to := t.TempDir()
	for _, name := range walFiles(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

func TestPreallocatedFile(t *testing.T) {
	const segmentBytes = 64 << 10
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	opts.SegmentBytes = segmentBytes
	w, _ := mustOpen(t, dir, opts)
	syncs := logSyncs(w)
	first, second := segmentName(1), segmentName(2)

	// The first file of a new WAL grows with its records: fsync.
	mustUpdate(t, w, 1, ents(1, 1, 1), hardState(1, 1, 0), nil)
	mustCommit(t, w)
	if got := syncs.take(first); !slices.Equal(got, []bool{false}) {
		t.Fatalf("fdatasync per commit of %s: %v, want [false]", first, got)
	}
	waitPrepared(t, w)
	if err := w.roll(); err != nil {
		t.Fatal(err)
	}
	// The old file is cut to its records, the new one has its full size
	// already, and commits into it are fdatasyncs.
	if size := fileSize(t, filepath.Join(dir, first)); size != w.segs[0].size {
		t.Fatalf("%s is %d bytes on disk after the roll, its records %d", first, size, w.segs[0].size)
	}
	if size := fileSize(t, filepath.Join(dir, second)); size != segmentBytes {
		t.Fatalf("%s is %d bytes on disk, want %d preallocated", second, size, segmentBytes)
	}
	for i := uint64(2); i <= 4; i++ {
		mustUpdate(t, w, 1, ents(i, i, 1), hardState(1, 1, i-1), nil)
		mustCommit(t, w)
	}
	if got := syncs.take(second); !slices.Equal(got, []bool{true, true, true}) {
		t.Fatalf("fdatasync per commit of %s: %v, want [true true true]", second, got)
	}

	// A crash now leaves the zeros after the records: recovery takes
	// them for the clean end, not for damage, and cuts them off.
	crashed := copyWAL(t, dir)
	var logs bytes.Buffer
	copts := opts
	copts.Log = zerolog.New(&logs)
	cw, got := mustOpen(t, crashed, copts)
	want := map[uint64]*GroupState{1: {HardState: hardState(1, 1, 3), Entries: ents(1, 4, 1)}}
	requireStates(t, want, got)
	requireTruncationLogged(t, logs.String(), "info", second, w.current().size)
	if size := fileSize(t, filepath.Join(crashed, second)); size != w.current().size {
		t.Fatalf("%s is %d bytes after recovery, want %d", second, size, w.current().size)
	}
	mustClose(t, cw)

	// A record that takes the file past its preallocated size changes the
	// size: fsync again.
	big := ent(5, 1)
	big.Data = make([]byte, segmentBytes)
	mustUpdate(t, w, 1, []*pb.Entry{big}, nil, nil)
	mustCommit(t, w)
	if got := syncs.take(second); !slices.Equal(got, []bool{false}) {
		t.Fatalf("fdatasync per commit of %s past its preallocated size: %v, want [false]", second, got)
	}
	mustClose(t, w)
	if _, err := os.Stat(filepath.Join(dir, preparedName)); !os.IsNotExist(err) {
		t.Fatalf("%s after Close: %v, want it removed", preparedName, err)
	}
	want[1].Entries = append(want[1].Entries, big)
	_, got = mustOpen(t, dir, opts)
	requireStates(t, want, got)
}

// TestPreallocatedFileClosed checks that Close cuts the zeros off the last
// file, so that a clean restart finds nothing to repair.
func TestPreallocatedFileClosed(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.Fsync = true
	opts.SegmentBytes = 64 << 10
	w, _ := mustOpen(t, dir, opts)
	mustUpdate(t, w, 1, ents(1, 2, 1), hardState(1, 1, 0), nil)
	mustCommit(t, w)
	waitPrepared(t, w)
	if err := w.roll(); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, w, 1, ents(3, 3, 1), hardState(1, 1, 2), nil)
	size := w.current().size
	mustClose(t, w)
	if got := fileSize(t, filepath.Join(dir, segmentName(2))); got != size {
		t.Fatalf("%s is %d bytes after Close, want %d", segmentName(2), got, size)
	}
	var logs bytes.Buffer
	opts.Log = zerolog.New(&logs)
	w, got := mustOpen(t, dir, opts)
	defer mustClose(t, w)
	requireStates(t, map[uint64]*GroupState{1: {HardState: hardState(1, 1, 2), Entries: ents(1, 3, 1)}}, got)
	if bytes.Contains(logs.Bytes(), []byte("cut")) || bytes.Contains(logs.Bytes(), []byte(`"warn"`)) {
		t.Fatalf("a clean restart repaired something:\n%s", logs.String())
	}
}
