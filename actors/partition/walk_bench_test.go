package partition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// benchBatch is an uncompressed batch of n records, each with a 16-byte
// key, a value of valueSize bytes and headers headers, timestamped 1 ms
// apart, as a client sends it.
func benchBatch(tb testing.TB, n, valueSize, headers int) []byte {
	tb.Helper()
	var recs []byte
	for i := range n {
		r := kmsg.Record{
			TimestampDelta64: int64(i),
			OffsetDelta:      int32(i),
			Key:              bytes.Repeat([]byte{'k'}, 16),
			Value:            bytes.Repeat([]byte{'v'}, valueSize),
		}
		for j := range headers {
			r.Headers = append(r.Headers, kmsg.Header{Key: fmt.Sprintf("header-%d", j), Value: []byte("header value")})
		}
		body := r.AppendTo(nil)[1:] // after the 1-byte varint of Length 0
		r.Length = int32(len(body))
		recs = r.AppendTo(recs)
	}
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(n - 1),
		FirstTimestamp: 1_700_000_000_000, MaxTimestamp: 1_700_000_000_000 + int64(n-1),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(n), Records: recs,
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[batchLengthPos:], uint32(len(b)-batchLengthOverhead))
	binary.BigEndian.PutUint32(b[crcPos:], crc32.Checksum(b[attributesPos:], castagnoli))
	return b
}

// BenchmarkProduceWalk measures the produce path's one walk over an
// uncompressed batch's records (validateRecords), per byte of batch, and,
// for scale, the CRC-32C check every produced batch already gets
// (ParseBatch).
func BenchmarkProduceWalk(b *testing.B) {
	rule := timestampRuleOf(Settings{TimestampBeforeMaxMs: math.MaxInt64, TimestampAfterMaxMs: 3600000}, 1_700_000_000_000)
	for _, c := range []struct{ n, value, headers int }{
		{1000, 10, 0}, {200, 100, 2}, {16, 1000, 0},
	} {
		batch := benchBatch(b, c.n, c.value, c.headers)
		h, err := ParseBatch(batch)
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("records=%d/value=%d/headers=%d", c.n, c.value, c.headers)
		b.Run("walk/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				if _, err := validateRecords(batch, h, rule); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("crc/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				if _, err := ParseBatch(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompressedCount measures the count check of a compressed batch
// (checkCompressedCount), per decompressed byte: the costliest batches a
// client can send it, one record of 64 MiB of empty headers (33 million
// fields) and 5 million records without key, value or headers, and for scale one 64 MiB value of zeros,
// which is decompressed and skipped.
func BenchmarkCompressedCount(b *testing.B) {
	zstdOf := func(recs []byte) []byte {
		w, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(1<<20))
		if err != nil {
			b.Fatal(err)
		}
		return w.EncodeAll(recs, nil)
	}
	const size = maxWalkBytes - 64
	headers := (size - 16) / 2
	empty := record(append([]byte{0}, bytes.Join([][]byte{varint(0), varint(0), varint(-1), varint(-1), varint(int64(headers)), make([]byte, 2*headers)}, nil)...))
	zeros := record([]byte{0}, varint(0), varint(0), varint(-1), varint(size), make([]byte, size), varint(0))
	var tiny []byte
	const tinyCount = 5_000_000
	for i := range tinyCount {
		tiny = append(tiny, tinyRecord(i)...)
	}
	for _, c := range []struct {
		name  string
		recs  []byte
		count int32
	}{
		{"empty headers", empty, 1},
		{"empty records", tiny, tinyCount},
		{"zeros", zeros, 1},
	} {
		batch := rawBatch(int16(CompressionZstd), c.count, c.count-1, 1000, 1000, zstdOf(c.recs))
		h, err := ParseBatch(batch)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.recs)))
			for b.Loop() {
				if err := checkCompressedCount(batch, h, maxWalkBytes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
