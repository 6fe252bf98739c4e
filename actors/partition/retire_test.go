package partition

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// segmentBases returns the base offsets of the .log files in dir, in order.
func segmentBases(t *testing.T, dir string) []int64 {
	t.Helper()
	var bases []int64
	for _, name := range logFiles(t, dir) {
		base, _, _ := parseSegmentFileName(name)
		bases = append(bases, base)
	}
	return bases
}

// recordedStart returns the log start that log.state holds.
func recordedStart(t *testing.T, dir string) int64 {
	t.Helper()
	st, ok, reason, err := readState(dir)
	if err != nil || !ok {
		t.Fatalf("read %s: ok %v, %q, %v", stateFileName, ok, reason, err)
	}
	return st.logStart
}

// lastRaftBelow returns the Raft index of the last batch of the model below
// offset end.
func (m *model) lastRaftBelow(end int64) uint64 {
	var raft uint64
	for _, s := range m.batches {
		if s.h.NextOffset() <= end {
			raft = s.raft
		}
	}
	return raft
}

// TestAdvanceLogStartRetires: segments wholly below the new start leave
// every view, Size and RetentionPoint, but their files stay. A start at
// the written end rolls the active segment and retires it too.
func TestAdvanceLogStartRetires(t *testing.T) {
	for _, tc := range []struct {
		name    string
		start   func(bases []int64, end int64) int64
		retired int
	}{
		{"inside the first segment", func(b []int64, _ int64) int64 { return b[0] + 3 }, 0},
		{"at the base of the fourth segment", func(b []int64, _ int64) int64 { return b[3] }, 3},
		{"inside the fourth segment", func(b []int64, _ int64) int64 { return b[3] + 2 }, 3},
		{"at the log end", func(_ []int64, end int64) int64 { return end }, -1}, // every one, the active one rolled
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, testOptions(t, dir))
			defer l.Close()
			var m model
			m.fill(t, l, rand.New(rand.NewPCG(21, 21)), 200)
			before := segmentBases(t, dir)
			retired := tc.retired
			start := tc.start(before, l.LogEnd())
			after := before
			if retired < 0 {
				retired = len(before)
				after = append(slices.Clone(before), start) // the empty segment rolled at the end
			}
			if err := l.AdvanceLogStart(start); err != nil {
				t.Fatal(err)
			}
			if got := segmentBases(t, dir); !slices.Equal(got, after) {
				t.Fatalf("segments on disk %v, want %v", got, after)
			}
			if got := l.RetiredSegments(); got != retired {
				t.Fatalf("%d retired segments, want %d", got, retired)
			}
			v := l.view.Load()
			if v.numSegments() != len(after)-retired || v.segment(0).seg.base != after[retired] {
				t.Fatalf("view has %d segments from %d, want %d from %d", v.numSegments(), v.segment(0).seg.base,
					len(after)-retired, after[retired])
			}
			var size int64
			for _, base := range after[retired:] {
				info, err := os.Stat(filepath.Join(dir, segmentFileName(base, logSuffix)))
				if err != nil {
					t.Fatal(err)
				}
				size += info.Size()
			}
			if l.Size() != size {
				t.Fatalf("Size %d, want %d, the bytes of the segments not retired", l.Size(), size)
			}
			if got := l.RetentionPoint(0, -1, size); got != start {
				t.Fatalf("RetentionPoint keeping %d bytes = %d, want the start %d", size, got, start)
			}
			_, err := l.Read(start-1, 100)
			if start > 0 {
				wantErr(t, err, ErrOffsetOutOfRange)
			}
			for _, s := range m.batches {
				_, _, err := l.EntryByRaftIndex(s.raft)
				if s.h.LastOffset() < start {
					wantErr(t, err, ErrRaftIndexNotInLog)
				} else if err != nil {
					t.Fatalf("EntryByRaftIndex(%d): %v", s.raft, err)
				}
			}
			m.check(t, l, start)
			checkTimestamps(t, l, &m)
		})
	}
}

// TestReleaseSegments: only the retired segments whose batches all lie at
// or below the Raft index go, oldest first; a Flush then records the first
// remaining segment's base, and a crash keeps what was not released.
func TestReleaseSegments(t *testing.T) {
	for _, tc := range []struct {
		name    string
		through func(m *model, bases []int64) uint64
		deleted int
	}{
		{"nothing below the first segment's last batch", func(m *model, b []int64) uint64 {
			return m.lastRaftBelow(b[1]) - 1
		}, 0},
		{"the first segment", func(m *model, b []int64) uint64 { return m.lastRaftBelow(b[1]) }, 1},
		{"up to a batch inside the third segment", func(m *model, b []int64) uint64 {
			return m.batches[m.containing(b[2])+1].raft
		}, 2},
		{"every retired segment, not the ones above the start", func(*model, []int64) uint64 { return math.MaxUint64 }, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t, dir)
			l := mustOpen(t, opts)
			var m model
			m.fill(t, l, rand.New(rand.NewPCG(22, 22)), 200)
			bases := segmentBases(t, dir)
			start := bases[4] + 1
			if err := l.AdvanceLogStart(start); err != nil {
				t.Fatal(err)
			}
			if err := l.ReleaseSegments(tc.through(&m, bases)); err != nil {
				t.Fatal(err)
			}
			if got := segmentBases(t, dir); !slices.Equal(got, bases[tc.deleted:]) {
				t.Fatalf("segments on disk %v, want %v", got, bases[tc.deleted:])
			}
			for _, base := range bases[:tc.deleted] {
				for _, suffix := range []string{offsetIndexSuffix, timeIndexSuffix, raftIndexSuffix} {
					if _, err := os.Stat(filepath.Join(dir, segmentFileName(base, suffix))); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s not deleted: %v", segmentFileName(base, suffix), err)
					}
				}
			}
			if l.LogStart() != start {
				t.Fatalf("start %d after the release, want %d", l.LogStart(), start)
			}
			m.check(t, l, start)
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := recordedStart(t, dir); got != bases[tc.deleted] {
				t.Fatalf("log.state records start %d, want the first remaining segment's base %d", got, bases[tc.deleted])
			}

			crash(l)
			l = mustOpen(t, opts)
			defer l.Close()
			if got := segmentBases(t, dir); !slices.Equal(got, bases[tc.deleted:]) {
				t.Fatalf("reopened: segments %v, want %v", got, bases[tc.deleted:])
			}
			if l.LogStart() != bases[tc.deleted] {
				t.Fatalf("reopened: start %d, want %d", l.LogStart(), bases[tc.deleted])
			}
			if err := l.AdvanceLogStart(start); err != nil {
				t.Fatal(err)
			}
			if len(l.retired) != 4-tc.deleted {
				t.Fatalf("reopened and advanced: %d retired segments, want %d", len(l.retired), 4-tc.deleted)
			}
			m.check(t, l, start)
			if err := l.ReleaseSegments(math.MaxUint64); err != nil {
				t.Fatal(err)
			}
			if got := segmentBases(t, dir); !slices.Equal(got, bases[4:]) {
				t.Fatalf("after releasing everything: segments %v, want %v", got, bases[4:])
			}
		})
	}
}

// TestCrashAfterRetention is the case ReleaseSegments exists for: a
// checkpoint, then more batches and a log start moved past the
// checkpoint's end, then a crash. The reopened log must reach back to the
// checkpoint: the restore sets the high watermark to its log end, and the
// batches after it, which the WAL names by Raft index, are all there to be
// committed again, up to the replayed move.
func TestCrashAfterRetention(t *testing.T) {
	for i, tc := range []struct {
		name string
		// crash abandons l after the move; cpRaft is the checkpoint's Raft
		// index.
		crash func(t *testing.T, l *Log, d *durable, cpRaft uint64)
		// flushed: log.state was written after the move; released: the
		// segments wholly below the checkpoint's end were deleted.
		flushed, released bool
	}{
		{"flush, then crash", func(t *testing.T, l *Log, _ *durable, _ uint64) {
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			crash(l)
		}, true, false},
		{"close", func(t *testing.T, l *Log, _ *durable, _ uint64) {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"flush, then power cut", func(t *testing.T, l *Log, d *durable, _ uint64) {
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			d.lose(t, l)
		}, true, false},
		{"no flush, power cut", func(t *testing.T, l *Log, d *durable, _ uint64) {
			d.lose(t, l)
		}, false, false},
		{"release through the checkpoint, flush, power cut", func(t *testing.T, l *Log, d *durable, cpRaft uint64) {
			if err := l.ReleaseSegments(cpRaft); err != nil {
				t.Fatal(err)
			}
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			d.lose(t, l)
		}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t, dir)
			l := mustOpen(t, opts)
			d := watchSyncs(t, l)
			rng := rand.New(rand.NewPCG(uint64(i), 23))
			var m model
			m.fill(t, l, rng, 60)
			// The checkpoint: a Flush, then its log start, log end and
			// Raft index.
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			cpStart, cpEnd, cpRaft := l.LogStart(), l.LogEnd(), m.raft
			m.fill(t, l, rng, 140)
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			all := l.segments()
			moved := all.segment(all.numSegments() - 2).seg.base // past the checkpoint's end
			if moved <= cpEnd {
				t.Fatalf("the move to %d does not pass the checkpoint's end %d: the test shows nothing", moved, cpEnd)
			}
			if err := l.AdvanceLogStart(moved); err != nil {
				t.Fatal(err)
			}
			kept := segmentBases(t, dir)
			if tc.released {
				kept = kept[all.segmentIndex(cpEnd):]
			}
			tc.crash(t, l, d, cpRaft)

			opts.kept = m.kept(cpRaft) // the WAL's references after the checkpoint
			l = mustOpen(t, opts)
			defer l.Close()
			bases := segmentBases(t, dir)
			if !slices.Equal(bases, kept) {
				t.Fatalf("reopened: segments %v, want %v", bases, kept)
			}
			if l.LogStart() > bases[0] {
				t.Fatalf("reopened: start %d above the first segment %d", l.LogStart(), bases[0])
			}
			if got := recordedStart(t, dir); tc.flushed && got > bases[0] {
				t.Fatalf("log.state records start %d above the first segment %d", got, bases[0])
			}
			// The restore of the checkpoint, then the replay of the WAL.
			if err := l.SetHighWatermark(cpEnd); err != nil {
				t.Fatalf("restoring the checkpoint's log end: %v", err)
			}
			if err := l.AdvanceLogStart(cpStart); err != nil {
				t.Fatal(err)
			}
			for _, s := range m.batches[m.containing(cpEnd):] {
				if _, _, err := l.EntryByRaftIndex(s.raft); err != nil {
					t.Fatalf("replaying the WAL: entry %d: %v", s.raft, err)
				}
				if _, err := l.Commit(s.raft); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.AdvanceLogStart(moved); err != nil {
				t.Fatal(err)
			}
			if l.LogStart() != moved || l.LogEnd() != m.end() {
				t.Fatalf("after the replay: log [%d, %d), want [%d, %d)", l.LogStart(), l.LogEnd(), moved, m.end())
			}
			m.check(t, l, moved)
			if err := l.ReleaseSegments(m.raft); err != nil {
				t.Fatal(err)
			}
			if got := segmentBases(t, dir); got[0] != l.view.Load().segment(0).seg.base {
				t.Fatalf("after releasing through the last entry: segments %v, log starts at %d", got, moved)
			}
		})
	}
}

// TestRetentionOfTheActiveSegment: retention judges the active segment too
// once nothing above the high watermark is written, and moving the log
// start to its end rolls it, so that it is retired and released like a
// sealed one; the next batch starts the new segment, and the log reopens
// the same after a crash before the release and after a release.
func TestRetentionOfTheActiveSegment(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l := mustOpen(t, opts)
	var m model
	for range 3 {
		m.add(t, l, mkBatch(t, spec{records: 2, ts: []int64{1000, 1001}, valueSize: 50}), 0, nil)
	}
	tail := m.write(t, l, mkBatch(t, spec{records: 1, ts: []int64{1002}, valueSize: 50}), 0, nil)
	if p := l.RetentionPoint(1<<40, 0, 0); p != 0 {
		t.Fatalf("RetentionPoint %d with a batch above the high watermark, want 0: the active segment stays", p)
	}
	if _, err := l.Commit(tail.raft); err != nil {
		t.Fatal(err)
	}
	end := l.LogEnd()
	for _, tc := range []struct {
		name                 string
		now, retMs, retBytes int64
		want                 int64
	}{
		{"newer than retention.ms", 2002, 1000, -1, 0},
		{"older than retention.ms", 2003, 1000, -1, end},
		{"within retention.bytes", 0, -1, 1, 0},
		{"retention.bytes zero", 0, -1, 0, end},
	} {
		if p := l.RetentionPoint(tc.now, tc.retMs, tc.retBytes); p != tc.want {
			t.Errorf("%s: RetentionPoint %d, want %d", tc.name, p, tc.want)
		}
	}

	if err := l.AdvanceLogStart(end); err != nil {
		t.Fatal(err)
	}
	if got := segmentBases(t, dir); !slices.Equal(got, []int64{0, end}) {
		t.Fatalf("segments on disk %v, want [0 %d]: the active one rolled", got, end)
	}
	if l.RetiredSegments() != 1 || l.LogStart() != end || l.LogEnd() != end || l.WrittenEnd() != end || l.Size() != 0 {
		t.Fatalf("%d retired, log [%d, %d) written to %d, %d bytes; want 1 retired, [%d, %d), nothing",
			l.RetiredSegments(), l.LogStart(), l.LogEnd(), l.WrittenEnd(), l.Size(), end, end)
	}
	if p := l.RetentionPoint(1<<40, 0, 0); p != end {
		t.Fatalf("RetentionPoint %d of an empty log at %d", p, end)
	}
	if _, _, err := l.EntryByRaftIndex(tail.raft); !errors.Is(err, ErrRaftIndexNotInLog) {
		t.Fatalf("EntryByRaftIndex of a retired batch: %v", err)
	}
	m.check(t, l, end)

	// A crash before the release: the rolled segment is found again and
	// retired by the same move.
	crash(l)
	l = mustOpen(t, opts)
	if err := l.AdvanceLogStart(end); err != nil {
		t.Fatal(err)
	}
	if got := segmentBases(t, dir); l.RetiredSegments() != 1 || !slices.Equal(got, []int64{0, end}) {
		t.Fatalf("reopened: %d retired, segments %v; want 1, [0 %d]", l.RetiredSegments(), got, end)
	}

	next := m.add(t, l, mkBatch(t, spec{records: 1, ts: []int64{5000}, valueSize: 50}), 0, nil)
	if err := l.ReleaseSegments(tail.raft); err != nil {
		t.Fatal(err)
	}
	if got := segmentBases(t, dir); !slices.Equal(got, []int64{end}) {
		t.Fatalf("released: segments %v, want [%d]", got, end)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	crash(l)
	l = mustOpen(t, opts)
	defer l.Close()
	if l.LogStart() != end || l.LogEnd() != next.h.NextOffset() {
		t.Fatalf("reopened after the release: log [%d, %d), want [%d, %d)", l.LogStart(), l.LogEnd(), end, next.h.NextOffset())
	}
	m.check(t, l, end)
}

// TestSideLogPrunedWhenRetentionTakesEverything: retention that moves the
// log start to the high watermark, as it does for a topic idle longer
// than retention.ms, prunes the side entries below the boundary. With no
// batch left to prune below, they used to pile up with every cycle, in
// memory and in every checkpoint.
func TestSideLogPrunedWhenRetentionTakesEverything(t *testing.T) {
	r := bootstrapped(t, t.TempDir())
	seqs, epochs := map[int64]int32{}, map[int64]int16{}
	var sizes []int
	for range 50 {
		r.write(1, seqs, epochs, 1, -1)
		r.retain(1, 0) // everything goes: the log start is the high watermark
		sizes = append(sizes, len(r.m.side))
	}
	if first, last := sizes[0], sizes[len(sizes)-1]; last > first+2 {
		t.Fatalf("the side log grew from %d to %d entries over 50 retention cycles: %v", first, last, sizes)
	}
}
