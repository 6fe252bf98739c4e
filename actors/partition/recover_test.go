package partition

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// events collects a Log's zerolog events.
type events struct {
	mu    sync.Mutex
	lines []map[string]any
}

func (e *events) Write(p []byte) (int, error) {
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return 0, err
	}
	e.mu.Lock()
	e.lines = append(e.lines, m)
	e.mu.Unlock()
	return len(p), nil
}

// with returns the events with the given message.
func (e *events) with(msg string) []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []map[string]any
	for _, m := range e.lines {
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (e *events) reset() {
	e.mu.Lock()
	e.lines = nil
	e.mu.Unlock()
}

// crashedLog builds a log of several segments, flushes it and then appends
// a few more batches, and abandons it as a crash would.
func crashedLog(t *testing.T, dir string, seed uint64, consecutiveRaft bool) *model {
	t.Helper()
	l := mustOpen(t, testOptions(t, dir))
	var m model
	rng := rand.New(rand.NewPCG(seed, seed))
	if consecutiveRaft {
		for range 60 {
			m.add(t, l, mkBatch(t, spec{records: 1 + rng.IntN(3), valueSize: rng.IntN(100), baseTs: int64(1000 + len(m.batches))}), 0, nil)
		}
	} else {
		m.fill(t, l, rng, 60)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	m.fill(t, l, rng, 3)
	crash(l)
	for i := range m.batches {
		if m.batches[i].ts == nil {
			m.batches[i].ts = recordTimestamps(t, m.batches[i].b)
		}
	}
	return &m
}

func recordTimestamps(t *testing.T, b []byte) []int64 {
	h, err := ParseBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	var ts []int64
	if err := eachRecord(b, h, func(_, t int64) bool { ts = append(ts, t); return true }); err != nil {
		t.Fatal(err)
	}
	return ts
}

// lastBatchPos returns the position of the last batch in the last segment.
func lastBatchPos(t *testing.T, dir string, m *model) (string, int64) {
	names := logFiles(t, dir)
	name := names[len(names)-1]
	info, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return name, info.Size() - int64(len(m.batches[len(m.batches)-1].b))
}

func TestRecoverTornTail(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, testOptions(t, dir))
	m := &model{}
	m.fill(t, l, rand.New(rand.NewPCG(1, 1)), 30)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	// A small last batch, so that trying every byte of it stays quick.
	m.add(t, l, mkBatch(t, spec{records: 2, valueSize: 3, baseTs: 5}), 0, []int64{5, 6})
	crash(l)
	orig := dirFiles(t, dir)
	name, pos := lastBatchPos(t, dir, m)
	last := m.batches[len(m.batches)-1]
	good := model{batches: m.batches[:len(m.batches)-1]}
	var ev events
	opts := testOptions(t, dir)
	opts.Log = zerolog.New(&ev)

	check := func(t *testing.T, what string) {
		t.Helper()
		ev.reset()
		l, err := Open(opts)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if l.LogEnd() != last.h.BaseOffset || l.LastRaftIndex() != good.batches[len(good.batches)-1].raft {
			t.Fatalf("%s: end %d raft %d, want %d", what, l.LogEnd(), l.LastRaftIndex(), last.h.BaseOffset)
		}
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.Size() != pos {
			t.Fatalf("%s: %s not cut at %d: %v %v", what, name, pos, info.Size(), err)
		}
		raft, _ := os.ReadFile(filepath.Join(dir, strings.TrimSuffix(name, logSuffix)+raftIndexSuffix))
		if got := getRaftEntry(raft[len(raft)-raftEntrySize:]).index; got != l.LastRaftIndex() {
			t.Fatalf("%s: .raft ends with index %d", what, got)
		}
		warnings := ev.with("truncated torn or corrupt log tail")
		if len(warnings) != 1 || warnings[0]["file"] != name || warnings[0]["position"] != float64(pos) ||
			warnings[0]["level"] != "warn" {
			t.Fatalf("%s: warnings %v", what, warnings)
		}
		good.check(t, l, 0)
		// The log goes on: the partition replays the lost batch.
		var again model
		again.raft, again.term = good.batches[len(good.batches)-1].raft, last.term
		again.add(t, l, last.b, 0, nil)
		crash(l)
	}

	for cut := pos + 1; cut < pos+int64(len(last.b)); cut++ {
		restoreDir(t, dir, orig)
		if err := os.Truncate(filepath.Join(dir, name), cut); err != nil {
			t.Fatal(err)
		}
		check(t, "cut at "+itoa(cut))
	}
	for i := range len(last.b) {
		restoreDir(t, dir, orig)
		b := bytes.Clone(orig[name])
		b[pos+int64(i)] ^= 0x10
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		check(t, "flip at byte "+itoa(int64(i)))
	}
	// The batch is whole but its Raft index entry never made it.
	restoreDir(t, dir, orig)
	raftName := strings.TrimSuffix(name, logSuffix) + raftIndexSuffix
	if err := os.Truncate(filepath.Join(dir, raftName), int64(len(orig[raftName])-5)); err != nil {
		t.Fatal(err)
	}
	check(t, "torn raft index entry")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestRecoverUnflushedSealedSegment(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l := mustOpen(t, opts)
	var m model
	rng := rand.New(rand.NewPCG(2, 2))
	m.fill(t, l, rng, 40)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	flushedSegs := len(logFiles(t, dir))
	m.fill(t, l, rng, 40) // several rolls after the flush
	crash(l)
	names := logFiles(t, dir)
	if len(names) < flushedSegs+2 {
		t.Fatalf("only %d segments after the flush", len(names)-flushedSegs)
	}
	// The OS lost the end of a segment sealed after the flush.
	victim := names[len(names)-2]
	base, _, _ := parseSegmentFileName(victim)
	vb, _ := os.ReadFile(filepath.Join(dir, victim))
	var batchStarts []int64
	for pos := int64(0); pos < int64(len(vb)); {
		batchStarts = append(batchStarts, pos)
		h := decodeHeader(vb[pos:])
		pos += int64(h.Size())
	}
	k := len(batchStarts) / 2
	if err := os.Truncate(filepath.Join(dir, victim), batchStarts[k]+7); err != nil {
		t.Fatal(err)
	}
	var ev events
	opts.Log = zerolog.New(&ev)
	l = mustOpen(t, opts)
	defer l.Close()
	cut := base + int64(decodeHeader(vb[batchStarts[k]:]).BaseOffset-base)
	if l.LogEnd() != cut {
		t.Fatalf("end %d, want %d", l.LogEnd(), cut)
	}
	if got := logFiles(t, dir); got[len(got)-1] != victim {
		t.Fatalf("segments after the cut remain: %v", got)
	}
	if w := ev.with("truncated torn or corrupt log tail"); len(w) != 1 || w[0]["file"] != victim ||
		w[0]["deleted_segments"] != float64(1) {
		t.Fatalf("warnings %v", w)
	}
	m.truncate(cut)
	m.check(t, l, 0)
	checkTimestamps(t, l, &m)
	m.fill(t, l, rng, 5)
	m.check(t, l, 0)
}

func TestRecoverDamagedSyncedSegmentFails(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l := mustOpen(t, opts)
	var m model
	m.fill(t, l, rand.New(rand.NewPCG(3, 3)), 80)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names := logFiles(t, dir)
	orig := dirFiles(t, dir)
	for _, damage := range []struct {
		name string
		do   func()
	}{
		{"synced segment torn", func() {
			os.Truncate(filepath.Join(dir, names[2]), int64(len(orig[names[2]])-3))
		}},
		{"synced segment missing", func() { os.Remove(filepath.Join(dir, names[2])) }},
	} {
		restoreDir(t, dir, orig)
		damage.do()
		if _, err := Open(opts); err == nil {
			t.Errorf("%s: Open succeeded", damage.name)
		} else {
			wantErr(t, err, ErrCorruptSegment)
		}
	}
}

func TestRecoverRebuildsIndexes(t *testing.T) {
	damages := []struct {
		name string
		do   func(b []byte) []byte // nil result: delete the file
	}{
		{"deleted", func([]byte) []byte { return nil }},
		{"short by an entry", func(b []byte) []byte { return b[:max(len(b)-12, 0)] }},
		{"torn entry", func(b []byte) []byte { return b[:max(len(b)-3, 0)] }},
		{"garbage after", func(b []byte) []byte { return append(b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12) }},
		{"last entry flipped", func(b []byte) []byte {
			if len(b) > 0 {
				b[len(b)-1] ^= 0x01
			}
			return b
		}},
		{"emptied", func([]byte) []byte { return []byte{} }},
	}
	for _, clean := range []bool{true, false} {
		dir := t.TempDir()
		opts := testOptions(t, dir)
		l := mustOpen(t, opts)
		var m model
		m.fill(t, l, rand.New(rand.NewPCG(4, 4)), 80)
		if clean {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			crash(l)
		}
		orig := dirFiles(t, dir)
		names := logFiles(t, dir)
		for _, suffix := range []string{offsetIndexSuffix, timeIndexSuffix} {
			for _, victim := range []string{names[1], names[len(names)-1]} {
				file := strings.TrimSuffix(victim, logSuffix) + suffix
				if len(orig[file]) == 0 {
					t.Fatalf("%s is empty: the test damages nothing", file)
				}
				for _, d := range damages {
					restoreDir(t, dir, orig)
					b := d.do(bytes.Clone(orig[file]))
					path := filepath.Join(dir, file)
					if b == nil {
						os.Remove(path)
					} else {
						os.WriteFile(path, b, 0o644)
					}
					l := mustOpen(t, opts)
					got, _ := os.ReadFile(path)
					if !bytes.Equal(got, orig[file]) {
						t.Fatalf("clean %v, %s %s: rebuilt to %x, want %x", clean, file, d.name, got, orig[file])
					}
					m.check(t, l, 0)
					checkTimestamps(t, l, &m)
					crash(l)
				}
			}
		}
	}
}

func TestRecoverRaftIndex(t *testing.T) {
	dir := t.TempDir()
	m := crashedLog(t, dir, 5, true) // consecutive Raft indexes: neighbours prove them
	orig := dirFiles(t, dir)
	names := logFiles(t, dir)
	opts := testOptions(t, dir)
	raftOf := func(name string) string { return strings.TrimSuffix(name, logSuffix) + raftIndexSuffix }

	for _, d := range []struct {
		name string
		do   func(b []byte) []byte
	}{
		{"deleted", func([]byte) []byte { return nil }},
		{"short", func(b []byte) []byte { return b[:len(b)-raftEntrySize] }},
		{"torn", func(b []byte) []byte { return b[:len(b)-1] }},
		{"index flipped", func(b []byte) []byte { b[raftEntrySize+7] ^= 4; return b }},
	} {
		restoreDir(t, dir, orig)
		file := raftOf(names[2])
		if b := d.do(bytes.Clone(orig[file])); b == nil {
			os.Remove(filepath.Join(dir, file))
		} else {
			os.WriteFile(filepath.Join(dir, file), b, 0o644)
		}
		l := mustOpen(t, opts)
		if got, _ := os.ReadFile(filepath.Join(dir, file)); !bytes.Equal(got, orig[file]) {
			t.Fatalf("%s: raft index rebuilt wrong:\n got %x\nwant %x", d.name, got, orig[file])
		}
		m.check(t, l, 0)
		crash(l)
	}

	// The first segment has no lower neighbour.
	restoreDir(t, dir, orig)
	os.Remove(filepath.Join(dir, raftOf(names[0])))
	_, err := Open(opts)
	wantErr(t, err, ErrCorruptSegment)

	// The last segment's batches lose their Raft indexes: they are dropped
	// as a torn tail, to be replayed from the WAL.
	restoreDir(t, dir, orig)
	os.Remove(filepath.Join(dir, raftOf(names[len(names)-1])))
	l := mustOpen(t, opts)
	base, _, _ := parseSegmentFileName(names[len(names)-1])
	if l.LogEnd() != base {
		t.Fatalf("end %d, want the last segment emptied at %d", l.LogEnd(), base)
	}
	m.truncate(base)
	m.check(t, l, 0)
	crash(l)
}

func TestRecoverRaftIndexGapsFail(t *testing.T) {
	dir := t.TempDir()
	crashedLog(t, dir, 6, false) // Raft index gaps: nothing proves a lost index
	names := logFiles(t, dir)
	os.Remove(filepath.Join(dir, strings.TrimSuffix(names[3], logSuffix)+raftIndexSuffix))
	_, err := Open(testOptions(t, dir))
	wantErr(t, err, ErrCorruptSegment)
}

func TestRecoverStateAndLeftovers(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l := mustOpen(t, opts)
	var m model
	m.fill(t, l, rand.New(rand.NewPCG(7, 7)), 80)
	names := logFiles(t, dir)
	deleted := dirFiles(t, dir)
	start := m.batches[30].h.BaseOffset + 1
	if err := l.AdvanceLogStart(start); err != nil {
		t.Fatal(err)
	}
	if err := l.ReleaseSegments(m.raft); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	kept, _, _ := parseSegmentFileName(logFiles(t, dir)[0])
	orig := dirFiles(t, dir)
	for name := range deleted {
		if _, ok := orig[name]; ok {
			delete(deleted, name)
		}
	}
	if len(deleted) == 0 {
		t.Fatal("nothing deleted")
	}

	// A crash brought deleted segments back, and left leftovers. The
	// segments come back retired: the start recorded is the first kept
	// segment's base, and the next release deletes them again.
	restoreDir(t, dir, orig)
	for name, b := range deleted {
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "00000000000000099999.index"), []byte{1, 2}, 0o644)
	os.WriteFile(filepath.Join(dir, stateFileName+".tmp"), []byte{1, 2}, 0o644)
	l = mustOpen(t, opts)
	if l.LogStart() != kept {
		t.Fatalf("start %d, want the first kept segment's base %d", l.LogStart(), kept)
	}
	got := dirFiles(t, dir)
	for name := range got {
		if _, ok := orig[name]; !ok && deleted[name] == nil {
			t.Errorf("leftover %s not removed", name)
		}
	}
	if err := l.AdvanceLogStart(start); err != nil {
		t.Fatal(err)
	}
	m.check(t, l, start)
	if err := l.ReleaseSegments(m.raft); err != nil {
		t.Fatal(err)
	}
	if got := logFiles(t, dir); got[0] != segmentFileName(kept, logSuffix) {
		t.Fatalf("segments %v after releasing the ones brought back", got)
	}
	crash(l)

	// Without a state file every segment is scanned; the start falls back
	// to the first segment's base until the partition advances it.
	for _, state := range [][]byte{nil, []byte("garbage"), func() []byte {
		b := bytes.Clone(orig[stateFileName])
		b[7] ^= 1
		return b
	}()} {
		restoreDir(t, dir, orig)
		if state == nil {
			os.Remove(filepath.Join(dir, stateFileName))
		} else {
			os.WriteFile(filepath.Join(dir, stateFileName), state, 0o644)
		}
		l = mustOpen(t, opts)
		first, _, _ := parseSegmentFileName(logFiles(t, dir)[0])
		if l.LogStart() != first {
			t.Fatalf("start %d, want the first base %d", l.LogStart(), first)
		}
		m.check(t, l, start)
		crash(l)
	}
	_ = names
}

func TestRecoverGapBetweenSegments(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l := mustOpen(t, opts)
	var m model
	rng := rand.New(rand.NewPCG(8, 8))
	m.fill(t, l, rng, 20)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	flushed := len(logFiles(t, dir))
	m.fill(t, l, rng, 60)
	crash(l)
	names := logFiles(t, dir)
	// A segment written after the flush is lost entirely.
	lost := names[flushed+1]
	base, _, _ := parseSegmentFileName(lost)
	os.Remove(filepath.Join(dir, lost))
	var ev events
	opts.Log = zerolog.New(&ev)
	l = mustOpen(t, opts)
	defer l.Close()
	if l.LogEnd() != base {
		t.Fatalf("end %d, want %d", l.LogEnd(), base)
	}
	if w := ev.with("truncated log at a gap between segments"); len(w) != 1 {
		t.Fatalf("warnings %v", ev.lines)
	}
	if got := logFiles(t, dir); len(got) != flushed+1 {
		t.Fatalf("segments %v", got)
	}
	m.truncate(base)
	m.check(t, l, 0)
}

func TestRecoverInterruptedReset(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, dir)
	l := mustOpen(t, opts)
	var m model
	m.fill(t, l, rand.New(rand.NewPCG(9, 9)), 30)
	crash(l)
	// Reset writes the state first; the crash came before the deletions.
	if err := writeState((*os.File).Sync, dir, logState{recoveryPoint: 9000, logStart: 9000}); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, opts)
	defer l.Close()
	if l.LogStart() != 9000 || l.LogEnd() != 9000 {
		t.Fatalf("start %d end %d, want 9000", l.LogStart(), l.LogEnd())
	}
	if got := logFiles(t, dir); len(got) != 1 || got[0] != segmentFileName(9000, logSuffix) {
		t.Fatalf("segments %v", got)
	}
}
