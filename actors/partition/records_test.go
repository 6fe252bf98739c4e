package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// walkRecords builds n records with keys, values of up to valueMax bytes,
// headers and unordered timestamps, and returns them uncompressed.
func walkRecords(n, valueMax int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var recs []byte
	for i := range n {
		r := kmsg.Record{
			TimestampDelta64: rng.Int64N(2000) - 500,
			OffsetDelta:      int32(i),
			Key:              []byte{byte(i)},
			Value:            bytes.Repeat([]byte{byte(rng.IntN(4))}, rng.IntN(valueMax+1)),
			Headers:          []kmsg.Header{{Key: "h", Value: []byte("v")}},
		}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	return recs
}

type tsOffset struct{ offset, ts int64 }

func collect(t *testing.T, walk func(fn func(offset, ts int64) bool) error) []tsOffset {
	t.Helper()
	var got []tsOffset
	if err := walk(func(o, ts int64) bool {
		got = append(got, tsOffset{o, ts})
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// compressWith compresses recs with one of kgo's codecs, as franz-go
// producers do.
func compressWith(t *testing.T, codec kgo.CompressionCodec) func([]byte) []byte {
	return func(recs []byte) []byte {
		c, err := kgo.DefaultCompressor(codec)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := c.Compress(new(bytes.Buffer), recs)
		return bytes.Clone(out)
	}
}

// xerial frames recs the way the Java client's snappy does: the xerial
// header, then 32 KiB blocks, each a big-endian length and a raw snappy
// block.
func xerial(recs []byte) []byte {
	out := append(bytes.Clone(xerialPrefix), 0, 0, 0, 1, 0, 0, 0, 1)
	for len(recs) > 0 {
		n := min(len(recs), 32<<10)
		block := s2.EncodeSnappy(nil, recs[:n])
		out = binary.BigEndian.AppendUint32(out, uint32(len(block)))
		out = append(out, block...)
		recs = recs[n:]
	}
	return out
}

// TestStreamingWalkMatchesDecompression: for every codec and framing, the
// streaming walk over a compressed batch gives the same (offset,
// timestamp) pairs as decompressing it whole with franz-go and walking
// the plain records.
func TestStreamingWalkMatchesDecompression(t *testing.T) {
	for _, tc := range []struct {
		name     string
		codec    Compression
		compress func([]byte) []byte
		check    func([]byte) bool // the framing is the one meant
	}{
		{name: "gzip", codec: CompressionGzip, compress: compressWith(t, kgo.GzipCompression())},
		{name: "lz4", codec: CompressionLZ4, compress: compressWith(t, kgo.Lz4Compression())},
		{name: "lz4 dependent 64 KiB blocks", codec: CompressionLZ4, compress: func(recs []byte) []byte {
			var out bytes.Buffer
			w := lz4.NewWriter(&out)
			if err := w.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.BlockChecksumOption(true)); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(recs); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			return out.Bytes()
		}},
		{name: "zstd", codec: CompressionZstd, compress: compressWith(t, kgo.ZstdCompression())},
		{name: "zstd stream, 8 MiB window", codec: CompressionZstd, compress: func(recs []byte) []byte {
			var out bytes.Buffer
			w, err := zstd.NewWriter(&out, zstd.WithWindowSize(maxWalkWindow))
			if err != nil {
				t.Fatal(err)
			}
			for p := recs; len(p) > 0; p = p[min(len(p), 1000):] { // no content size in the frame
				if _, err := w.Write(p[:min(len(p), 1000)]); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			return out.Bytes()
		}},
		{
			name: "xerial snappy", codec: CompressionSnappy, compress: xerial,
			check: func(b []byte) bool { return bytes.HasPrefix(b, xerialPrefix) },
		},
		{
			name: "raw snappy", codec: CompressionSnappy, compress: func(recs []byte) []byte { return s2.EncodeSnappy(nil, recs) },
			check: func(b []byte) bool { return !bytes.HasPrefix(b, xerialPrefix) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []int{1, 7, 300} {
				recs := walkRecords(n, 2000) // 300 records span several snappy and lz4 blocks
				h := BatchHeader{BaseOffset: 1000, BaseTimestamp: 1_700_000_000_000, RecordCount: int32(n), Attributes: int16(tc.codec)}
				src := tc.compress(recs)
				if tc.check != nil && !tc.check(src) {
					t.Fatalf("%s: not the framing meant", tc.name)
				}
				whole, err := kgo.DefaultDecompressor().Decompress(src, kgo.CompressionCodecType(tc.codec))
				if err != nil {
					t.Fatal(err)
				}
				want := collect(t, func(fn func(int64, int64) bool) error { return eachPlainRecord(whole, h, fn) })
				got := collect(t, func(fn func(int64, int64) bool) error { return eachCompressedRecord(src, h, maxWalkBytes, fn) })
				if len(want) != n || len(got) != len(want) {
					t.Fatalf("%d records: the walk gave %d, full decompression %d", n, len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%d records: record %d walked as %+v, decompressed as %+v", n, i, got[i], want[i])
					}
				}
				// A walk stops where fn says.
				calls := 0
				if err := eachCompressedRecord(src, h, maxWalkBytes, func(int64, int64) bool { calls++; return false }); err != nil || calls != 1 {
					t.Fatalf("stopping walk: %d calls, %v", calls, err)
				}
			}
		})
	}
}

// TestStreamingWalkLimits: the walk stops at its byte limit, refuses a
// zstd window or snappy block above maxWalkWindow, and reports records cut
// short; findRecord then answers for the batch from its header.
func TestStreamingWalkLimits(t *testing.T) {
	recs := walkRecords(50, 4000)
	zstdOf := func(recs []byte, opts ...zstd.EOption) []byte {
		w, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		return w.EncodeAll(recs, nil)
	}
	// A frame whose window is over maxWalkWindow: streamed with a 16 MiB
	// window, no content size.
	var wide bytes.Buffer
	zw, err := zstd.NewWriter(&wide, zstd.WithWindowSize(2*maxWalkWindow))
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(recs)
	zw.Flush() // a frame with no content size, so its window is the encoder's
	zw.Write(recs)
	zw.Close()
	var zh zstd.Header
	if err := zh.Decode(wide.Bytes()); err != nil || zh.WindowSize <= maxWalkWindow {
		t.Fatalf("the wide zstd frame has a window of %d bytes (%v)", zh.WindowSize, err)
	}
	// A raw snappy block claiming more than maxWalkWindow.
	bigSnappy := binary.AppendUvarint(nil, maxWalkWindow+1)
	for _, tc := range []struct {
		name  string
		codec Compression
		src   []byte
		limit int64
		want  error
	}{
		{"walk limit", CompressionZstd, zstdOf(recs), int64(len(recs) / 2), errWalkLimit},
		{"exactly the limit", CompressionZstd, zstdOf(recs), int64(len(recs)), nil},
		{"zstd window", CompressionZstd, wide.Bytes(), maxWalkBytes, errWalkLimit},
		{"raw snappy block", CompressionSnappy, bigSnappy, maxWalkBytes, errWalkLimit},
		{"xerial snappy block", CompressionSnappy, append(append(append(bytes.Clone(xerialPrefix), 0, 0, 0, 1, 0, 0, 0, 1), binary.BigEndian.AppendUint32(nil, uint32(len(bigSnappy)))...), bigSnappy...), maxWalkBytes, errWalkLimit},
		{"truncated zstd", CompressionZstd, zstdOf(recs)[:100], maxWalkBytes, errBadRecord},
		{"truncated records", CompressionZstd, zstdOf(recs[:len(recs)-10]), maxWalkBytes, errBadRecord},
		{"truncated xerial", CompressionSnappy, xerial(recs)[:200], maxWalkBytes, errBadRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := BatchHeader{BaseOffset: 10, BaseTimestamp: 100, MaxTimestamp: 5000, RecordCount: 50, LastOffsetDelta: 49, Attributes: int16(tc.codec)}
			err := eachCompressedRecord(tc.src, h, tc.limit, func(int64, int64) bool { return true })
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("walk: %v, want %v", err, tc.want)
			}
		})
	}

	// A batch that decompresses past maxWalkBytes is answered from its
	// header: zeros zstd-compress to a few KiB.
	var bomb bytes.Buffer
	zw, err = zstd.NewWriter(&bomb, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	// One record whose value, longer than the limit, is zeros.
	const valueBytes = maxWalkBytes + 100
	fields := []byte{0}                      // attributes
	fields = binary.AppendVarint(fields, 0)  // timestamp delta
	fields = binary.AppendVarint(fields, 0)  // offset delta
	fields = binary.AppendVarint(fields, -1) // null key
	fields = binary.AppendVarint(fields, valueBytes)
	length := int64(len(fields)) + valueBytes + 1 // and the header count
	zw.Write(append(binary.AppendVarint(nil, length), fields...))
	zeros := make([]byte, 1<<20)
	for left := valueBytes; left > 0; left -= len(zeros) {
		zw.Write(zeros[:min(left, len(zeros))])
	}
	zw.Write(binary.AppendVarint(nil, 0)) // no headers
	zw.Close()
	b := append(make([]byte, BatchHeaderSize), bomb.Bytes()...)
	h := BatchHeader{BaseOffset: 10, BaseTimestamp: 100, MaxTimestamp: 5000, RecordCount: 2, LastOffsetDelta: 1, Attributes: int16(CompressionZstd)}
	if err := eachRecord(b, h, func(int64, int64) bool { return true }); !errors.Is(err, errWalkLimit) {
		t.Fatalf("walking %d compressed bytes: %v, want the walk limit", bomb.Len(), err)
	}
	got, ok := findRecord(b, h, 11, func(ts int64) bool { return ts >= 200 })
	if want := (TimestampOffset{Timestamp: 5000, Offset: 11}); !ok || got != want {
		t.Fatalf("findRecord = %+v %v, want %+v from the header", got, ok, want)
	}
}

// TestCountAcrossWindows: the count check reads decompressed records
// through a window onto its read buffer (walkBufferSize), records and
// fields crossing from one window into the next, some records longer than
// a window. Whatever a byte of the records is changed to, it judges them
// as the walk over the same records uncompressed does.
func TestCountAcrossWindows(t *testing.T) {
	headerRecord := func(off, headers, value int) []byte {
		fields := [][]byte{{0}, varint(0), varint(int64(off)), varint(1), []byte("k"), varint(int64(value)), make([]byte, value), varint(int64(headers))}
		for range headers {
			fields = append(fields, varint(1), []byte("h"), varint(0))
		}
		return record(fields...)
	}
	var many, long [][]byte
	for i := range 40 {
		many = append(many, headerRecord(i, 3000, i%3))
	}
	long = append(long, headerRecord(0, 50_000, 100<<10), headerRecord(1, 0, 3*walkBufferSize+5))
	for i := 2; i < 2000; i++ {
		long = append(long, tinyRecord(i))
	}
	gz, zs := compressWith(t, kgo.GzipCompression()), compressWith(t, kgo.ZstdCompression())
	rng := rand.New(rand.NewPCG(3, 4))
	for _, set := range []struct {
		name string
		recs [][]byte
	}{{"records of 3000 headers", many}, {"records longer than a window", long}} {
		recs := bytes.Join(set.recs, nil)
		count := int32(len(set.recs))
		judge := func(t *testing.T, what string, recs []byte) {
			t.Helper()
			plain := rawBatch(0, count, count-1, 1000, 1000, recs)
			ph, err := ParseBatch(plain)
			if err != nil {
				t.Fatal(err)
			}
			_, perr := validateRecords(plain, ph, anyTime)
			for _, c := range []struct {
				codec    Compression
				compress func([]byte) []byte
			}{{CompressionGzip, gz}, {CompressionZstd, zs}} {
				b := rawBatch(int16(c.codec), count, count-1, 1000, 1000, c.compress(recs))
				h, err := ParseBatch(b)
				if err != nil {
					t.Fatal(err)
				}
				if cerr := checkCompressedCount(b, h, maxWalkBytes); (perr == nil) != (cerr == nil) {
					t.Fatalf("%s, %s: uncompressed: %v; compressed: %v", what, c.codec, perr, cerr)
				}
			}
		}
		t.Run(set.name, func(t *testing.T) {
			judge(t, "as written", recs)
			for range 150 {
				i := rng.IntN(len(recs))
				changed := bytes.Clone(recs)
				changed[i] = byte(rng.IntN(256))
				judge(t, fmt.Sprintf("byte %d set to %d", i, changed[i]), changed)
			}
			for range 20 {
				i := rng.IntN(len(recs))
				judge(t, fmt.Sprintf("cut at byte %d", i), recs[:i])
			}
		})
	}
}
