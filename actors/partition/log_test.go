package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func TestOpenEmpty(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, testOptions(t, dir))
	if l.LogStart() != 0 || l.LogEnd() != 0 || l.Size() != 0 || l.FirstRaftIndex() != 0 || l.LastRaftIndex() != 0 {
		t.Fatalf("empty log: start %d end %d size %d raft %d..%d", l.LogStart(), l.LogEnd(), l.Size(),
			l.FirstRaftIndex(), l.LastRaftIndex())
	}
	if b, err := l.Read(0, 100); err != nil || b != nil {
		t.Fatalf("Read(end) = %v, %v", b, err)
	}
	_, err := l.Read(1, 100)
	wantErr(t, err, ErrOffsetOutOfRange)
	if _, found, err := l.OffsetForTimestamp(0); found || err != nil {
		t.Fatalf("OffsetForTimestamp on empty log: %v %v", found, err)
	}
	if _, found, err := l.MaxTimestamp(); found || err != nil {
		t.Fatalf("MaxTimestamp on empty log: %v %v", found, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"00000000000000000000.log", "00000000000000000000.index",
		"00000000000000000000.timeindex", "00000000000000000000.raft", stateFileName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("missing %s: %v", name, err)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	for name, o := range map[string]Options{
		"no dir":         {},
		"tiny segments":  {Dir: t.TempDir(), SegmentBytes: 10},
		"huge segments":  {Dir: t.TempDir(), SegmentBytes: 1 << 32},
		"negative index": {Dir: t.TempDir(), IndexIntervalBytes: -1},
		"negative start": {Dir: t.TempDir(), StartOffset: -5},
	} {
		if _, err := Open(o); err == nil {
			t.Errorf("%s: Open accepted %+v", name, o)
		}
	}
}

func TestStartOffset(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	opts.StartOffset = 1000
	l := mustOpen(t, opts)
	if l.LogStart() != 1000 || l.LogEnd() != 1000 {
		t.Fatalf("start %d end %d, want 1000", l.LogStart(), l.LogEnd())
	}
	var m model
	m.add(t, l, mkBatch(t, spec{records: 3}), 0, nil)
	if l.LogEnd() != 1003 {
		t.Fatalf("end %d, want 1003", l.LogEnd())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	opts.StartOffset = 5 // ignored: the directory has a log
	l = mustOpen(t, opts)
	defer l.Close()
	if l.LogStart() != 1000 || l.LogEnd() != 1003 {
		t.Fatalf("reopened: start %d end %d", l.LogStart(), l.LogEnd())
	}
	m.check(t, l, 1000)
}

func TestAppendRefusals(t *testing.T) {
	l := mustOpen(t, testOptions(t, t.TempDir()))
	defer l.Close()
	var m model
	m.add(t, l, mkBatch(t, spec{records: 2}), 0, nil) // offsets 0-1, raft 1

	b := mkBatch(t, spec{records: 1})
	SetPartitionLeaderEpoch(b, 1)
	SetBaseOffset(b, 5)
	wantErr(t, l.Append(b, 10, 1), ErrAppendOrder)
	SetBaseOffset(b, 2)
	wantErr(t, l.Append(b, 1, 1), ErrAppendOrder) // raft index not increasing
	if err := l.Append(b, 2, 2); err == nil {
		t.Fatal("accepted a batch whose leader epoch is not the raft term")
	}
	bad := bytes.Clone(b)
	bad[len(bad)-1] ^= 1
	wantErr(t, l.Append(bad, 2, 1), ErrCorruptBatch)
	if l.LogEnd() != 2 || l.WrittenEnd() != 2 || l.LastRaftIndex() != 1 {
		t.Fatalf("a refused append changed the log: end %d written %d raft %d", l.LogEnd(), l.WrittenEnd(),
			l.LastRaftIndex())
	}
	if err := l.Append(b, 2, 1); err != nil {
		t.Fatal(err)
	}
}

func TestAppendFailureIsSticky(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	metrics := NewMetrics(nil)
	opts.writeErrors = metrics.writeErrors()
	l := mustOpen(t, opts)
	var m model
	m.add(t, l, mkBatch(t, spec{}), 0, nil)
	l.act.seg.log.Close() // the next write fails
	b := mkBatch(t, spec{})
	SetBaseOffset(b, 1)
	SetPartitionLeaderEpoch(b, 1)
	wantErr(t, l.Append(b, 2, 1), ErrLogFailed)
	wantErr(t, l.Append(b, 2, 1), ErrLogFailed)
	wantErr(t, l.TruncateTo(0), ErrLogFailed)
	wantErr(t, l.Flush(), ErrLogFailed)
	if l.LogEnd() != 1 {
		t.Fatalf("end %d after a failed append", l.LogEnd())
	}
	wantErr(t, l.Close(), ErrLogFailed)
	var got dto.Metric
	if err := metrics.WriteErrors.Write(&got); err != nil {
		t.Fatal(err)
	}
	if n := got.GetCounter().GetValue(); n != 1 {
		t.Fatalf("%v write errors counted, want 1 (the log's first failure)", n)
	}
}

func TestRoundTripAcrossRolls(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, testOptions(t, dir))
	rng := rand.New(rand.NewPCG(1, 2))
	var m model
	m.fill(t, l, rng, 400)
	if n := len(logFiles(t, dir)); n < 20 {
		t.Fatalf("only %d segments: the test does not roll enough", n)
	}
	m.check(t, l, 0)
	checkSegments(t, dir, l, &m)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := l.Read(0, 10)
	wantErr(t, err, ErrClosed)

	l = mustOpen(t, testOptions(t, dir))
	m.check(t, l, 0)
	m.fill(t, l, rng, 50)
	m.check(t, l, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, testOptions(t, dir))
	defer l.Close()
	m.check(t, l, 0)
	checkSegments(t, dir, l, &m)
	if l.FirstRaftIndex() != m.batches[0].raft || l.LastRaftIndex() != m.raft {
		t.Fatalf("raft indexes %d..%d, want %d..%d", l.FirstRaftIndex(), l.LastRaftIndex(), m.batches[0].raft, m.raft)
	}
}

// checkSegments checks the files against the model: every segment starts
// with its named offset and stays within SegmentBytes unless it holds one
// batch, the .log files hold exactly the batches, and the sizes add up.
func checkSegments(t *testing.T, dir string, l *Log, m *model) {
	t.Helper()
	var all []byte
	var total int64
	for _, name := range logFiles(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		base, _, _ := parseSegmentFileName(name)
		if len(b) > 0 && int64(binary.BigEndian.Uint64(b)) != base {
			t.Errorf("%s starts with offset %d", name, binary.BigEndian.Uint64(b))
		}
		if int64(len(b)) > l.opts.SegmentBytes {
			if h, err := ParseBatch(b); err != nil || h.Size() != len(b) {
				t.Errorf("%s has %d bytes, more than a segment, and not one batch", name, len(b))
			}
		}
		all = append(all, b...)
		total += int64(len(b))
	}
	var want []byte
	for _, s := range m.batches {
		if s.h.LastOffset() >= l.LogStart() || true {
			want = append(want, s.b...)
		}
	}
	if !bytes.HasSuffix(want, all) {
		t.Errorf("segment files (%d bytes) are not the appended batches (%d bytes)", len(all), len(want))
	}
	if total != l.Size() {
		t.Errorf("Size %d, files hold %d", l.Size(), total)
	}
}

func TestReadEveryOffset(t *testing.T) {
	l := mustOpen(t, testOptions(t, t.TempDir()))
	defer l.Close()
	var m model
	m.fill(t, l, rand.New(rand.NewPCG(3, 4)), 120)
	for off := int64(0); off < l.LogEnd(); off++ {
		k := m.containing(off)
		got, err := l.Read(off, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, m.batches[k].b) {
			t.Fatalf("Read(%d) did not return the batch at %d", off, m.batches[k].h.BaseOffset)
		}
		// With room for more, it returns following whole batches of the
		// same segment, never a partial one.
		got, err = l.Read(off, 700)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > 700 && len(got) != len(m.batches[k].b) {
			t.Fatalf("Read(%d, 700) returned %d bytes", off, len(got))
		}
		pieces, err := SplitBatches(got)
		if err != nil {
			t.Fatal(err)
		}
		for j, p := range pieces {
			if !bytes.Equal(p, m.batches[k+j].b) {
				t.Fatalf("Read(%d, 700): piece %d is not batch %d", off, j, k+j)
			}
		}
	}
	if b, err := l.Read(l.LogEnd(), 1000); err != nil || len(b) != 0 {
		t.Fatalf("Read(end) = %d bytes, %v", len(b), err)
	}
	for _, off := range []int64{-1, l.LogEnd() + 1} {
		_, err := l.Read(off, 1000)
		wantErr(t, err, ErrOffsetOutOfRange)
	}
}

func TestReadFillsMaxBytes(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	opts.SegmentBytes = 1 << 20
	l := mustOpen(t, opts)
	defer l.Close()
	var m model
	for range 10 {
		m.add(t, l, mkBatch(t, spec{records: 2, valueSize: 40}), 0, nil)
	}
	size := len(m.batches[0].b)
	for n := 1; n <= 10; n++ {
		got, err := l.Read(0, n*size)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n*size {
			t.Fatalf("Read(0, %d batches of bytes) = %d bytes, want %d", n, len(got), n*size)
		}
		if got, _ := l.Read(0, n*size-1); len(got) != max(n-1, 1)*size {
			t.Fatalf("Read(0, one byte short of %d batches) = %d bytes", n, len(got))
		}
	}
}

func TestReadOversizeFirstBatch(t *testing.T) {
	l := mustOpen(t, testOptions(t, t.TempDir()))
	defer l.Close()
	var m model
	m.add(t, l, mkBatch(t, spec{records: 2}), 0, nil)
	big := m.add(t, l, mkBatch(t, spec{records: 5, valueSize: 3000}), 0, nil) // bigger than a segment
	m.add(t, l, mkBatch(t, spec{records: 1}), 0, nil)
	for _, maxBytes := range []int{0, 1, 100, len(big.b) - 1} {
		got, err := l.Read(big.h.BaseOffset+2, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, big.b) {
			t.Fatalf("Read(maxBytes %d) = %d bytes, want the whole %d-byte batch", maxBytes, len(got), len(big.b))
		}
	}
	m.check(t, l, 0)
}

func TestIndexesAgainstBruteForce(t *testing.T) {
	for seed := uint64(0); seed < 4; seed++ {
		dir := t.TempDir()
		opts := testOptions(t, dir)
		opts.SegmentBytes = 4096
		opts.IndexIntervalBytes = 100 + int(seed)*150
		l := mustOpen(t, opts)
		rng := rand.New(rand.NewPCG(seed, 99))
		var m model
		m.fill(t, l, rng, 300)

		// Random lookups against a scan of the model.
		for range 500 {
			off := rng.Int64N(l.LogEnd())
			got, err := l.Read(off, 1)
			if err != nil {
				t.Fatal(err)
			}
			if want := m.batches[m.containing(off)].b; !bytes.Equal(got, want) {
				t.Fatalf("seed %d: Read(%d) returned the wrong batch", seed, off)
			}
			ts := 1_000_000 + rng.Int64N(int64(len(m.batches))*10+100) - 50
			checkOffsetForTimestamp(t, l, &m, ts)
		}
		checkIndexFiles(t, dir, &m, int64(opts.IndexIntervalBytes), false)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		checkIndexFiles(t, dir, &m, int64(opts.IndexIntervalBytes), true)
	}
}

// bruteOffsetForTimestamp scans the model's records.
func bruteOffsetForTimestamp(m *model, start, ts int64) (TimestampOffset, bool) {
	for _, s := range m.batches {
		for i, rts := range s.ts {
			off := s.h.BaseOffset + int64(i)
			if off >= start && rts >= ts {
				return TimestampOffset{Timestamp: rts, Offset: off}, true
			}
		}
	}
	return TimestampOffset{}, false
}

func checkOffsetForTimestamp(t *testing.T, l *Log, m *model, ts int64) {
	t.Helper()
	got, found, err := l.OffsetForTimestamp(ts)
	if err != nil {
		t.Fatal(err)
	}
	want, wantFound := bruteOffsetForTimestamp(m, l.LogStart(), ts)
	if got != want || found != wantFound {
		t.Fatalf("OffsetForTimestamp(%d) = %+v %v, want %+v %v", ts, got, found, want, wantFound)
	}
}

// checkIndexFiles checks every segment's .index, .timeindex and .raft file
// against the batches found by scanning its .log file, with the rules
// stated independently: an offset index entry for the first batch that
// starts more than interval bytes after the previous entry's batch (or the
// segment start); a time index entry wherever the running maximum timestamp
// grew since the last entry, at those same points, naming the first batch
// that reached it; when sealed, a last entry with the segment's maximum.
func checkIndexFiles(t *testing.T, dir string, m *model, interval int64, lastSealed bool) {
	t.Helper()
	names := logFiles(t, dir)
	for i, name := range names {
		base, _, _ := parseSegmentFileName(name)
		logBytes, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		type info struct {
			pos  int64
			h    BatchHeader
			raft stored
		}
		var batches []info
		for pos := int64(0); pos < int64(len(logBytes)); {
			n := int64(binary.BigEndian.Uint32(logBytes[pos+8:])) + 12
			h, err := ParseBatch(logBytes[pos : pos+n])
			if err != nil {
				t.Fatalf("%s at %d: %v", name, pos, err)
			}
			batches = append(batches, info{pos, h, m.batches[m.containing(h.BaseOffset)]})
			pos += n
		}
		var wantOff, wantTime, wantRaft []byte
		last, maxTs, maxRel, indexedTs := int64(0), int64(-1), uint32(0), int64(-1)
		for k, b := range batches {
			rel := uint32(b.h.LastOffset() - base)
			if b.h.MaxTimestamp > maxTs {
				maxTs, maxRel = b.h.MaxTimestamp, rel
			}
			if b.pos-last > interval {
				wantOff = binary.BigEndian.AppendUint32(wantOff, rel)
				wantOff = binary.BigEndian.AppendUint32(wantOff, uint32(b.pos))
				if maxTs > indexedTs {
					wantTime = binary.BigEndian.AppendUint64(wantTime, uint64(maxTs))
					wantTime = binary.BigEndian.AppendUint32(wantTime, maxRel)
					indexedTs = maxTs
				}
				last = b.pos
			}
			_ = k
			wantRaft = binary.BigEndian.AppendUint64(wantRaft, b.raft.raft)
			wantRaft = binary.BigEndian.AppendUint32(wantRaft, uint32(b.h.BaseOffset-base))
			wantRaft = binary.BigEndian.AppendUint32(wantRaft, uint32(b.pos))
			wantRaft = binary.BigEndian.AppendUint32(wantRaft, uint32(b.h.Size()))
			wantRaft = binary.BigEndian.AppendUint32(wantRaft, uint32(b.raft.term))
		}
		if (i < len(names)-1 || lastSealed) && maxTs > indexedTs {
			wantTime = binary.BigEndian.AppendUint64(wantTime, uint64(maxTs))
			wantTime = binary.BigEndian.AppendUint32(wantTime, maxRel)
		}
		for suffix, want := range map[string][]byte{offsetIndexSuffix: wantOff, timeIndexSuffix: wantTime, raftIndexSuffix: wantRaft} {
			got, err := os.ReadFile(filepath.Join(dir, segmentFileName(base, suffix)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s%s: %d bytes, want %d bytes:\n got %x\nwant %x", segmentFileName(base, ""), suffix,
					len(got), len(want), got, want)
			}
		}
	}
}

func TestEntryByRaftIndex(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, testOptions(t, dir))
	defer l.Close()
	var m model
	m.fill(t, l, rand.New(rand.NewPCG(5, 6)), 200)
	m.check(t, l, 0)
	inLog := map[uint64]bool{}
	for _, s := range m.batches {
		inLog[s.raft] = true
	}
	gaps := 0
	for i := uint64(0); i <= m.raft+3; i++ {
		if inLog[i] {
			continue
		}
		gaps++
		_, _, err := l.EntryByRaftIndex(i)
		wantErr(t, err, ErrRaftIndexNotInLog)
	}
	if gaps < 20 {
		t.Fatalf("only %d raft indexes without a batch: the test has too few gaps", gaps)
	}
	if l.FirstRaftIndex() != m.batches[0].raft || l.LastRaftIndex() != m.raft {
		t.Fatalf("raft range %d..%d, want %d..%d", l.FirstRaftIndex(), l.LastRaftIndex(), m.batches[0].raft, m.raft)
	}

	// Below the log start, batches are compacted away.
	start := m.batches[100].h.BaseOffset + 1 // inside batch 100 if it has several records
	if err := l.AdvanceLogStart(start); err != nil {
		t.Fatal(err)
	}
	k := m.containing(start)
	if got := l.FirstRaftIndex(); got != m.batches[k].raft {
		t.Fatalf("FirstRaftIndex %d, want %d", got, m.batches[k].raft)
	}
	for j, s := range m.batches {
		b, _, err := l.EntryByRaftIndex(s.raft)
		if j < k {
			wantErr(t, err, ErrRaftIndexNotInLog)
		} else if err != nil || !bytes.Equal(b, s.b) {
			t.Fatalf("EntryByRaftIndex(%d) after advance: %v", s.raft, err)
		}
	}
}

func TestTruncateTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, tc := range []struct {
		name string
		at   func(m *model, l *Log) int // index of the first batch to drop
	}{
		{"inside the active segment", func(m *model, l *Log) int { return len(m.batches) - 2 }},
		{"at the start of the active segment", func(m *model, l *Log) int {
			return m.containing(l.act.seg.base)
		}},
		{"inside an earlier segment", func(m *model, l *Log) int { return len(m.batches) / 2 }},
		{"first batch after the start", func(m *model, l *Log) int { return 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t, dir)
			l := mustOpen(t, opts)
			var m model
			m.fill(t, l, rng, 150)
			k := tc.at(&m, l)
			cut := m.batches[k].h.BaseOffset
			segsBefore := len(logFiles(t, dir))
			if err := l.TruncateTo(cut); err != nil {
				t.Fatal(err)
			}
			m.truncate(cut)
			if l.LogEnd() != cut || l.LastRaftIndex() != m.raft {
				t.Fatalf("after truncation: end %d raft %d, want %d and %d", l.LogEnd(), l.LastRaftIndex(), cut, m.raft)
			}
			m.check(t, l, 0)
			checkTimestamps(t, l, &m)
			if n := len(logFiles(t, dir)); n > segsBefore {
				t.Fatalf("%d segments after truncation, %d before", n, segsBefore)
			}
			// Raft indexes go on from the truncation point.
			m.fill(t, l, rng, 60)
			m.check(t, l, 0)
			checkTimestamps(t, l, &m)
			checkSegments(t, dir, l, &m)
			crash(l)
			l = mustOpen(t, opts)
			m.check(t, l, 0)
			checkTimestamps(t, l, &m)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, opts)
			defer l.Close()
			m.check(t, l, 0)
			checkTimestamps(t, l, &m)
		})
	}
}

// checkTimestamps compares OffsetForTimestamp and MaxTimestamp with a scan
// of the model's records.
func checkTimestamps(t *testing.T, l *Log, m *model) {
	t.Helper()
	lo, hi := int64(1<<62), int64(-1)
	for _, s := range m.batches {
		for _, ts := range s.ts {
			lo, hi = min(lo, ts), max(hi, ts)
		}
	}
	for ts := lo - 2; ts <= hi+2; ts += 7 {
		checkOffsetForTimestamp(t, l, m, ts)
	}
	got, found, err := l.MaxTimestamp()
	if err != nil {
		t.Fatal(err)
	}
	want, wantFound := TimestampOffset{}, false
	for _, s := range m.batches {
		for i, ts := range s.ts {
			if off := s.h.BaseOffset + int64(i); off >= l.LogStart() && (!wantFound || ts > want.Timestamp) {
				want, wantFound = TimestampOffset{Timestamp: ts, Offset: off}, true
			}
		}
	}
	if got != want || found != wantFound {
		t.Fatalf("MaxTimestamp = %+v %v, want %+v %v", got, found, want, wantFound)
	}
}

func TestTruncateToRefusals(t *testing.T) {
	l := mustOpen(t, testOptions(t, t.TempDir()))
	defer l.Close()
	var m model
	m.add(t, l, mkBatch(t, spec{records: 3}), 0, nil)
	m.add(t, l, mkBatch(t, spec{records: 3}), 0, nil)
	wantErr(t, l.TruncateTo(4), ErrNotBatchBoundary)
	wantErr(t, l.TruncateTo(7), ErrOffsetOutOfRange)
	if err := l.TruncateTo(6); err != nil { // the end: nothing to do
		t.Fatal(err)
	}
	if l.LogEnd() != 6 {
		t.Fatalf("end %d", l.LogEnd())
	}
}

func TestTruncateBelowStartResets(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, testOptions(t, dir))
	var m model
	m.fill(t, l, rand.New(rand.NewPCG(9, 9)), 100)
	start := m.batches[60].h.BaseOffset
	if err := l.AdvanceLogStart(start); err != nil {
		t.Fatal(err)
	}
	// A checkpoint older than the retention that followed it.
	if err := l.TruncateTo(m.batches[30].h.BaseOffset); err != nil {
		t.Fatal(err)
	}
	want := m.batches[30].h.BaseOffset
	if l.LogStart() != want || l.LogEnd() != want || l.LastRaftIndex() != 0 {
		t.Fatalf("start %d end %d raft %d, want an empty log at %d", l.LogStart(), l.LogEnd(), l.LastRaftIndex(), want)
	}
	if names := logFiles(t, dir); len(names) != 1 || names[0] != segmentFileName(want, logSuffix) {
		t.Fatalf("segments %v", names)
	}
	var m2 model
	m2.add(t, l, mkBatch(t, spec{records: 2}), 0, nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, testOptions(t, dir))
	defer l.Close()
	if l.LogStart() != want || l.LogEnd() != want+2 {
		t.Fatalf("reopened: start %d end %d", l.LogStart(), l.LogEnd())
	}
}

func TestReset(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, testOptions(t, dir))
	var m model
	m.fill(t, l, rand.New(rand.NewPCG(10, 10)), 80)
	if err := l.Reset(5000); err != nil {
		t.Fatal(err)
	}
	if l.LogStart() != 5000 || l.LogEnd() != 5000 || l.Size() != 0 {
		t.Fatalf("after reset: start %d end %d size %d", l.LogStart(), l.LogEnd(), l.Size())
	}
	if _, _, err := l.EntryByRaftIndex(m.raft); !errors.Is(err, ErrRaftIndexNotInLog) {
		t.Fatalf("old entry still found: %v", err)
	}
	var m2 model
	m2.fill(t, l, rand.New(rand.NewPCG(11, 11)), 30)
	crash(l)
	l = mustOpen(t, testOptions(t, dir))
	defer l.Close()
	if l.LogStart() != 5000 {
		t.Fatalf("start %d after reopen", l.LogStart())
	}
	m2.check(t, l, 5000)
}

func TestAdvanceLogStart(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l := mustOpen(t, opts)
	var m model
	m.fill(t, l, rand.New(rand.NewPCG(12, 12)), 200)
	segs := logFiles(t, dir)

	if err := l.AdvanceLogStart(0); err != nil { // no-op
		t.Fatal(err)
	}
	wantErr(t, l.AdvanceLogStart(l.LogEnd()+1), ErrOffsetOutOfRange)

	// Into the middle of the fourth segment: three are retired, and go
	// when a checkpoint past them is durable.
	base3, _, _ := parseSegmentFileName(segs[3])
	start := base3 + 2
	if err := l.AdvanceLogStart(start); err != nil {
		t.Fatal(err)
	}
	if l.LogStart() != start {
		t.Fatalf("start %d, want %d", l.LogStart(), start)
	}
	if got := logFiles(t, dir); !slices.Equal(got, segs) {
		t.Fatalf("segments %v after the advance, want all of %v", got, segs)
	}
	if err := l.ReleaseSegments(m.raft); err != nil {
		t.Fatal(err)
	}
	if got := logFiles(t, dir); len(got) != len(segs)-3 || got[0] != segs[3] {
		t.Fatalf("segments %v, want from %s", got, segs[3])
	}
	for _, name := range segs[:3] {
		base, _, _ := parseSegmentFileName(name)
		for _, suffix := range []string{offsetIndexSuffix, timeIndexSuffix, raftIndexSuffix} {
			if _, err := os.Stat(filepath.Join(dir, segmentFileName(base, suffix))); !os.IsNotExist(err) {
				t.Errorf("%s%s not deleted", name, suffix)
			}
		}
	}
	_, err := l.Read(start-1, 100)
	wantErr(t, err, ErrOffsetOutOfRange)
	m.check(t, l, start)
	checkTimestamps(t, l, &m)
	if err := l.AdvanceLogStart(start - 1); err != nil || l.LogStart() != start {
		t.Fatalf("moving the start back: %v, start %d", err, l.LogStart())
	}

	// Flush records the first segment's base as the start, at or below
	// every batch a WAL may name; a reopen keeps it, and the partition
	// advances it again from its checkpoint.
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	crash(l)
	l = mustOpen(t, opts)
	if l.LogStart() != base3 {
		t.Fatalf("reopened: start %d, want the first segment's base %d", l.LogStart(), base3)
	}
	if err := l.AdvanceLogStart(start); err != nil {
		t.Fatal(err)
	}
	m.check(t, l, start)

	// Up to the log end: every sealed segment goes, the active one stays.
	end := l.LogEnd()
	if err := l.AdvanceLogStart(end); err != nil {
		t.Fatal(err)
	}
	if err := l.ReleaseSegments(m.raft); err != nil {
		t.Fatal(err)
	}
	if got := logFiles(t, dir); len(got) != 1 {
		t.Fatalf("segments %v after advancing to the end", got)
	}
	if l.FirstRaftIndex() != 0 || l.LastRaftIndex() != 0 {
		t.Fatalf("empty log has raft indexes %d..%d", l.FirstRaftIndex(), l.LastRaftIndex())
	}
	if _, found, _ := l.MaxTimestamp(); found {
		t.Fatal("MaxTimestamp found a record in an empty log")
	}
	m.fill(t, l, rand.New(rand.NewPCG(13, 13)), 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, opts)
	defer l.Close()
	first, _, _ := parseSegmentFileName(logFiles(t, dir)[0])
	if l.LogStart() != first {
		t.Fatalf("start %d, want the only segment's base %d", l.LogStart(), first)
	}
	if err := l.AdvanceLogStart(end); err != nil {
		t.Fatal(err)
	}
	m.check(t, l, end)
}

func TestRetentionPoint(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	opts.SegmentBytes = 1000
	l := mustOpen(t, opts)
	defer l.Close()
	var m model
	// Ten segments of 4 batches of about 240 bytes, segment i holding
	// timestamps 1000*i .. 1000*i+3 (written out of order within).
	for i := range 10 {
		for j := range 4 {
			ts := int64(1000*i + (j+2)%4)
			m.add(t, l, mkBatch(t, spec{records: 1, ts: []int64{ts}, valueSize: 150}), 0, nil)
		}
	}
	v := l.view.Load()
	if len(v.sealed) != 9 {
		t.Fatalf("%d sealed segments, want 9", len(v.sealed))
	}
	base := func(i int) int64 { return v.segment(i).seg.base }
	segBytes := v.sealed[0].size
	for _, tc := range []struct {
		name                 string
		now, retMs, retBytes int64
		want                 int64
	}{
		{"nothing configured", 1 << 40, -1, -1, 0},
		{"nothing old enough", 3000, 10_000, -1, 0},
		{"two segments older", 2004, 1000, -1, base(2)},
		{"exactly retention.ms old is kept", 2003, 1000, -1, base(1)},
		{"three segments older", 3004, 1000, -1, base(3)},
		{"everything old, the active one too", 1 << 40, 0, -1, l.LogEnd()},
		{"every sealed one old, the active one not", 9004, 1000, -1, base(9)},
		{"size: fits", 0, -1, l.Size(), 0},
		{"size: one byte over", 0, -1, l.Size() - 1, 0},
		{"size: one segment over", 0, -1, l.Size() - segBytes, base(1)},
		{"size: what remains stays at or above the limit", 0, -1, l.Size() - 3*segBytes - 1, base(3)},
		{"size: exactly three segments over", 0, -1, l.Size() - 3*segBytes, base(3)},
		{"size: zero, the active one too", 0, -1, 0, l.LogEnd()},
		{"size: the active one alone over", 0, -1, l.Size() - 9*segBytes - 1, base(9)},
		{"both: the furthest wins", 2004, 1000, l.Size() - 3*segBytes, base(3)},
	} {
		if got := l.RetentionPoint(tc.now, tc.retMs, tc.retBytes); got != tc.want {
			t.Errorf("%s: RetentionPoint = %d, want %d", tc.name, got, tc.want)
		}
	}
	if err := l.AdvanceLogStart(base(4) + 1); err != nil {
		t.Fatal(err)
	}
	if got := l.RetentionPoint(3004, 1000, -1); got != base(4)+1 {
		t.Errorf("retention behind the log start returned %d, want the start %d", got, base(4)+1)
	}
}

// TestTruncationStateIsDurableFirst checks that a truncation and a reset
// make the state they record durable, directory entry included, before they
// cut or delete a segment.
func TestTruncationStateIsDurableFirst(t *testing.T) {
	for _, tc := range []struct {
		name string
		// state is the state the operation records; at is its argument.
		state func(l *Log, m *model) (st logState, at int64)
		do    func(l *Log, at int64) error
	}{
		{"truncate inside an earlier segment", func(l *Log, m *model) (logState, int64) {
			cut := m.batches[len(m.batches)/3].h.BaseOffset
			all := l.segments()
			return logState{recoveryPoint: all.segment(all.segmentIndex(cut)).seg.base, logStart: l.LogStart()}, cut
		}, (*Log).TruncateTo},
		{"reset", func(l *Log, _ *model) (logState, int64) {
			// The recovery point stays below the old segments, which
			// are deleted after it.
			return logState{recoveryPoint: l.firstBase(), logStart: 7000}, 7000
		}, (*Log).Reset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, testOptions(t, dir))
			defer l.Close()
			var m model
			m.fill(t, l, rand.New(rand.NewPCG(21, 22)), 150)
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			segs := logFiles(t, dir)
			if len(segs) < 3 {
				t.Fatalf("%d segments, want several", len(segs))
			}
			want, at := tc.state(l, &m)
			if st, _, _, _ := readState(dir); st == want {
				t.Fatalf("the state before the operation is already %+v: the test shows nothing", st)
			}
			var ok bool
			fsync := l.fsync
			l.fsync = func(f *os.File) error {
				if err := fsync(f); err != nil {
					return err
				}
				info, err := f.Stat()
				if err != nil || !info.IsDir() || ok {
					return err
				}
				st, have, _, err := readState(dir)
				if err != nil || !have || st != want {
					return err
				}
				for _, name := range segs {
					if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
						return nil // a segment is cut already: too late
					}
				}
				ok = true
				return nil
			}
			if err := tc.do(l, at); err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Fatalf("no directory fsync made the state %+v durable before the first segment was cut", want)
			}
		})
	}
}
