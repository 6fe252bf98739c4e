package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestParseBatchFields(t *testing.T) {
	b := mkBatch(t, spec{
		records: 3, ts: []int64{1000, 990, 1020}, valueSize: 10,
		idempotent: true, pid: 42, epoch: 7, seq: 100,
		attrs: int16(CompressionNone) | transactionalBit,
	})
	h, err := ParseBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	// kmsg decodes the same bytes independently.
	var k kmsg.RecordBatch
	if err := k.ReadFrom(b); err != nil {
		t.Fatal(err)
	}
	want := BatchHeader{
		BaseOffset: k.FirstOffset, BatchLength: k.Length, PartitionLeaderEpoch: k.PartitionLeaderEpoch,
		Magic: k.Magic, CRC: uint32(k.CRC), Attributes: k.Attributes, LastOffsetDelta: k.LastOffsetDelta,
		BaseTimestamp: k.FirstTimestamp, MaxTimestamp: k.MaxTimestamp, ProducerID: k.ProducerID,
		ProducerEpoch: k.ProducerEpoch, BaseSequence: k.FirstSequence, RecordCount: k.NumRecords,
	}
	if h != want {
		t.Fatalf("header\n got %+v\nwant %+v", h, want)
	}
	if h.Size() != len(b) || h.LastOffset() != 2 || h.NextOffset() != 3 || h.MaxTimestamp != 1020 ||
		h.LastSequence() != 102 || !h.IsIdempotent() || !h.IsTransactional() || h.IsControl() ||
		h.IsLogAppendTime() || h.Compression() != CompressionNone {
		t.Fatalf("derived fields wrong: %+v", h)
	}
}

func TestAttributes(t *testing.T) {
	for _, tc := range []struct {
		attrs                    int16
		compression              Compression
		appendTime, txn, control bool
	}{
		{0, CompressionNone, false, false, false},
		{1, CompressionGzip, false, false, false},
		{4 | 8, CompressionZstd, true, false, false},
		{3 | 16, CompressionLZ4, false, true, false},
		{2 | 16 | 32, CompressionSnappy, false, true, true},
	} {
		h := BatchHeader{Attributes: tc.attrs}
		if h.Compression() != tc.compression || h.IsLogAppendTime() != tc.appendTime ||
			h.IsTransactional() != tc.txn || h.IsControl() != tc.control {
			t.Errorf("attributes %#x: compression %v append-time %v txn %v control %v", tc.attrs,
				h.Compression(), h.IsLogAppendTime(), h.IsTransactional(), h.IsControl())
		}
	}
	if CompressionZstd.String() != "zstd" || Compression(7).String() != "compression(7)" {
		t.Error("Compression.String")
	}
}

func TestLastSequenceWraps(t *testing.T) {
	for _, tc := range []struct {
		base, delta, want int32
	}{
		{0, 0, 0},
		{5, 4, 9},
		{math.MaxInt32, 0, math.MaxInt32},
		{math.MaxInt32, 1, 0},
		{math.MaxInt32 - 1, 3, 1},
		{-1, 3, -1},
	} {
		h := BatchHeader{BaseSequence: tc.base, LastOffsetDelta: tc.delta}
		if got := h.LastSequence(); got != tc.want {
			t.Errorf("LastSequence(%d + %d) = %d, want %d", tc.base, tc.delta, got, tc.want)
		}
	}
}

// resign recomputes the CRC of a batch whose CRC-covered bytes a test
// changed.
func resign(b []byte) []byte {
	binary.BigEndian.PutUint32(b[crcPos:], crc32.Checksum(b[attributesPos:], castagnoli))
	return b
}

func TestParseBatchErrors(t *testing.T) {
	good := mkBatch(t, spec{records: 2, valueSize: 5})
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name   string
		b      []byte
		target error
	}{
		{"empty", nil, ErrCorruptBatch},
		{"short prefix", good[:11], ErrCorruptBatch},
		{"truncated", good[:len(good)-1], ErrCorruptBatch},
		{"trailing byte", append(bytes.Clone(good), 0), ErrCorruptBatch},
		{"old magic", mod(func(b []byte) []byte { b[magicPos] = 1; return b }), ErrUnsupportedMagic},
		{"future magic", mod(func(b []byte) []byte { b[magicPos] = 3; return b }), ErrUnsupportedMagic},
		{"bad crc", mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrCorruptBatch},
		{"crc field", mod(func(b []byte) []byte { b[crcPos] ^= 0x80; return b }), ErrCorruptBatch},
		{"attributes flipped", mod(func(b []byte) []byte { b[attributesPos+1] ^= 1; return b }), ErrCorruptBatch},
		{"zero records", mod(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[recordCountPos:], 0)
			return resign(b)
		}), ErrCorruptBatch},
		{"negative records", mod(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[recordCountPos:], math.MaxUint32)
			return resign(b)
		}), ErrCorruptBatch},
		{"negative lastOffsetDelta", mod(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[lastOffsetDeltaPos:], math.MaxUint32)
			return resign(b)
		}), ErrCorruptBatch},
		{"batchLength below header", func() []byte {
			b := make([]byte, 12+20)
			binary.BigEndian.PutUint32(b[batchLengthPos:], 20)
			b[magicPos] = 2
			return b
		}(), ErrCorruptBatch},
		{"negative batchLength", func() []byte {
			b := make([]byte, 12)
			binary.BigEndian.PutUint32(b[batchLengthPos:], math.MaxUint32)
			return b
		}(), ErrCorruptBatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBatch(tc.b)
			if !errors.Is(err, tc.target) {
				t.Fatalf("ParseBatch: %v, want %v", err, tc.target)
			}
		})
	}
}

func TestStampingKeepsCRC(t *testing.T) {
	b := mkBatch(t, spec{records: 4, valueSize: 30})
	SetBaseOffset(b, 1<<40+7)
	SetPartitionLeaderEpoch(b, 12345)
	h, err := ParseBatch(b)
	if err != nil {
		t.Fatalf("stamped batch no longer valid: %v", err)
	}
	if h.BaseOffset != 1<<40+7 || h.PartitionLeaderEpoch != 12345 || h.LastOffset() != 1<<40+10 {
		t.Fatalf("stamped header %+v", h)
	}
}

func TestSplitBatches(t *testing.T) {
	a := mkBatch(t, spec{records: 1})
	b := mkBatch(t, spec{records: 3, valueSize: 50})
	c := mkBatch(t, spec{records: 2, valueSize: 7})
	all := append(append(bytes.Clone(a), b...), c...)
	got, err := SplitBatches(all)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !bytes.Equal(got[0], a) || !bytes.Equal(got[1], b) || !bytes.Equal(got[2], c) {
		t.Fatalf("split into %d batches", len(got))
	}
	// The pieces cannot grow into each other.
	if cap(got[0]) != len(a) {
		t.Fatalf("piece capacity %d, want %d", cap(got[0]), len(a))
	}
	if got, err := SplitBatches(nil); err != nil || len(got) != 0 {
		t.Fatalf("SplitBatches(nil) = %v, %v", got, err)
	}
	for _, cut := range []int{1, 11, 12, len(a) + 5, len(all) - 1} {
		if _, err := SplitBatches(all[:cut]); !errors.Is(err, ErrCorruptBatch) {
			t.Errorf("SplitBatches of %d bytes: %v, want ErrCorruptBatch", cut, err)
		}
	}
}

func TestValidateProduced(t *testing.T) {
	ok := func(s spec) BatchHeader {
		h, err := ParseBatch(mkBatch(t, s))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if err := ValidateProduced(ok(spec{records: 3})); err != nil {
		t.Fatal(err)
	}
	if err := ValidateProduced(ok(spec{records: 3, idempotent: true, pid: 1, seq: 0})); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]BatchHeader{
		"count mismatch":        func() BatchHeader { h := ok(spec{records: 3}); h.RecordCount = 2; return h }(),
		"control":               ok(spec{attrs: controlBit}),
		"negative sequence":     ok(spec{idempotent: true, pid: 1, seq: -1}),
		"transactional, no pid": ok(spec{attrs: transactionalBit}),
	} {
		if err := ValidateProduced(h); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: %v, want ErrInvalidRecord", name, err)
		}
	}
}

func FuzzParseBatch(f *testing.F) {
	f.Add(mkBatch(f, spec{records: 3, valueSize: 10}))
	f.Add(mkBatch(f, spec{records: 1, idempotent: true, pid: 9, seq: 4}))
	two := append(mkBatch(f, spec{records: 2}), mkBatch(f, spec{records: 1})...)
	f.Add(two)
	f.Add([]byte{})
	f.Add(make([]byte, 61))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := ParseBatch(b); err == nil {
			if h.Size() != len(b) || h.RecordCount <= 0 || h.LastOffsetDelta < 0 || h.Magic != 2 {
				t.Fatalf("accepted inconsistent batch %+v of %d bytes", h, len(b))
			}
			_ = ValidateProduced(h)
			_ = h.LastSequence()
		}
		pieces, err := SplitBatches(b)
		if err != nil {
			return
		}
		n := 0
		for _, p := range pieces {
			n += len(p)
			_, _ = ParseBatch(p)
		}
		if n != len(b) {
			t.Fatalf("pieces cover %d of %d bytes", n, len(b))
		}
	})
}

// TestSetCreateTime: a batch of a CreateTime topic is stored as
// CreateTime with, uncompressed, its records' largest timestamp, and a
// valid CRC; a header that is right already is left byte for byte.
func TestSetCreateTime(t *testing.T) {
	for _, tc := range []struct {
		name    string
		s       spec
		wantMax int64
		same    bool // the batch is left as is
	}{
		{"right already", spec{records: 3, ts: []int64{10, 30, 20}}, 30, true},
		{"log append time flag", spec{records: 3, ts: []int64{10, 30, 20}, attrs: timestampTypeBit, maxTs: ptr(int64(99))}, 30, false},
		{"wrong maxTimestamp", spec{records: 2, ts: []int64{10, 5}, maxTs: ptr(int64(4102444800000))}, 10, false},
		{"no timestamps", spec{records: 2, ts: []int64{-1, -1}}, -1, true},
		// The records of a compressed batch are not read: it keeps its
		// maxTimestamp (mkBatch does not really compress them).
		{"compressed", spec{records: 2, ts: []int64{10, 5}, attrs: int16(CompressionZstd) | timestampTypeBit, maxTs: ptr(int64(77))}, 77, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mkBatch(t, tc.s)
			orig := bytes.Clone(b)
			h, err := ParseBatch(b)
			if err != nil {
				t.Fatal(err)
			}
			maxTs, err := validateRecords(b, h, anyTime)
			if err != nil || maxTs != tc.wantMax {
				t.Fatalf("validateRecords = %d, %v; want %d", maxTs, err, tc.wantMax)
			}
			setCreateTime(b, maxTs)
			got, err := ParseBatch(b)
			if err != nil {
				t.Fatalf("after setCreateTime: %v", err)
			}
			if got.IsLogAppendTime() || got.MaxTimestamp != tc.wantMax || got.Compression() != h.Compression() {
				t.Errorf("stored with LogAppendTime %v, maxTimestamp %d, %v; want CreateTime, %d, %v",
					got.IsLogAppendTime(), got.MaxTimestamp, got.Compression(), tc.wantMax, h.Compression())
			}
			if same := bytes.Equal(b, orig); same != tc.same {
				t.Errorf("batch unchanged: %v, want %v", same, tc.same)
			}
		})
	}

	// Uncompressed records that do not decode are refused.
	b := mkBatch(t, spec{records: 2, ts: []int64{10, 5}})
	h, err := ParseBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	h.RecordCount = 3 // one more record than there are
	if _, err := validateRecords(b, h, anyTime); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("records cut short: %v, want ErrInvalidRecord", err)
	}
}
