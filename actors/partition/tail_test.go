package partition

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sort"
	"testing"
)

// committedBelow returns the index in m of the first batch at or above hw.
func (m *model) committedBelow(hw int64) int {
	return sort.Search(len(m.batches), func(i int) bool { return m.batches[i].h.BaseOffset >= hw })
}

// checkTail checks that readers see exactly the batches of m below the high
// watermark hw, and that EntryByRaftIndex still finds the ones above it.
func checkTail(t *testing.T, l *Log, m *model, hw int64) {
	t.Helper()
	if l.LogEnd() != hw || l.WrittenEnd() != max(m.end(), l.LogStart()) {
		t.Fatalf("LogEnd %d WrittenEnd %d, want %d and %d", l.LogEnd(), l.WrittenEnd(), hw, m.end())
	}
	k := m.committedBelow(hw)
	seen := &model{batches: m.batches[:k]}
	seen.check(t, l, l.LogStart())
	checkTimestamps(t, l, seen)
	if b, err := l.Read(hw, 1<<20); err != nil || b != nil {
		t.Fatalf("Read(high watermark) = %d bytes, %v", len(b), err)
	}
	var size int64
	for _, s := range m.batches {
		size += int64(len(s.b))
	}
	if l.Size() != size {
		t.Fatalf("Size %d, want all %d bytes written", l.Size(), size)
	}
	wantLast := uint64(0)
	if k > 0 && seen.batches[k-1].h.LastOffset() >= l.LogStart() {
		wantLast = seen.batches[k-1].raft
		// Reading from the last committed batch with room for everything
		// stops at the mark.
		got, err := l.Read(max(seen.batches[k-1].h.BaseOffset, l.LogStart()), 1<<20)
		if err != nil || !bytes.Equal(got, seen.batches[k-1].b) {
			t.Fatalf("Read(last committed batch) = %d bytes, %v; want the %d-byte batch", len(got), err,
				len(seen.batches[k-1].b))
		}
	}
	if got := l.LastRaftIndex(); got != wantLast {
		t.Fatalf("LastRaftIndex %d, want %d", got, wantLast)
	}
	for _, s := range m.batches[k:] {
		if _, err := l.Read(s.h.BaseOffset+1, 1); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("Read(%d) above the high watermark: %v", s.h.BaseOffset+1, err)
		}
		if _, _, ok := l.BatchAt(s.h.BaseOffset); ok {
			t.Fatalf("BatchAt(%d) found an uncommitted batch", s.h.BaseOffset)
		}
		for _, ts := range s.ts {
			checkOffsetForTimestamp(t, l, seen, ts)
		}
		b, term, err := l.EntryByRaftIndex(s.raft)
		if err != nil || term != s.term || !bytes.Equal(b, s.b) {
			t.Fatalf("EntryByRaftIndex(%d) of an uncommitted batch = %d bytes, term %d, %v", s.raft, len(b), term, err)
		}
	}
	// Retention never reaches the mark.
	if p := l.RetentionPoint(1<<62, 0, 0); p > hw {
		t.Fatalf("RetentionPoint %d is above the high watermark %d", p, hw)
	}
}

// writeTail writes an uncommitted batch whose timestamps are above those
// of every batch before it (fill's), and overlap the next tail batch's, so
// that a reader that saw it would answer MaxTimestamp and
// OffsetForTimestamp differently.
func writeTail(t *testing.T, l *Log, m *model, rng *rand.Rand) stored {
	t.Helper()
	recs := 1 + rng.IntN(3)
	ts := make([]int64, recs)
	for i := range ts {
		ts[i] = 1_000_000 + int64(len(m.batches))*10 + 100 + rng.Int64N(40)
	}
	return m.write(t, l, mkBatch(t, spec{records: recs, ts: ts, valueSize: 20 + rng.IntN(100)}), rng.IntN(2), ts)
}

// segmentsAbove counts the segments whose base is above offset.
func segmentsAbove(l *Log, offset int64) int {
	n := 0
	all := l.segments()
	for i := range all.numSegments() {
		if all.segment(i).seg.base > offset {
			n++
		}
	}
	return n
}

// tailLayouts build a log with committed batches and an uncommitted tail,
// in the layouts that matter: where the high watermark lies relative to the
// segments.
var tailLayouts = []struct {
	name  string
	build func(t *testing.T, l *Log, m *model, rng *rand.Rand)
}{
	{"in the active segment", func(t *testing.T, l *Log, m *model, rng *rand.Rand) {
		m.fill(t, l, rng, 40)
		for l.act.size > 800 { // room in the active segment for the tail
			m.fill(t, l, rng, 1)
		}
		for range 3 {
			writeTail(t, l, m, rng)
		}
		if l.act.seg.base > l.LogEnd() {
			t.Fatal("the tail rolled a segment")
		}
	}},
	{"across rolls", func(t *testing.T, l *Log, m *model, rng *rand.Rand) {
		m.fill(t, l, rng, 40)
		for segmentsAbove(l, l.LogEnd()) < 2 {
			writeTail(t, l, m, rng)
		}
		writeTail(t, l, m, rng)
	}},
	{"from a segment's base", func(t *testing.T, l *Log, m *model, rng *rand.Rand) {
		m.fill(t, l, rng, 40)
		for base := l.act.seg.base; l.act.seg.base == base; {
			writeTail(t, l, m, rng)
		}
		for _, s := range m.batches[m.committedBelow(l.LogEnd()) : len(m.batches)-1] {
			if _, err := l.Commit(s.raft); err != nil {
				t.Fatal(err)
			}
		}
		writeTail(t, l, m, rng)
		if l.LogEnd() != l.act.seg.base {
			t.Fatalf("high watermark %d, want the active segment's base %d", l.LogEnd(), l.act.seg.base)
		}
	}},
	{"nothing committed", func(t *testing.T, l *Log, m *model, rng *rand.Rand) {
		for segmentsAbove(l, l.LogEnd()) < 1 {
			writeTail(t, l, m, rng)
		}
	}},
}

func TestTailInvisibleUntilCommit(t *testing.T) {
	for i, tc := range tailLayouts {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t, dir)
			l := mustOpen(t, opts)
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			var m model
			tc.build(t, l, &m, rng)
			hw := l.LogEnd()
			if hw == l.WrittenEnd() {
				t.Fatal("no uncommitted tail")
			}
			checkTail(t, l, &m, hw)
			for _, s := range m.batches[m.committedBelow(hw):] {
				end, err := l.Commit(s.raft)
				if err != nil || end != s.h.NextOffset() {
					t.Fatalf("Commit(%d) = %d, %v; want %d", s.raft, end, err, s.h.NextOffset())
				}
				checkTail(t, l, &m, end)
			}
			// More batches after the tail was committed, across a roll.
			m.fill(t, l, rng, 30)
			checkTail(t, l, &m, m.end())
			checkSegments(t, dir, l, &m)
			crash(l)
			l = mustOpen(t, opts)
			defer l.Close()
			checkTail(t, l, &m, m.end())
		})
	}
}

func TestCommitOrder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tail   int                   // uncommitted batches after two committed ones
		commit func(m *model) uint64 // the refused commit
	}{
		{"nothing written", 0, func(m *model) uint64 { return m.raft + 1 }},
		{"already committed", 2, func(m *model) uint64 { return m.batches[1].raft }},
		{"not the batch at the mark", 2, func(m *model) uint64 { return m.batches[3].raft }},
		{"no batch's index", 2, func(m *model) uint64 { return m.batches[2].raft - 1 }},
		{"beyond the written end", 2, func(m *model) uint64 { return m.raft + 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := mustOpen(t, testOptions(t, t.TempDir()))
			defer l.Close()
			var m model
			batch := func(records int) ([]byte, []int64) {
				ts := make([]int64, records)
				for i := range ts {
					ts[i] = int64(10*len(m.batches) + i)
				}
				return mkBatch(t, spec{records: records, ts: ts}), ts
			}
			b, ts := batch(2)
			m.add(t, l, b, 0, ts)
			b, ts = batch(3)
			m.add(t, l, b, 0, ts)
			for range tc.tail {
				b, ts := batch(2)
				m.write(t, l, b, 1, ts) // gaps: no-op entries
			}
			_, err := l.Commit(tc.commit(&m))
			wantErr(t, err, ErrAppendOrder)
			checkTail(t, l, &m, 5)
			for _, s := range m.batches[2:] {
				if _, err := l.Commit(s.raft); err != nil {
					t.Fatalf("Commit(%d) after a refused one: %v", s.raft, err)
				}
			}
			checkTail(t, l, &m, m.end())
		})
	}
}

func TestSetHighWatermark(t *testing.T) {
	// The log: 60 committed batches over several segments, the log start
	// inside the first segment's third batch, and a tail across a roll.
	build := func(t *testing.T) (*Log, *model) {
		rng := rand.New(rand.NewPCG(5, 6))
		l := mustOpen(t, testOptions(t, t.TempDir()))
		m := &model{}
		for range 60 {
			recs := 2 + rng.IntN(3)
			ts := make([]int64, recs)
			for i := range ts {
				ts[i] = 1_000_000 + rng.Int64N(1_000)
			}
			m.add(t, l, mkBatch(t, spec{records: recs, ts: ts, valueSize: rng.IntN(120)}), rng.IntN(2), ts)
		}
		for segmentsAbove(l, l.LogEnd()) < 1 {
			writeTail(t, l, m, rng)
		}
		writeTail(t, l, m, rng)
		writeTail(t, l, m, rng)
		if err := l.AdvanceLogStart(m.batches[2].h.BaseOffset + 1); err != nil {
			t.Fatal(err)
		}
		return l, m
	}
	boundary := func(i int) func(*Log, *model) int64 {
		return func(_ *Log, m *model) int64 { return m.batches[i].h.BaseOffset }
	}
	for _, tc := range []struct {
		name  string
		marks []func(*Log, *model) int64
		err   error // of the last mark; nil: it is the high watermark
	}{
		{"below the log start", []func(*Log, *model) int64{boundary(2)}, ErrOffsetOutOfRange},
		{"above the written end", []func(*Log, *model) int64{func(l *Log, _ *model) int64 { return l.WrittenEnd() + 1 }},
			ErrOffsetOutOfRange},
		{"inside a batch", []func(*Log, *model) int64{func(_ *Log, m *model) int64 { return m.batches[30].h.BaseOffset + 1 }},
			ErrNotBatchBoundary},
		{"where it is", []func(*Log, *model) int64{func(l *Log, _ *model) int64 { return l.LogEnd() }}, nil},
		{"the written end", []func(*Log, *model) int64{func(l *Log, _ *model) int64 { return l.WrittenEnd() }}, nil},
		{"one batch down", []func(*Log, *model) int64{func(l *Log, m *model) int64 {
			return m.batches[m.committedBelow(l.LogEnd())-1].h.BaseOffset
		}}, nil},
		{"up into the tail", []func(*Log, *model) int64{func(l *Log, m *model) int64 {
			return m.batches[m.committedBelow(l.LogEnd())+1].h.BaseOffset
		}}, nil},
		{"inside the active segment", []func(*Log, *model) int64{func(l *Log, m *model) int64 {
			return m.batches[m.containing(l.act.seg.base)+1].h.BaseOffset
		}}, nil},
		{"a segment's base", []func(*Log, *model) int64{func(l *Log, _ *model) int64 { return l.sealed[2].seg.base }}, nil},
		{"inside a sealed segment", []func(*Log, *model) int64{boundary(20)}, nil},
		{"the first batch after the start", []func(*Log, *model) int64{boundary(3)}, nil},
		{"down, then up", []func(*Log, *model) int64{boundary(3), boundary(45)}, nil},
		{"down, then up past the commits", []func(*Log, *model) int64{boundary(10), boundary(58)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, m := build(t)
			defer l.Close()
			before := l.LogEnd()
			var err error
			var mark int64
			for _, f := range tc.marks {
				mark = f(l, m)
				if err = l.SetHighWatermark(mark); err != nil {
					break
				}
			}
			if tc.err != nil {
				wantErr(t, err, tc.err)
				checkTail(t, l, m, before)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkTail(t, l, m, mark)
			// Committing the rest one batch at a time shows the same log as
			// committing it in the first place.
			for i, s := range m.batches[m.committedBelow(mark):] {
				if _, err := l.Commit(s.raft); err != nil {
					t.Fatal(err)
				}
				if i%7 == 0 {
					checkTail(t, l, m, l.LogEnd())
				}
			}
			checkTail(t, l, m, m.end())
		})
	}
}

func TestTruncateRaft(t *testing.T) {
	for i, tc := range []struct {
		name   string
		layout int                       // index in tailLayouts
		index  func(*Log, *model) uint64 // the first Raft index to remove
		flush  bool                      // Flush before truncating
	}{
		{"in the active segment", 0, func(l *Log, m *model) uint64 { return m.batches[len(m.batches)-2].raft }, false},
		{"at the high watermark", 0, func(l *Log, m *model) uint64 {
			return m.batches[m.committedBelow(l.LogEnd())].raft
		}, false},
		{"back into a sealed segment", 1, func(l *Log, m *model) uint64 {
			return m.batches[m.committedBelow(l.LogEnd())+1].raft
		}, true},
		{"at a segment's base", 1, func(l *Log, m *model) uint64 {
			return m.batches[m.committedBelow(l.act.seg.base)].raft
		}, true},
		{"from a segment's base at the mark", 2, func(l *Log, m *model) uint64 {
			return m.batches[m.committedBelow(l.LogEnd())].raft
		}, false},
		{"in a gap of raft indexes", 1, func(l *Log, m *model) uint64 {
			for k := m.committedBelow(l.LogEnd()) + 1; k < len(m.batches); k++ {
				if m.batches[k].raft > m.batches[k-1].raft+1 {
					return m.batches[k].raft - 1
				}
			}
			t.Fatal("no gap in the tail")
			return 0
		}, false},
		{"everything uncommitted", 3, func(l *Log, m *model) uint64 { return 1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t, dir)
			l := mustOpen(t, opts)
			rng := rand.New(rand.NewPCG(uint64(i), 13))
			var m model
			tailLayouts[tc.layout].build(t, l, &m, rng)
			hw := l.LogEnd()
			if tc.flush {
				if err := l.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			index := tc.index(l, &m)
			k := sort.Search(len(m.batches), func(k int) bool { return m.batches[k].raft >= index })
			cut := m.batches[k].h.BaseOffset
			removed := m.batches[k:]
			if err := l.TruncateRaft(index); err != nil {
				t.Fatal(err)
			}
			m.truncate(cut)
			if l.WrittenEnd() != cut {
				t.Fatalf("after TruncateRaft(%d): written end %d, want %d", index, l.WrittenEnd(), cut)
			}
			checkTail(t, l, &m, hw)
			for _, s := range removed {
				_, _, err := l.EntryByRaftIndex(s.raft)
				wantErr(t, err, ErrRaftIndexNotInLog)
			}
			for _, name := range logFiles(t, dir) {
				if base, _, _ := parseSegmentFileName(name); base > cut {
					t.Fatalf("segment %s above the cut at %d was not deleted", name, cut)
				}
			}
			// A new leader's entries take the removed ones' place.
			m.term++
			m.raft = index - 1
			for range len(removed) + 5 {
				writeTail(t, l, &m, rng)
			}
			checkTail(t, l, &m, hw)
			for _, s := range m.batches[m.committedBelow(hw):] {
				if _, err := l.Commit(s.raft); err != nil {
					t.Fatal(err)
				}
			}
			checkTail(t, l, &m, m.end())
			checkSegments(t, dir, l, &m)
			checkIndexFiles(t, dir, &m, int64(opts.IndexIntervalBytes), false)
			crash(l)
			l = mustOpen(t, opts)
			defer l.Close()
			checkTail(t, l, &m, m.end())
		})
	}
}

func TestTruncateRaftRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		index func(m *model) uint64
		err   bool
	}{
		{"below the high watermark", func(m *model) uint64 { return m.batches[len(m.batches)-4].raft }, true},
		{"the last committed batch", func(m *model) uint64 { return m.batches[len(m.batches)-3].raft }, true},
		{"the first raft index", func(m *model) uint64 { return 1 }, true},
		{"above every batch", func(m *model) uint64 { return m.raft + 1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, testOptions(t, dir))
			defer l.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			var m model
			m.fill(t, l, rng, 40)
			writeTail(t, l, &m, rng)
			writeTail(t, l, &m, rng)
			files := dirFiles(t, dir)
			hw := l.LogEnd()
			err := l.TruncateRaft(tc.index(&m))
			if tc.err {
				wantErr(t, err, ErrAppendOrder)
			} else if err != nil {
				t.Fatal(err)
			}
			checkTail(t, l, &m, hw)
			if got := dirFiles(t, dir); len(got) != len(files) {
				t.Fatalf("%d files, %d before", len(got), len(files))
			} else {
				for name, b := range files {
					if !bytes.Equal(got[name], b) {
						t.Fatalf("%s changed", name)
					}
				}
			}
			// The log goes on.
			writeTail(t, l, &m, rng)
			for _, s := range m.batches[m.committedBelow(hw):] {
				if _, err := l.Commit(s.raft); err != nil {
					t.Fatal(err)
				}
			}
			checkTail(t, l, &m, m.end())
		})
	}
}

func TestTruncateToLowersHighWatermark(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l := mustOpen(t, opts)
	rng := rand.New(rand.NewPCG(3, 3))
	var m model
	tailLayouts[1].build(t, l, &m, rng)
	hw := l.LogEnd()
	// Above the mark: only the tail is cut.
	cut := m.batches[len(m.batches)-2].h.BaseOffset
	if err := l.TruncateTo(cut); err != nil {
		t.Fatal(err)
	}
	m.truncate(cut)
	checkTail(t, l, &m, hw)
	// Below it: the mark comes down with the written end.
	cut = m.batches[m.committedBelow(hw)-5].h.BaseOffset
	if err := l.TruncateTo(cut); err != nil {
		t.Fatal(err)
	}
	m.truncate(cut)
	checkTail(t, l, &m, cut)
	m.fill(t, l, rng, 20)
	writeTail(t, l, &m, rng)
	checkTail(t, l, &m, m.batches[len(m.batches)-1].h.BaseOffset)
	crash(l)
	l = mustOpen(t, opts)
	defer l.Close()
	checkTail(t, l, &m, m.end())
}

// TestMaxTimestampAtTheMark commits batches of falling timestamps a few at
// a time while segments roll and the log start follows the segment that
// holds the high watermark, so that MaxTimestamp depends on that segment's
// committed part alone: a maximum carried over from an earlier segment, or
// taken from the uncommitted tail, shows.
func TestMaxTimestampAtTheMark(t *testing.T) {
	l := mustOpen(t, testOptions(t, t.TempDir()))
	defer l.Close()
	rng := rand.New(rand.NewPCG(21, 22))
	var m model
	for len(m.batches) < 300 {
		for range 1 + rng.IntN(3) {
			recs := 1 + rng.IntN(3)
			ts := make([]int64, recs)
			for i := range ts {
				ts[i] = 10_000_000 - 100*int64(len(m.batches)) + rng.Int64N(50)
			}
			m.write(t, l, mkBatch(t, spec{records: recs, ts: ts, valueSize: rng.IntN(150)}), 0, ts)
		}
		tail := m.batches[m.committedBelow(l.LogEnd()):]
		for _, s := range tail[:rng.IntN(len(tail)+1)] {
			if _, err := l.Commit(s.raft); err != nil {
				t.Fatal(err)
			}
			all := l.segments()
			if base := all.segment(all.segmentIndex(l.LogEnd())).seg.base; base > l.LogStart() {
				if err := l.AdvanceLogStart(base); err != nil {
					t.Fatal(err)
				}
			}
			checkTail(t, l, &model{batches: m.batches[m.committedBelow(l.LogStart()):]}, l.LogEnd())
		}
	}
	if l.act.seg.base < 200 {
		t.Fatalf("the active segment starts at %d: too few rolls", l.act.seg.base)
	}
}

// TestTailQueue drives the queue of uncommitted batches through long runs
// of pushes, pops (past its compaction point) and cuts against a plain
// slice.
func TestTailQueue(t *testing.T) {
	var q tailQueue
	var want []tailBatch
	next := int64(0)
	check := func(what string) {
		t.Helper()
		got := q.batches()
		if len(got) != len(want) || (len(got) > 0 && (got[0] != want[0] || got[len(got)-1] != want[len(want)-1])) {
			t.Fatalf("%s: queue holds %d batches, want %d", what, len(got), len(want))
		}
		if q.head > 1024 && 2*q.head > len(q.b) {
			t.Fatalf("%s: %d popped batches kept in front of %d", what, q.head, len(q.b)-q.head)
		}
	}
	push := func(n int) {
		for range n {
			b := tailBatch{base: next, maxTs: next * 7 % 13}
			next += 1 + next%3
			q.push(b)
			want = append(want, b)
			check("push")
		}
	}
	pop := func(n int) {
		for range n {
			q.pop()
			want = want[1:]
			check("pop")
		}
	}
	cut := func(k int) {
		offset := want[k].base
		q.cut(offset)
		want = want[:k]
		check("cut")
	}
	push(3000)
	pop(2500) // compacts
	push(100)
	cut(400)
	pop(300)
	push(2000)
	pop(2100) // drains
	if cap(q.b) == 0 || q.head != 0 {
		t.Fatalf("drained queue: head %d, capacity %d", q.head, cap(q.b))
	}
	push(5)
	cut(0)
	push(5)
	check("end")
}
