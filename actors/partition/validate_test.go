package partition

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// gz is records compressed with gzip, as a client compresses them.
func gz(recs ...[]byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(bytes.Join(recs, nil))
	w.Close()
	return out.Bytes()
}

// anyTime is the timestamp rule of a CreateTime topic that accepts every
// timestamp.
var anyTime = timestampRule{lo: math.MinInt64, hi: math.MaxInt64}

// varint is a record field: a zigzag varint.
func varint(v int64) []byte { return binary.AppendVarint(nil, v) }

// record is a record of fields (the attributes byte first), prefixed with
// its length as a client writes it.
func record(fields ...[]byte) []byte {
	body := bytes.Join(fields, nil)
	return append(varint(int64(len(body))), body...)
}

// okRecord is a well-formed record at offset delta off and timestamp
// delta tsDelta, with a key, a value and a header.
func okRecord(off int32, tsDelta int64) []byte {
	return record([]byte{0}, varint(tsDelta), varint(int64(off)),
		varint(1), []byte("k"), varint(1), []byte("v"),
		varint(1), varint(2), []byte("hk"), varint(2), []byte("hv"))
}

// rawBatch seals the records recs into a batch the way a client does
// (base offset 0, CRC-32C over attributes onwards), whatever recs hold:
// count and lastOffsetDelta are written as given.
func rawBatch(attrs int16, count, lastOffsetDelta int32, baseTs, maxTs int64, recs ...[]byte) []byte {
	rb := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, Attributes: attrs, LastOffsetDelta: lastOffsetDelta,
		FirstTimestamp: baseTs, MaxTimestamp: maxTs, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: count, Records: bytes.Join(recs, nil)}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[batchLengthPos:], uint32(len(b)-batchLengthOverhead))
	return resign(b)
}

// TestProduceValidation: a leader refuses what Kafka refuses of a client's
// records for one partition, with Kafka's error code (ProduceRequest,
// UnifiedLog.analyzeAndValidateRecords, LogValidator, DefaultRecord) and,
// for timestamps, the records at fault; it accepts the rest, and returns
// the maxTimestamp a CreateTime topic stores.
func TestProduceValidation(t *testing.T) {
	const now = int64(1_700_000_000_000)
	const hour = int64(time.Hour / time.Millisecond)
	createTime := Settings{MaxMessageBytes: 1 << 20, TimestampBeforeMaxMs: math.MaxInt64, TimestampAfterMaxMs: hour}
	withBefore := createTime
	withBefore.TimestampBeforeMaxMs = hour
	appendTime := createTime
	appendTime.LogAppendTime = true

	three := rawBatch(0, 3, 2, now, now+2, okRecord(0, 0), okRecord(1, 1), okRecord(2, 2))
	mod := func(b []byte, f func(b []byte)) []byte { b = bytes.Clone(b); f(b); return b }
	gzipped := int16(CompressionGzip)

	for _, tc := range []struct {
		name     string
		settings Settings
		records  []byte
		code     *kerr.Error // nil: accepted
		refused  []int32     // the records named, for INVALID_TIMESTAMP
		maxTs    int64       // when accepted
	}{
		{name: "three good records", settings: createTime, records: three, maxTs: now + 2},
		{name: "no batch", settings: createTime, records: nil, code: kerr.InvalidRecord},
		{name: "two batches", settings: createTime, records: append(bytes.Clone(three), three...), code: kerr.InvalidRecord},
		{name: "cut short", settings: createTime, records: three[:len(three)-1], code: kerr.CorruptMessage},
		{name: "magic 1", settings: createTime, records: mod(three, func(b []byte) { b[magicPos] = 1 }), code: kerr.InvalidRecord},
		{name: "magic 3", settings: createTime, records: mod(three, func(b []byte) { b[magicPos] = 3 }), code: kerr.CorruptMessage},
		{name: "bad CRC", settings: createTime, records: mod(three, func(b []byte) { b[len(b)-1] ^= 1 }), code: kerr.CorruptMessage},
		{name: "base offset not 0", settings: createTime, records: mod(three, func(b []byte) { SetBaseOffset(b, 7) }), code: kerr.InvalidRecord},
		{name: "no records", settings: createTime, records: rawBatch(0, 0, -1, now, now), code: kerr.InvalidRecord},
		{name: "count and offset range disagree", settings: createTime, records: rawBatch(0, 2, 2, now, now+2, okRecord(0, 0), okRecord(1, 1)), code: kerr.InvalidRecord},
		{name: "unknown codec", settings: createTime, records: rawBatch(5, 1, 0, now, now, okRecord(0, 0)), code: kerr.UnknownServerError},
		{name: "control batch", settings: createTime, records: rawBatch(controlBit, 1, 0, now, now, okRecord(0, 0)), code: kerr.InvalidRecord},
		{name: "transactional", settings: createTime, records: rawBatch(transactionalBit, 1, 0, now, now, okRecord(0, 0)), code: kerr.InvalidRecord},
		{name: "over max.message.bytes", settings: Settings{MaxMessageBytes: 100, TimestampBeforeMaxMs: math.MaxInt64}, records: three, code: kerr.MessageTooLarge},

		// Records that do not decode, or not as the header says.
		{name: "fewer records than the count", settings: createTime, records: rawBatch(0, 3, 2, now, now, okRecord(0, 0), okRecord(1, 0)), code: kerr.InvalidRecord},
		{name: "more records than the count", settings: createTime, records: rawBatch(0, 2, 1, now, now, okRecord(0, 0), okRecord(1, 0), okRecord(2, 0)), code: kerr.InvalidRecord},
		{name: "a byte after the records", settings: createTime, records: rawBatch(0, 1, 0, now, now, okRecord(0, 0), []byte{0}), code: kerr.InvalidRecord},
		{name: "offset deltas repeat", settings: createTime, records: rawBatch(0, 3, 2, now, now, okRecord(0, 0), okRecord(0, 0), okRecord(2, 0)), code: kerr.InvalidRecord},
		{name: "offset deltas out of order", settings: createTime, records: rawBatch(0, 2, 1, now, now, okRecord(1, 0), okRecord(0, 0)), code: kerr.InvalidRecord},
		{name: "offset deltas from 1", settings: createTime, records: rawBatch(0, 2, 1, now, now, okRecord(1, 0), okRecord(2, 0)), code: kerr.InvalidRecord},
		{name: "record longer than its fields", settings: createTime,
			records: rawBatch(0, 1, 0, now, now, record([]byte{0}, varint(0), varint(0), varint(-1), varint(-1), varint(0), []byte{0})), code: kerr.InvalidRecord},
		{name: "record shorter than its fields", settings: createTime,
			records: rawBatch(0, 1, 0, now, now, record([]byte{0}, varint(0), varint(0), varint(-1), varint(-1))), code: kerr.InvalidRecord},
		{name: "key past the record", settings: createTime,
			records: rawBatch(0, 1, 0, now, now, record([]byte{0}, varint(0), varint(0), varint(5), []byte("k"), varint(-1), varint(0))), code: kerr.InvalidRecord},
		{name: "record length past the batch", settings: createTime,
			records: rawBatch(0, 1, 0, now, now, varint(100), []byte{0}), code: kerr.InvalidRecord},
		{name: "negative header count", settings: createTime,
			records: rawBatch(0, 1, 0, now, now, record([]byte{0}, varint(0), varint(0), varint(-1), varint(-1), varint(-1))), code: kerr.InvalidRecord},
		{name: "null header key", settings: createTime,
			records: rawBatch(0, 1, 0, now, now, record([]byte{0}, varint(0), varint(0), varint(-1), varint(-1), varint(1), varint(-1), varint(-1))), code: kerr.InvalidRecord},
		{name: "offset delta beyond 32 bits", settings: createTime,
			records: rawBatch(0, 1, 0, now, now, record([]byte{0}, varint(0), varint(1<<32), varint(-1), varint(-1), varint(0))), code: kerr.InvalidRecord},
		{name: "null key, value and header value", settings: createTime,
			records: rawBatch(0, 1, 0, now, now, record([]byte{0}, varint(0), varint(0), varint(-1), varint(-1), varint(1), varint(1), []byte("h"), varint(-1))), maxTs: now},

		// Timestamps of a CreateTime topic.
		{name: "a record two hours ahead", settings: createTime,
			records: rawBatch(0, 3, 2, now, now+2*hour, okRecord(0, 0), okRecord(1, 2*hour), okRecord(2, 1)), code: kerr.InvalidTimestamp, refused: []int32{1}},
		{name: "an hour ahead is in", settings: createTime, records: rawBatch(0, 1, 0, now+hour, now+hour, okRecord(0, 0)), maxTs: now + hour},
		{name: "a day old, before.max.ms forever", settings: createTime, records: rawBatch(0, 1, 0, now-24*hour, now-24*hour, okRecord(0, 0)), maxTs: now - 24*hour},
		{name: "two records too old", settings: withBefore,
			records: rawBatch(0, 3, 2, now-2*hour, now, okRecord(0, 0), okRecord(1, 2*hour), okRecord(2, 1)), code: kerr.InvalidTimestamp, refused: []int32{0, 2}},
		{name: "no timestamps are not checked", settings: withBefore, records: rawBatch(0, 2, 1, -1, -1, okRecord(0, 0), okRecord(1, 0)), maxTs: -1},
		{name: "LogAppendTime set by the producer, in range", settings: createTime,
			records: rawBatch(timestampTypeBit, 2, 1, now, now+5, okRecord(0, 0), okRecord(1, 3)), maxTs: now + 3},
		{name: "LogAppendTime set by the producer, out of range", settings: createTime,
			records: rawBatch(timestampTypeBit, 2, 1, now, now+2*hour, okRecord(0, 0), okRecord(1, 3)), code: kerr.InvalidTimestamp, refused: []int32{0, 1}},
		{name: "LogAppendTime set by the producer, no timestamp", settings: createTime,
			records: rawBatch(timestampTypeBit, 2, 1, now, -1, okRecord(0, 0), okRecord(1, 3)), code: kerr.InvalidTimestamp, refused: []int32{0, 1}},

		// A LogAppendTime topic replaces the timestamps, but a producer
		// may not say LogAppendTime itself.
		{name: "LogAppendTime topic takes any timestamp", settings: appendTime, records: rawBatch(0, 1, 0, now+48*hour, now+48*hour, okRecord(0, 0)), maxTs: now + 48*hour},
		{name: "LogAppendTime topic, producer's LogAppendTime", settings: appendTime,
			records: rawBatch(timestampTypeBit, 2, 1, now, now, okRecord(0, 0), okRecord(1, 0)), code: kerr.InvalidTimestamp, refused: []int32{0, 1}},
		{name: "LogAppendTime topic, records still decoded", settings: appendTime, records: rawBatch(0, 2, 1, now, now, okRecord(0, 0)), code: kerr.InvalidRecord},

		// A compressed batch claiming fewer records than its compressed
		// bytes: its header only.
		{name: "compressed, records not read", settings: createTime, records: rawBatch(gzipped, 2, 1, now, now+1, []byte("not gzip")), maxTs: now + 1},
		{name: "compressed, maxTimestamp two hours ahead", settings: createTime, records: rawBatch(gzipped, 2, 1, now, now+2*hour, gz(okRecord(0, 0), okRecord(1, 2*hour))), code: kerr.InvalidTimestamp},
		{name: "compressed, first record too old", settings: withBefore, records: rawBatch(gzipped, 2, 1, now-2*hour, now, gz(okRecord(0, 0), okRecord(1, 2*hour))), code: kerr.InvalidTimestamp},
		{name: "compressed, LogAppendTime by the producer out of range", settings: createTime,
			records: rawBatch(gzipped|timestampTypeBit, 3, 2, now, now+2*hour, gz(okRecord(0, 0), okRecord(1, 0), okRecord(2, 0))), code: kerr.InvalidTimestamp},
		{name: "compressed, LogAppendTime topic, producer's LogAppendTime", settings: appendTime,
			records: rawBatch(gzipped|timestampTypeBit, 2, 1, now, now, gz(okRecord(0, 0), okRecord(1, 0))), code: kerr.InvalidTimestamp},
		{name: "compressed, LogAppendTime topic", settings: appendTime, records: rawBatch(gzipped, 2, 1, now+48*hour, now+48*hour, gz(okRecord(0, 0), okRecord(1, 0))), maxTs: now + 48*hour},
		// Claiming more records than compressed bytes: the records are
		// counted, and a count that could not be read is refused as it
		// is, before any decompression or allocation sized by it.
		{name: "compressed, 2^31-1 records claimed", settings: createTime,
			records: rawBatch(gzipped|timestampTypeBit, math.MaxInt32, math.MaxInt32-1, now, now+2*hour, gz(okRecord(0, 0))), code: kerr.InvalidRecord},
		{name: "compressed, 100 records claimed, 1 held", settings: createTime,
			records: rawBatch(gzipped, 100, 99, now, now, gz(okRecord(0, 0))), code: kerr.InvalidRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Machine{o: MachineOptions{Settings: tc.settings, Now: func() time.Time { return time.UnixMilli(now) }}}
			b, h, maxTs, err := m.validate(tc.records, CountCheck{})
			if tc.code == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !bytes.Equal(b, tc.records) || h.RecordCount <= 0 || maxTs != tc.maxTs {
					t.Fatalf("accepted %d of %d bytes, %d records, maxTimestamp %d; want all, maxTimestamp %d", len(b), len(tc.records), h.RecordCount, maxTs, tc.maxTs)
				}
				return
			}
			if ke := (*kerr.Error)(nil); !errors.As(err, &ke) || ke != tc.code {
				t.Fatalf("refused with %v, want %s", err, tc.code.Message)
			}
			var got []int32
			if re := (*RecordsError)(nil); errors.As(err, &re) {
				for _, r := range re.Records {
					if r.Message == "" {
						t.Errorf("record %d refused without a message", r.Index)
					}
					got = append(got, r.Index)
				}
			}
			if !slices.Equal(got, tc.refused) {
				t.Fatalf("records named %v, want %v (%v)", got, tc.refused, err)
			}
		})
	}
}

// TestTimestampRuleSaturates: the window around the clock does not
// overflow at the extremes of its settings.
func TestTimestampRuleSaturates(t *testing.T) {
	for _, tc := range []struct {
		now, before, after, lo, hi int64
	}{
		{1000, math.MaxInt64, math.MaxInt64, math.MinInt64 + 1001, math.MaxInt64},
		{1000, 0, 0, 1000, 1000},
		{-1000, math.MaxInt64, 10, math.MinInt64, -990},
		{math.MaxInt64 - 5, 10, 10, math.MaxInt64 - 15, math.MaxInt64},
	} {
		r := timestampRuleOf(Settings{TimestampBeforeMaxMs: tc.before, TimestampAfterMaxMs: tc.after}, tc.now)
		if r.lo != tc.lo || r.hi != tc.hi {
			t.Errorf("now %d, before %d, after %d: [%d, %d], want [%d, %d]", tc.now, tc.before, tc.after, r.lo, r.hi, tc.lo, tc.hi)
		}
	}
}

// FuzzValidateRecords: whatever the records of a well-framed batch, the
// walk neither panics nor accepts a batch whose records are not exactly
// RecordCount decodable ones.
func FuzzValidateRecords(f *testing.F) {
	f.Add(bytes.Join([][]byte{okRecord(0, 0), okRecord(1, 1)}, nil), int32(2))
	f.Add(okRecord(0, 0), int32(1))
	f.Add([]byte{0}, int32(1))
	f.Fuzz(func(t *testing.T, recs []byte, count int32) {
		if count <= 0 || count > 1000 {
			return
		}
		b := rawBatch(0, count, count-1, 1000, 1000, recs)
		h, err := ParseBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := validateRecords(b, h, anyTime); err != nil {
			return
		}
		n := 0
		if err := eachPlainRecord(b[BatchHeaderSize:], h, func(offset, _ int64) bool {
			if offset != int64(n) {
				t.Fatalf("accepted record %d at offset %d", n, offset)
			}
			n++
			return true
		}); err != nil || n != int(count) {
			t.Fatalf("accepted records that read back as %d of %d: %v", n, count, err)
		}
	})
}

// tinyRecord is the smallest record at offset delta off: no key, no
// value, no headers. Thousands compress to a few bytes each.
func tinyRecord(off int) []byte {
	return record([]byte{0}, varint(0), varint(int64(off)), varint(-1), varint(-1), varint(0))
}

// TestCompressedCountIsChecked: a compressed batch that claims more records
// than it has compressed bytes is read, and accepted only if it holds
// exactly the records its header claims (each whole, offset deltas 0, 1,
// 2..., nothing after), as Kafka's LogValidator reads a compressed batch;
// else INVALID_RECORD. A legitimate batch of many tiny records, which zstd
// compresses to less than a byte a record, passes. The count is checked
// the same way with every codec and framing (snappy and lz4 never compress
// real records that far: only a batch that lies is read).
func TestCompressedCountIsChecked(t *testing.T) {
	const now = int64(1_700_000_000_000)
	settings := Settings{MaxMessageBytes: 1 << 20, TimestampBeforeMaxMs: math.MaxInt64, TimestampAfterMaxMs: math.MaxInt64}
	m := &Machine{o: MachineOptions{Settings: settings, Now: func() time.Time { return time.UnixMilli(now) }}}
	const n = 5000
	var recs [][]byte
	for i := range n {
		recs = append(recs, tinyRecord(i))
	}
	outOfOrder := slices.Clone(recs)
	outOfOrder[10], outOfOrder[11] = outOfOrder[11], outOfOrder[10]
	cut := slices.Clone(recs)
	cut[n-1] = cut[n-1][:len(cut[n-1])-1]
	longer := slices.Clone(recs)
	longer[7] = record([]byte{0}, varint(0), varint(7), varint(-1), varint(-1), varint(0), []byte{0})
	nullHeaderKey := slices.Clone(recs)
	nullHeaderKey[3] = record([]byte{0}, varint(0), varint(3), varint(-1), varint(-1), varint(1), varint(-1), varint(-1))

	zstdOf := compressWith(t, kgo.ZstdCompression())
	for _, codec := range []struct {
		name     string
		c        Compression
		compress func([]byte) []byte
	}{
		{"gzip", CompressionGzip, compressWith(t, kgo.GzipCompression())},
		{"xerial snappy", CompressionSnappy, xerial},
		{"raw snappy", CompressionSnappy, func(recs []byte) []byte { return s2.EncodeSnappy(nil, recs) }},
		{"lz4", CompressionLZ4, compressWith(t, kgo.Lz4Compression())},
		{"zstd", CompressionZstd, zstdOf},
	} {
		t.Run(codec.name, func(t *testing.T) {
			for _, tc := range []struct {
				name  string
				count int32
				recs  [][]byte
				ok    bool
			}{
				{"exactly the records claimed", n, recs, true},
				{"one record fewer than claimed", n + 1, recs, false},
				{"one record more than claimed", n - 1, recs, false},
				{"one record claimed, thousands held", 1, recs, false},
				{"thousands claimed, one held", n, recs[:1], false},
				{"offset deltas out of order", n, outOfOrder, false},
				{"the last record cut short", n, cut, false},
				{"a record longer than its fields", n, longer, false},
				{"a null header key", n, nullHeaderKey, false},
			} {
				b := rawBatch(int16(codec.c), tc.count, tc.count-1, now, now, codec.compress(bytes.Join(tc.recs, nil)))
				h, err := ParseBatch(b)
				if err != nil {
					t.Fatal(err)
				}
				if err := checkCompressedCount(b, h, maxWalkBytes); tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidRecord) {
					t.Errorf("%s: %v", tc.name, err)
				}
			}
		})
	}

	// Produce reads a batch claiming more records than compressed bytes:
	// the legitimate one is accepted, one claiming a record more refused.
	src := zstdOf(bytes.Join(recs, nil))
	if len(src) >= n {
		t.Fatalf("%d tiny records in %d zstd bytes: not checked on produce", n, len(src))
	}
	if _, h, _, err := m.validate(rawBatch(int16(CompressionZstd), n, n-1, now, now, src), CountCheck{}); err != nil || h.RecordCount != n {
		t.Fatalf("%d tiny records in %d zstd bytes: %v", n, len(src), err)
	}
	if _, _, _, err := m.validate(rawBatch(int16(CompressionZstd), n+1, n, now, now, src), CountCheck{}); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("a record more claimed: %v, want INVALID_RECORD", err)
	}

	// A count that needs more than the limit decompressed is refused
	// before reading; records that go past the limit when read, too.
	b := rawBatch(int16(CompressionZstd), n, n-1, now, now, src)
	h, err := ParseBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkCompressedCount(b, h, n*minRecordBytes-1); !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), "claimed in") {
		t.Errorf("a count above the limit: %v", err)
	}
	if err := checkCompressedCount(b, h, n*minRecordBytes); !errors.Is(err, ErrInvalidRecord) || !errors.Is(err, errWalkLimit) {
		t.Errorf("records past the limit: %v", err)
	}
	if err := checkCompressedCount(b, h, int64(len(bytes.Join(recs, nil)))); err != nil {
		t.Errorf("records ending exactly at the limit: %v", err)
	}
}

// FuzzCheckCompressedCount: whatever records a compressed batch holds, the
// count check neither panics nor judges them otherwise than the walk over
// the same records uncompressed: both accept exactly RecordCount whole
// records, numbered 0, 1, 2..., with nothing after.
func FuzzCheckCompressedCount(f *testing.F) {
	f.Add(bytes.Join([][]byte{okRecord(0, 0), okRecord(1, 1)}, nil), int32(2))
	f.Add(bytes.Join([][]byte{tinyRecord(0), tinyRecord(1), tinyRecord(2)}, nil), int32(3))
	f.Add([]byte{0}, int32(1))
	f.Fuzz(func(t *testing.T, recs []byte, count int32) {
		if count <= 0 || count > 1000 {
			return
		}
		plain := rawBatch(0, count, count-1, 1000, 1000, recs)
		ph, err := ParseBatch(plain)
		if err != nil {
			t.Fatal(err)
		}
		_, perr := validateRecords(plain, ph, anyTime)
		b := rawBatch(int16(CompressionSnappy), count, count-1, 1000, 1000, xerial(recs))
		h, err := ParseBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		if cerr := checkCompressedCount(b, h, maxWalkBytes); (perr == nil) != (cerr == nil) {
			t.Fatalf("uncompressed: %v; compressed: %v", perr, cerr)
		}
	})
}

// TestCountVerdict: CountRecords, which a Kafka connection runs before the
// Produce reaches the partition, judges a batch's count as the partition
// would, and the partition answers its verdict where it would have
// checked the count itself: after its own checks, so that a batch it
// refuses for something else gets that answer. Without a verdict it
// counts; with one it does not read the records again.
func TestCountVerdict(t *testing.T) {
	const now = int64(1_700_000_000_000)
	settings := Settings{MaxMessageBytes: 1 << 20, TimestampBeforeMaxMs: math.MaxInt64, TimestampAfterMaxMs: math.MaxInt64}
	m := &Machine{o: MachineOptions{Settings: settings, Now: func() time.Time { return time.UnixMilli(now) }}}
	const n = 5000
	var recs [][]byte
	for i := range n {
		recs = append(recs, tinyRecord(i))
	}
	src := compressWith(t, kgo.ZstdCompression())(bytes.Join(recs, nil))
	good := rawBatch(int16(CompressionZstd), n, n-1, now, now, src)
	lie := rawBatch(int16(CompressionZstd), n+1, n, now, now, src)
	plain := rawBatch(0, 1, 0, now, now, okRecord(0, 0))

	if c := CountRecords(good); !c.done || c.err != nil {
		t.Fatalf("%d tiny zstd records: %+v", n, c)
	}
	if c := CountRecords(plain); !c.done || c.err != nil {
		t.Fatalf("an uncompressed batch: %+v", c)
	}
	c := CountRecords(lie)
	if !c.done || !errors.Is(c.err, ErrInvalidRecord) {
		t.Fatalf("a record more claimed: %+v, want a verdict of ErrInvalidRecord", c)
	}
	for _, tc := range []struct {
		name    string
		records []byte
		count   CountCheck
		want    error // nil: accepted
	}{
		{"counted and true", good, CountRecords(good), nil},
		{"counted, a lie", lie, c, kerr.InvalidRecord},
		{"not counted, a lie", lie, CountCheck{}, kerr.InvalidRecord},
		// The verdict is the partition's answer: it does not read again.
		{"a lie said true", lie, CountCheck{done: true}, nil},
	} {
		_, _, _, err := m.validate(bytes.Clone(tc.records), tc.count)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// Checks that come first in Kafka (UnifiedLog.analyzeAndValidateRecords
	// before LogValidator) answer first.
	small := &Machine{o: MachineOptions{Settings: Settings{MaxMessageBytes: len(lie) - 1, TimestampBeforeMaxMs: math.MaxInt64, TimestampAfterMaxMs: math.MaxInt64},
		Now: func() time.Time { return time.UnixMilli(now) }}}
	if _, _, _, err := small.validate(bytes.Clone(lie), c); !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("a lie over max.message.bytes: %v, want MESSAGE_TOO_LARGE", err)
	}
	corrupt := bytes.Clone(lie)
	corrupt[len(corrupt)-1] ^= 1
	if got := CountRecords(corrupt); got.done {
		t.Errorf("a batch with a bad CRC: verdict %+v, want none", got)
	}
	if _, _, _, err := m.validate(corrupt, c); !errors.Is(err, kerr.CorruptMessage) {
		t.Errorf("a lie with a bad CRC: %v, want CORRUPT_MESSAGE", err)
	}
}
