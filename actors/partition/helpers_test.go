package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// spec describes a batch for mkBatch.
type spec struct {
	records   int     // number of records; 0 means 1
	baseTs    int64   // timestamp of the first record when ts is nil
	ts        []int64 // each record's timestamp; overrides baseTs
	valueSize int     // bytes of each record's value

	idempotent bool // sets producer id, epoch and sequence below; otherwise -1s
	pid        int64
	epoch      int16
	seq        int32

	attrs int16 // compression, timestamp type, transactional, control bits
	// maxTs overrides the batch's maxTimestamp (log-append-time batches).
	maxTs *int64
}

// mkBatch builds a valid magic 2 record batch with kmsg, the way a client
// would: base offset 0, leader epoch -1, CRC-32C over attributes onwards.
func mkBatch(t testing.TB, s spec) []byte {
	t.Helper()
	n := max(s.records, 1)
	ts := s.ts
	if ts == nil {
		ts = make([]int64, n)
		for i := range ts {
			ts[i] = s.baseTs + int64(i)
		}
	}
	if len(ts) != n {
		t.Fatalf("spec has %d timestamps for %d records", len(ts), n)
	}
	first, maxTs := ts[0], ts[0]
	for _, x := range ts {
		maxTs = max(maxTs, x)
	}
	if s.maxTs != nil {
		maxTs = *s.maxTs
	}
	var recs []byte
	for i := range n {
		r := kmsg.Record{
			TimestampDelta64: ts[i] - first,
			OffsetDelta:      int32(i),
			Key:              []byte{byte(i)},
			Value:            bytes.Repeat([]byte{byte('a' + i%26)}, s.valueSize),
		}
		r.Length = int32(len(r.AppendTo(nil)) - 1) // the body after a 1-byte varint 0
		recs = r.AppendTo(recs)
	}
	pid, epoch, seq := int64(-1), int16(-1), int32(-1)
	if s.idempotent {
		pid, epoch, seq = s.pid, s.epoch, s.seq
	}
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           s.attrs,
		LastOffsetDelta:      int32(n - 1),
		FirstTimestamp:       first,
		MaxTimestamp:         maxTs,
		ProducerID:           pid,
		ProducerEpoch:        epoch,
		FirstSequence:        seq,
		NumRecords:           int32(n),
		Records:              recs,
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[batchLengthPos:], uint32(len(b)-batchLengthOverhead))
	binary.BigEndian.PutUint32(b[crcPos:], crc32.Checksum(b[attributesPos:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func ptr[T any](v T) *T { return &v }

// testOptions returns options for a log in dir with small segments and a
// logger that writes to the test log.
func testOptions(t testing.TB, dir string) Options {
	return Options{
		Dir:                dir,
		SegmentBytes:       2048,
		IndexIntervalBytes: 256,
		Log:                zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	}
}

func mustOpen(t testing.TB, opts Options) *Log {
	t.Helper()
	l, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// stored is a batch the model appended.
type stored struct {
	b          []byte // as stamped
	h          BatchHeader
	raft, term uint64
	ts         []int64 // record timestamps
}

// model is what a test appended to a log, in order.
type model struct {
	batches []stored
	raft    uint64
	term    uint64
	// checkpoint is the Raft index a checkpoint after the test's last
	// Flush would record: the WAL keeps its references only after it.
	checkpoint uint64
}

// add stamps batch b at the written end, appends it with the next Raft
// index (skipping gap indexes first, like no-op entries), commits it and
// records it.
func (m *model) add(t testing.TB, l *Log, b []byte, gap int, ts []int64) stored {
	t.Helper()
	s := m.write(t, l, b, gap, ts)
	if end, err := l.Commit(s.raft); err != nil || end != s.h.NextOffset() {
		t.Fatalf("commit raft index %d: end %d, %v; want %d", s.raft, end, err, s.h.NextOffset())
	}
	return s
}

// write is add without the commit: the batch stays in the uncommitted tail.
func (m *model) write(t testing.TB, l *Log, b []byte, gap int, ts []int64) stored {
	t.Helper()
	b = bytes.Clone(b)
	if m.term == 0 {
		m.term = 1
	}
	m.raft += uint64(gap) + 1
	SetBaseOffset(b, l.WrittenEnd())
	SetPartitionLeaderEpoch(b, int32(m.term))
	if err := l.Append(b, m.raft, m.term); err != nil {
		t.Fatalf("append at %d: %v", l.WrittenEnd(), err)
	}
	h, err := ParseBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	s := stored{b: b, h: h, raft: m.raft, term: m.term, ts: ts}
	m.batches = append(m.batches, s)
	return s
}

// kept is what the WAL's references say of m's batches after the
// checkpoint at Raft index after, as NewMachine gives it to Open
// (Options.kept).
func (m *model) kept(after uint64) map[int64]keptIndex {
	k := make(map[int64]keptIndex, len(m.batches))
	for _, s := range m.batches {
		if s.raft > after {
			k[s.h.BaseOffset] = keptIndex{index: s.raft, term: s.term, ref: refOf(s.h)}
		}
	}
	return k
}

// fill appends n random batches: 1-4 records, random value sizes, random
// timestamps (not monotonic), occasional Raft index gaps and term changes.
func (m *model) fill(t testing.TB, l *Log, rng *rand.Rand, n int) {
	t.Helper()
	for range n {
		recs := 1 + rng.IntN(4)
		ts := make([]int64, recs)
		for i := range ts {
			ts[i] = 1_000_000 + int64(len(m.batches))*10 + rng.Int64N(40) - 20
		}
		if rng.IntN(5) == 0 {
			m.term++
		}
		gap := 0
		if rng.IntN(4) == 0 {
			gap = 1 + rng.IntN(2)
		}
		m.add(t, l, mkBatch(t, spec{records: recs, ts: ts, valueSize: rng.IntN(120)}), gap, ts)
	}
}

// truncate forgets the batches at or above offset.
func (m *model) truncate(offset int64) {
	k := sort.Search(len(m.batches), func(i int) bool { return m.batches[i].h.BaseOffset >= offset })
	m.batches = m.batches[:k]
	if k > 0 {
		m.raft = m.batches[k-1].raft
	} else {
		m.raft = 0
	}
}

func (m *model) end() int64 {
	if len(m.batches) == 0 {
		return 0
	}
	return m.batches[len(m.batches)-1].h.NextOffset()
}

// containing returns the index of the batch containing offset.
func (m *model) containing(offset int64) int {
	return sort.Search(len(m.batches), func(i int) bool { return m.batches[i].h.LastOffset() >= offset })
}

// checkBatches verifies that every batch of the model from offset start on
// reads back byte for byte, and by Raft index.
func (m *model) check(t testing.TB, l *Log, start int64) {
	t.Helper()
	if got, want := l.LogEnd(), m.end(); got != want && len(m.batches) > 0 {
		t.Fatalf("LogEnd %d, want %d", got, want)
	}
	for _, s := range m.batches {
		if s.h.LastOffset() < start {
			continue
		}
		got, err := l.Read(max(s.h.BaseOffset, start), 1)
		if err != nil {
			t.Fatalf("read %d: %v", s.h.BaseOffset, err)
		}
		if !bytes.Equal(got, s.b) {
			t.Fatalf("read %d: got %d bytes, want the %d-byte batch", s.h.BaseOffset, len(got), len(s.b))
		}
		b, term, err := l.EntryByRaftIndex(s.raft)
		if err != nil || term != s.term || !bytes.Equal(b, s.b) {
			t.Fatalf("EntryByRaftIndex(%d) = %d bytes, term %d, %v; want batch at %d, term %d",
				s.raft, len(b), term, err, s.h.BaseOffset, s.term)
		}
	}
}

// crash abandons the log as a killed process would: descriptors closed,
// nothing flushed or sealed, no state written.
func crash(l *Log) {
	for _, segs := range [][]segView{l.retired, l.sealed} {
		for i := range segs {
			segs[i].seg.log.Close()
		}
	}
	for _, ps := range l.unsynced {
		ps.files.close()
	}
	l.act.files.close()
	l.act.seg.log.Close()
	l.closed = true
}

// dirFiles returns the contents of every file in dir.
func dirFiles(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[de.Name()] = b
	}
	return out
}

// restoreDir makes dir hold exactly files.
func restoreDir(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if err := os.Remove(filepath.Join(dir, de.Name())); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// logFiles returns the names of the .log files in dir, in order.
func logFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+logSuffix))
	if err != nil {
		t.Fatal(err)
	}
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	sort.Strings(names)
	return names
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}
