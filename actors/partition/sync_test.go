package partition

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// durable tracks what the Log's fsyncs made durable, so that a test can
// lose the rest as a power cut would: each file keeps the bytes it had when
// it was last synced, and a file created since the directory was last
// synced disappears. It is conservative: a size is taken before the fsync,
// so bytes appended during it count as lost.
type durable struct {
	dir   string
	mu    sync.Mutex
	size  map[string]int64 // per file: its size at its last fsync
	names map[string]bool  // the directory's entries at its last fsync
	fail  error            // returned by every fsync when set
}

// watchSyncs makes l's fsyncs go through a durable; what the directory
// holds now counts as durable (Open synced it).
func watchSyncs(t *testing.T, l *Log) *durable {
	t.Helper()
	d := &durable{dir: l.opts.Dir, size: map[string]int64{}, names: map[string]bool{}}
	for name, b := range dirFiles(t, d.dir) {
		d.size[name], d.names[name] = int64(len(b)), true
	}
	l.fsync = d.wrap(l.fsync)
	return d
}

// wrap returns fsync recording in d what it makes durable: a file's size,
// or a directory's names.
func (d *durable) wrap(fsync func(*os.File) error) func(*os.File) error {
	return func(f *os.File) error {
		info, err := f.Stat()
		if err != nil {
			return err
		}
		var names []string
		if info.IsDir() {
			des, err := os.ReadDir(d.dir)
			if err != nil {
				return err
			}
			for _, de := range des {
				names = append(names, de.Name())
			}
		}
		if err := fsync(f); err != nil {
			return err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.fail != nil {
			return d.fail
		}
		if info.IsDir() {
			clear(d.names)
			for _, name := range names {
				d.names[name] = true
			}
		} else {
			name := filepath.Base(f.Name())
			d.size[name] = info.Size()
			// storage.ReplaceFile renames the file it synced over the one it
			// replaces: that one's bytes are durable too.
			if target, ok := strings.CutSuffix(name, ".tmp"); ok {
				d.size[target] = info.Size()
			}
		}
		return nil
	}
}

// lose abandons l (crash) and drops from its directory everything that was
// not made durable. The state file is left alone: it is written apart.
func (d *durable) lose(t *testing.T, l *Log) {
	t.Helper()
	crash(l)
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, b := range dirFiles(t, d.dir) {
		path := filepath.Join(d.dir, name)
		switch {
		case name == stateFileName || strings.HasSuffix(name, ".tmp"):
		case !d.names[name]:
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		case int64(len(b)) > d.size[name]:
			if err := os.Truncate(path, d.size[name]); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestSyncThenCrash(t *testing.T) {
	for i, tc := range []struct {
		name string
		// before appends and syncs what must survive; after appends what
		// must not (the model must not record it).
		before func(t *testing.T, l *Log, m *model, rng *rand.Rand)
		after  func(t *testing.T, l *Log, m model, rng *rand.Rand)
	}{
		{"the active segment", func(t *testing.T, l *Log, m *model, rng *rand.Rand) {
			m.fill(t, l, rng, 5)
			writeTail(t, l, m, rng)
		}, func(t *testing.T, l *Log, m model, rng *rand.Rand) {
			writeTail(t, l, &m, rng)
		}},
		{"across rolls", func(t *testing.T, l *Log, m *model, rng *rand.Rand) {
			m.fill(t, l, rng, 20)
			for segmentsAbove(l, l.LogEnd()) < 2 {
				writeTail(t, l, m, rng)
			}
		}, func(t *testing.T, l *Log, m model, rng *rand.Rand) {
			for base := l.act.seg.base; l.act.seg.base == base; {
				writeTail(t, l, &m, rng)
			}
		}},
		{"sealed by two syncs", func(t *testing.T, l *Log, m *model, rng *rand.Rand) {
			m.fill(t, l, rng, 20)
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			for segmentsAbove(l, l.LogEnd()) < 1 {
				writeTail(t, l, m, rng)
			}
		}, func(t *testing.T, l *Log, m model, rng *rand.Rand) {
			for range 3 {
				writeTail(t, l, &m, rng)
			}
		}},
		{"after a flush", func(t *testing.T, l *Log, m *model, rng *rand.Rand) {
			m.fill(t, l, rng, 30)
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			m.checkpoint = m.raft
			m.fill(t, l, rng, 30)
			writeTail(t, l, m, rng)
		}, func(t *testing.T, l *Log, m model, rng *rand.Rand) {
			for base := l.act.seg.base; l.act.seg.base == base; {
				writeTail(t, l, &m, rng)
			}
			writeTail(t, l, &m, rng)
		}},
		{"after a raft truncation", func(t *testing.T, l *Log, m *model, rng *rand.Rand) {
			m.fill(t, l, rng, 20)
			for segmentsAbove(l, l.LogEnd()) < 2 {
				writeTail(t, l, m, rng)
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			k := m.committedBelow(l.LogEnd()) + 1
			if err := l.TruncateRaft(m.batches[k].raft); err != nil {
				t.Fatal(err)
			}
			m.raft = m.batches[k].raft - 1
			m.truncate(m.batches[k].h.BaseOffset)
			m.term++
			for segmentsAbove(l, l.LogEnd()) < 2 {
				writeTail(t, l, m, rng)
			}
		}, func(t *testing.T, l *Log, m model, rng *rand.Rand) {
			writeTail(t, l, &m, rng)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t, dir)
			l := mustOpen(t, opts)
			d := watchSyncs(t, l)
			rng := rand.New(rand.NewPCG(uint64(i), 17))
			var m model
			tc.before(t, l, &m, rng)
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			tc.after(t, l, m, rng)
			d.lose(t, l)

			// Sync left the Raft index files to Flush; the WAL's
			// references, synced with it, stand in for them.
			opts.kept = m.kept(m.checkpoint)
			l = mustOpen(t, opts)
			defer l.Close()
			if l.LogEnd() != l.WrittenEnd() {
				t.Fatalf("reopened with LogEnd %d, WrittenEnd %d", l.LogEnd(), l.WrittenEnd())
			}
			checkTail(t, l, &m, m.end())
			if got := l.LastRaftIndex(); got != m.raft {
				t.Fatalf("LastRaftIndex %d, want %d", got, m.raft)
			}
		})
	}
}

func TestSyncFailureIsSticky(t *testing.T) {
	l := mustOpen(t, testOptions(t, t.TempDir()))
	d := watchSyncs(t, l)
	var m model
	m.fill(t, l, rand.New(rand.NewPCG(1, 1)), 3)
	injected := errors.New("injected fsync failure")
	d.fail = injected
	err := l.Sync()
	wantErr(t, err, ErrLogFailed)
	wantErr(t, err, injected)
	d.fail = nil
	wantErr(t, l.Sync(), ErrLogFailed)
	b := mkBatch(t, spec{})
	SetBaseOffset(b, l.WrittenEnd())
	SetPartitionLeaderEpoch(b, 1)
	wantErr(t, l.Append(b, m.raft+1, 1), ErrLogFailed)
	wantErr(t, l.TruncateRaft(1), ErrLogFailed)
	_, err = l.Commit(m.raft)
	wantErr(t, err, ErrLogFailed)
	wantErr(t, l.Flush(), ErrLogFailed)
	wantErr(t, l.Close(), ErrLogFailed)
	wantErr(t, l.Sync(), ErrLogFailed)
}

func TestSyncAfterClose(t *testing.T) {
	l := mustOpen(t, testOptions(t, t.TempDir()))
	var m model
	m.fill(t, l, rand.New(rand.NewPCG(1, 1)), 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatalf("Sync after a clean Close: %v", err)
	}

	l = mustOpen(t, testOptions(t, t.TempDir()))
	d := watchSyncs(t, l)
	d.fail = errors.New("injected fsync failure")
	wantErr(t, l.Close(), ErrLogFailed)
	wantErr(t, l.Sync(), ErrLogFailed)
}

// TestSyncFiles checks that Sync syncs the .log files of the active segment
// and of every segment sealed since the last Sync, and the directory after
// a roll, and nothing else: the Raft index files wait for Flush.
func TestSyncFiles(t *testing.T) {
	l := mustOpen(t, testOptions(t, t.TempDir()))
	defer l.Close()
	var mu sync.Mutex
	var synced []string
	fsync := l.fsync
	l.fsync = func(f *os.File) error {
		mu.Lock()
		synced = append(synced, filepath.Base(f.Name()))
		mu.Unlock()
		return fsync(f)
	}
	sync := func() []string {
		t.Helper()
		synced = nil
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(synced)
		return synced
	}
	rng := rand.New(rand.NewPCG(2, 2))
	var m model
	m.fill(t, l, rng, 3)
	name := func(base int64, suffix string) string { return segmentFileName(base, suffix) }
	if got, want := sync(), []string{name(0, logSuffix)}; !slices.Equal(got, want) {
		t.Fatalf("synced %v, want %v", got, want)
	}
	for len(l.sealed) < 2 {
		writeTail(t, l, &m, rng)
	}
	want := []string{filepath.Base(l.opts.Dir)}
	for _, base := range []int64{0, l.sealed[1].seg.base, l.act.seg.base} {
		want = append(want, name(base, logSuffix))
	}
	slices.Sort(want)
	if got := sync(); !slices.Equal(got, want) {
		t.Fatalf("synced %v, want %v", got, want)
	}
	want = []string{name(l.act.seg.base, logSuffix)}
	if got := sync(); !slices.Equal(got, want) {
		t.Fatalf("synced %v, want %v", got, want)
	}
}

// TestSyncFilesBoundsParallelism: every file is synced exactly once, at
// most maxParallelSyncs at a time, and every failure is reported.
func TestSyncFilesBoundsParallelism(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 3, maxParallelSyncs, 3*maxParallelSyncs + 1} {
		files := make([]*os.File, n)
		for i := range files {
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%d-%d", n, i)))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			files[i] = f
		}
		var mu sync.Mutex
		synced := map[string]int{}
		running, peak := 0, 0
		l := &Log{fsync: func(f *os.File) error {
			mu.Lock()
			synced[f.Name()]++
			running++
			peak = max(peak, running)
			mu.Unlock()
			time.Sleep(time.Millisecond) // let the others start
			mu.Lock()
			running--
			mu.Unlock()
			if strings.HasSuffix(f.Name(), "-0") {
				return errors.New("disk gone")
			}
			return nil
		}}
		err := l.syncFiles(files)
		if len(synced) != n {
			t.Errorf("%d files: %d synced", n, len(synced))
		}
		for name, k := range synced {
			if k != 1 {
				t.Errorf("%d files: %s synced %d times", n, name, k)
			}
		}
		if peak > maxParallelSyncs {
			t.Errorf("%d files: %d fsyncs at once, bound %d", n, peak, maxParallelSyncs)
		}
		if (n > 0) != (err != nil) {
			t.Errorf("%d files: error %v, want one only when the first file is synced", n, err)
		}
	}
}

// TestOpenTakesLostRaftIndexEntriesFromKept checks how Open uses the WAL's
// references for batches whose Raft index entries a crash took: a batch is
// taken only when a reference matches it exactly, and the log is cut at
// the first one that has none.
func TestOpenTakesLostRaftIndexEntriesFromKept(t *testing.T) {
	for _, tc := range []struct {
		name string
		// edit changes the references of the batches after the flush
		// (from is the first of them); want is how many of those batches
		// the reopened log keeps.
		edit func(kept map[int64]keptIndex, m *model, from int)
		want func(m *model, from int) int
	}{
		{"every batch referenced", func(map[int64]keptIndex, *model, int) {},
			func(m *model, from int) int { return len(m.batches) - from }},
		{"no references", func(kept map[int64]keptIndex, _ *model, _ int) { clear(kept) },
			func(*model, int) int { return 0 }},
		{"the third one unreferenced", func(kept map[int64]keptIndex, m *model, from int) {
			delete(kept, m.batches[from+2].h.BaseOffset)
		}, func(*model, int) int { return 2 }},
		{"the third one with another CRC", func(kept map[int64]keptIndex, m *model, from int) {
			k := kept[m.batches[from+2].h.BaseOffset]
			k.ref.crc++
			kept[m.batches[from+2].h.BaseOffset] = k
		}, func(*model, int) int { return 2 }},
		{"the third one of another term", func(kept map[int64]keptIndex, m *model, from int) {
			k := kept[m.batches[from+2].h.BaseOffset]
			k.term++
			kept[m.batches[from+2].h.BaseOffset] = k
		}, func(*model, int) int { return 2 }},
		{"the third one with an index out of order", func(kept map[int64]keptIndex, m *model, from int) {
			k := kept[m.batches[from+2].h.BaseOffset]
			k.index = m.batches[from+1].raft
			kept[m.batches[from+2].h.BaseOffset] = k
		}, func(*model, int) int { return 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t, dir)
			l := mustOpen(t, opts)
			d := watchSyncs(t, l)
			rng := rand.New(rand.NewPCG(31, 32))
			var m model
			m.fill(t, l, rng, 20)
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			from := len(m.batches)
			for segmentsAbove(l, m.batches[from-1].h.BaseOffset) < 2 {
				writeTail(t, l, &m, rng)
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			d.lose(t, l)

			kept := m.kept(m.batches[from-1].raft) // the flush's checkpoint
			tc.edit(kept, &m, from)
			opts.kept = kept
			l = mustOpen(t, opts)
			n := tc.want(&m, from)
			m.batches = m.batches[:from+n]
			m.raft = m.batches[len(m.batches)-1].raft
			if got := l.LastRaftIndex(); got != m.raft {
				t.Fatalf("LastRaftIndex %d, want %d", got, m.raft)
			}
			checkTail(t, l, &m, m.end())

			// What Open rebuilt is on disk: a second crash and an Open
			// without references find it all.
			crash(l)
			opts.kept = nil
			l = mustOpen(t, opts)
			defer l.Close()
			if got := l.LastRaftIndex(); got != m.raft {
				t.Fatalf("after a second open, LastRaftIndex %d, want %d", got, m.raft)
			}
			checkTail(t, l, &m, m.end())
		})
	}
}

// TestKillThenPowerCut: a kill -9 leaves batches in the page cache that no
// group commit synced, across a roll. Open keeps them (the WAL, fsynced at
// its own Open, references them all), so Raft counts them persisted; they
// must be durable by then, since no later Sync covers a sealed segment. A
// batch acknowledged after the restart must survive a power cut.
func TestKillThenPowerCut(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l := mustOpen(t, opts)
	d := watchSyncs(t, l)
	rng := rand.New(rand.NewPCG(5, 6))
	var m model
	m.fill(t, l, rng, 10)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	for base := l.act.seg.base; l.act.seg.base == base; {
		writeTail(t, l, &m, rng)
	}
	writeTail(t, l, &m, rng)
	crash(l) // kill -9: the page cache keeps what was written

	opts.kept = m.kept(0)
	opts.fsync = d.wrap((*os.File).Sync)
	l = mustOpen(t, opts)
	if l.lastRaft != m.raft {
		t.Fatalf("after kill -9: last Raft index %d, want %d", l.lastRaft, m.raft)
	}
	acked := writeTail(t, l, &m, rng)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	d.lose(t, l) // power cut

	opts.kept = m.kept(0)
	l = mustOpen(t, opts)
	defer l.Close()
	if l.lastRaft != m.raft {
		t.Fatalf("after the power cut: last Raft index %d, want %d: the acknowledged batch at %d is gone", l.lastRaft, m.raft, acked.raft)
	}
}

// TestResetInterruptedByPowerCut: Reset to a leader's snapshot past the
// log's end records its new start, then a power cut takes the deletions
// and leaves the old segments, whose Raft index files no Flush synced.
// Open must finish the reset rather than trust those files and fail.
func TestResetInterruptedByPowerCut(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l := mustOpen(t, opts)
	d := watchSyncs(t, l)
	rng := rand.New(rand.NewPCG(7, 8))
	var m model
	m.fill(t, l, rng, 10)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 2 { // two rolls since the Flush
		for base := l.act.seg.base; l.act.seg.base == base; {
			m.fill(t, l, rng, 1)
		}
	}
	m.fill(t, l, rng, 2)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	// The power cut comes right after the state's directory sync.
	watched := l.fsync
	l.fsync = func(f *os.File) error {
		err := watched(f)
		if info, _ := f.Stat(); info != nil && info.IsDir() {
			panic("power cut")
		}
		return err
	}
	start := m.end() + 1000
	func() {
		defer func() { _ = recover() }()
		_ = l.Reset(start)
		t.Fatal("Reset did not sync the directory")
	}()
	d.lose(t, l)
	opts.kept = nil // the snapshot's Persist replaced the group's entries
	l, err := Open(opts)
	if err != nil {
		t.Fatalf("Open after an interrupted Reset: %v", err)
	}
	defer l.Close()
	if l.LogStart() != start || l.LogEnd() != start {
		t.Fatalf("after an interrupted Reset: log %d to %d, want empty at %d", l.LogStart(), l.LogEnd(), start)
	}
}

// TestRepairRaftIndexFromKept: a synced segment's Raft index file loses
// its last entry, which the next segment's first entry proves (the indexes
// run without a gap); but that entry was never synced, its segment being
// empty at the last Flush. After a power cut the WAL's reference to that
// batch, which Open gets, proves it instead; and when the WAL still
// references the damaged segment's own batches (a crash between the Flush
// and the WAL's checkpoint), those give the lost entry directly, even where
// the indexes have a gap (entries that are not batches) and the next
// segment could not prove it.
func TestRepairRaftIndexFromKept(t *testing.T) {
	for _, tc := range []struct {
		name     string
		powerCut bool
		walHolds bool // the WAL has every batch's reference, and a gap follows the sealed segment
		zeroed   bool // the next segment's first index entry reads as zeros (a zeroed extent)
	}{
		{"kill -9", false, false, false},
		{"power cut", true, false, false},
		{"power cut, WAL before its checkpoint", true, true, false},
		{"kill -9, next index entry zeroed", false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t, dir)
			l := mustOpen(t, opts)
			d := watchSyncs(t, l)
			var m model
			gap := 0
			add := func() { // one term, Raft indexes without gaps unless asked
				ts := []int64{1_000_000 + int64(len(m.batches))*10}
				m.add(t, l, mkBatch(t, spec{records: 1, ts: ts, valueSize: 50 + len(m.batches)%50}), gap, ts)
				gap = 0
			}
			// Fill past a roll, cut the new segment's only batch (Raft
			// gives its index to the next one), and Flush: the sealed
			// segment is synced, the active one empty.
			for base := l.act.seg.base; l.act.seg.base == base; {
				add()
			}
			last := m.batches[len(m.batches)-1].h.BaseOffset
			if err := l.TruncateTo(last); err != nil {
				t.Fatal(err)
			}
			m.truncate(last)
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			checkpoint := m.raft
			if tc.walHolds {
				gap = 2
			}
			for range 3 {
				add()
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			sealed, next := l.sealed[len(l.sealed)-1].seg.base, l.act.seg.base
			if tc.powerCut {
				d.lose(t, l)
			} else {
				crash(l)
			}
			p := filepath.Join(dir, segmentFileName(sealed, raftIndexSuffix))
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, st.Size()-raftEntrySize); err != nil {
				t.Fatal(err)
			}
			if tc.zeroed {
				f, err := os.OpenFile(filepath.Join(dir, segmentFileName(next, raftIndexSuffix)), os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt(make([]byte, raftEntrySize), 0); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			opts.kept = m.kept(checkpoint)
			if tc.walHolds {
				opts.kept = m.kept(0)
			}
			l = mustOpen(t, opts)
			defer l.Close()
			if l.lastRaft != m.raft {
				t.Fatalf("last Raft index %d, want %d", l.lastRaft, m.raft)
			}
		})
	}
}

// TestRepairRaftIndexKeepsWholeEntries: a synced segment's Raft index file
// with bytes after its last entry (a torn append) still has every entry;
// the repair keeps them even where the Raft indexes have a gap (entries that
// are not batches) that the next segment could not prove.
func TestRepairRaftIndexKeepsWholeEntries(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l := mustOpen(t, opts)
	var m model
	add := func(gap int) {
		ts := []int64{1_000_000 + int64(len(m.batches))*10}
		m.add(t, l, mkBatch(t, spec{records: 1, ts: ts, valueSize: 60}), gap, ts)
	}
	for base := l.act.seg.base; l.act.seg.base == base; {
		add(2) // gaps everywhere, the roll included
	}
	sealed := l.sealed[len(l.sealed)-1].seg.base
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, segmentFileName(sealed, raftIndexSuffix)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{1, 2, 3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	l = mustOpen(t, opts)
	defer l.Close()
	if l.lastRaft != m.raft {
		t.Fatalf("last Raft index %d, want %d", l.lastRaft, m.raft)
	}
}

// TestReadAfterFailedRewrite: a truncation or reset that fails half way
// leaves readers an answer, not a view they wait on forever: it moved the
// generation on, and no view of that generation used to follow.
func TestReadAfterFailedRewrite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rewrite func(l *Log, m *model) error
	}{
		{"reset", func(l *Log, _ *model) error { return l.Reset(l.LogEnd()) }},
		{"truncate", func(l *Log, m *model) error { return l.TruncateTo(m.batches[len(m.batches)/2].h.BaseOffset) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := mustOpen(t, testOptions(t, t.TempDir()))
			var m model
			m.fill(t, l, rand.New(rand.NewPCG(21, 22)), 150) // no Flush: rolled segments wait for their fsync
			l.fsync = func(*os.File) error { return errors.New("injected EIO") }
			if err := tc.rewrite(l, &m); !errors.Is(err, ErrLogFailed) {
				t.Fatalf("%s with failing fsyncs: %v, want ErrLogFailed", tc.name, err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := l.Read(l.LogStart(), 1<<20)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Error("a read of a log whose rewrite failed half way succeeded")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a read after the failed rewrite has not returned in 10 s")
			}
		})
	}
}

// TestScannedSegmentIndexesSurvivePowerCut: a kill -9 leaves a sealed
// segment whose index files no Flush synced. Open scans it and keeps (or
// rebuilds) its .timeindex without an fsync; the next Flush records a
// recovery point past it, so from then on Open trusts that segment and
// its time index. A power cut before writeback leaves a prefix of the
// time index, which the cheap check accepts: the segment's largest
// timestamp is then wrong, and ListOffsets by timestamp skips records,
// and time retention deletes the segment early.
func TestScannedSegmentIndexesSurvivePowerCut(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	opts.SegmentBytes = 1500
	opts.IndexIntervalBytes = 100
	d := &durable{dir: dir, size: map[string]int64{}, names: map[string]bool{}}
	opts.fsync = d.wrap((*os.File).Sync)
	l := mustOpen(t, opts)
	var m model
	// Segment 0: timestamps 1000, 1001, ... 1009 then the rest old: the
	// segment's maximum (1009) sits in the middle of it, not at its end.
	for i := range 10 {
		ts := []int64{int64(1000 + i)}
		m.add(t, l, mkBatch(t, spec{ts: ts, valueSize: 40}), 0, ts)
	}
	for l.act.seg.base == 0 {
		ts := []int64{500}
		m.add(t, l, mkBatch(t, spec{ts: ts, valueSize: 40}), 0, ts)
	}
	ts := []int64{2000}
	m.add(t, l, mkBatch(t, spec{ts: ts, valueSize: 40}), 0, ts)
	if err := l.Sync(); err != nil { // the group commit: every batch acknowledged
		t.Fatal(err)
	}
	crash(l) // kill -9: the page cache keeps everything

	// Restart: segment 0 is scanned (no Flush ever recorded a recovery point).
	opts.kept = m.kept(0)
	l = mustOpen(t, opts)
	l.fsync = opts.fsync
	if err := l.Flush(); err != nil { // the next checkpoint: recovery point past segment 0
		t.Fatal(err)
	}
	tiName := segmentFileName(0, timeIndexSuffix)
	full, _ := os.ReadFile(filepath.Join(dir, tiName))
	t.Logf("%s: %d bytes in the page cache, %d bytes made durable by an fsync", tiName, len(full), d.size[tiName])
	crash(l)
	// Power cut before writeback: a .timeindex that no fsync covered may
	// keep any prefix; its first entry alone passes the form check.
	if int64(len(full)) > d.size[tiName] {
		if err := os.Truncate(filepath.Join(dir, tiName), timeEntrySize); err != nil {
			t.Fatal(err)
		}
	}

	opts.kept = nil // the checkpoint is durable: the WAL holds no reference before it
	l = mustOpen(t, opts)
	defer l.Close()
	got, found, err := l.OffsetForTimestamp(1005)
	if err != nil {
		t.Fatal(err)
	}
	want := TimestampOffset{Timestamp: 1005, Offset: 5}
	if !found || got != want {
		t.Errorf("OffsetForTimestamp(1005) = %+v %v, want %+v", got, found, want)
	}
	mx, _, _ := l.MaxTimestamp()
	if mx.Timestamp != 2000 {
		t.Errorf("MaxTimestamp = %+v", mx)
	}
	// retention.ms = 1500 at now = 2505: segment 0 (newest record 1009)
	// is 1496 ms old and must stay.
	if p := l.RetentionPoint(2505, 1500, -1); p != 0 {
		t.Errorf("RetentionPoint = %d: segment 0, whose newest record is 1009, is deleted by retention.ms=1500 at now=2505", p)
	}
}

// TestTrustedEmptySegmentSurvivesPowerCut: a clean Close records the
// recovery point at the log end; after the restart retention moves the
// log start to the end, which rolls an empty segment whose base is that
// recovery point. A kill -9 before any Sync or Flush: Open trusts the
// empty last segment (end == recovery point), so it neither scans it nor
// syncs the directory, and the new Log starts with dirDirty false. A batch
// appended to that segment is acknowledged after Sync, which fsyncs the
// .log but not the directory that still lacks a durable entry for it. A
// power cut then loses the acknowledged batch.
func TestTrustedEmptySegmentSurvivesPowerCut(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	d := &durable{dir: dir, size: map[string]int64{}, names: map[string]bool{}}
	opts.fsync = d.wrap((*os.File).Sync)
	l := mustOpen(t, opts)
	var m model
	m.add(t, l, mkBatch(t, spec{baseTs: 10}), 0, nil)
	if err := l.Close(); err != nil { // clean shutdown: recovery point = 1
		t.Fatal(err)
	}
	l = mustOpen(t, opts)
	if err := l.AdvanceLogStart(1); err != nil { // retention takes everything: roll
		t.Fatal(err)
	}
	crash(l) // kill -9 before the next Sync or Flush

	opts.kept = m.kept(0)
	l = mustOpen(t, opts) // trusts 00000000000000000001.log: empty, ends at the recovery point
	if err := l.AdvanceLogStart(1); err != nil {
		t.Fatal(err)
	}
	acked := m.add(t, l, mkBatch(t, spec{baseTs: 20}), 0, nil)
	if err := l.Sync(); err != nil { // the group commit: the batch is acknowledged
		t.Fatal(err)
	}
	t.Logf("durable directory entries: %v", d.names)
	d.lose(t, l) // power cut

	opts.kept = m.kept(0)
	l = mustOpen(t, opts)
	defer l.Close()
	if b, _, err := l.EntryByRaftIndex(acked.raft); err != nil || len(b) != len(acked.b) {
		t.Fatalf("acknowledged batch at offset %d (raft %d) lost: %v; log %d..%d, files %v",
			acked.h.BaseOffset, acked.raft, err, l.LogStart(), l.WrittenEnd(), logFiles(t, dir))
	}
}
