package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// zstdBombBatch is a valid zstd batch of two records: the first,
// timestamped ts, has a value of valueBytes zero bytes; the second,
// timestamped ts+1, is empty. A few KiB on the wire.
func zstdBombBatch(t *testing.T, valueBytes int, ts int64) []byte {
	t.Helper()
	var rec []byte
	rec = append(rec, 0)                              // attributes
	rec = binary.AppendVarint(rec, 0)                 // timestamp delta
	rec = binary.AppendVarint(rec, 0)                 // offset delta
	rec = binary.AppendVarint(rec, -1)                // null key
	rec = binary.AppendVarint(rec, int64(valueBytes)) // value length
	bodyLen := len(rec) + valueBytes + 1              // + header count
	var prefix []byte
	prefix = binary.AppendVarint(prefix, int64(bodyLen))
	prefix = append(prefix, rec...)

	var out bytes.Buffer
	enc, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	write := func(p []byte) {
		if _, err := enc.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	write(prefix)
	zeros := make([]byte, 1<<20)
	for left := valueBytes; left > 0; left -= len(zeros) {
		write(zeros[:min(left, len(zeros))])
	}
	write(binary.AppendVarint(nil, 0)) // no headers
	second := kmsg.Record{TimestampDelta64: 1, OffsetDelta: 1}
	second.Length = int32(len(second.AppendTo(nil)) - 1)
	write(second.AppendTo(nil))
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	b := kmsg.RecordBatch{
		Magic: 2, Attributes: 4 /* zstd */, LastOffsetDelta: 1, FirstTimestamp: ts, MaxTimestamp: ts + 1,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 2, Records: out.Bytes(),
	}
	return sealBatch(b)
}

// TestListOffsetsDecompressionBomb: a producer writes one small zstd batch
// (a few KiB, far below max.message.bytes) whose first record is 128 MiB
// of zeros. A ListOffsets by timestamp (here -3, max timestamp, which the
// second record holds) walks the batch's records as a stream, in bounded
// memory, and answers from the batch header once the walk passes its limit
// (64 MiB); it used to decompress the whole batch into memory, and copy
// it, at every request. The allocations measured are the test process's,
// which holds the in-process cluster.
func TestListOffsetsDecompressionBomb(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "bomb", 1, 1, nil)

	const valueBytes = 128 << 20
	now := time.Now().UnixMilli()
	batch := zstdBombBatch(t, valueBytes, now)
	t.Logf("produced batch: %d bytes on the wire, %d MiB decompressed", len(batch), valueBytes>>20)

	c.waitFor(30*time.Second, "the bomb batch accepted", func() bool {
		resp, err := produceRequest("bomb", batch).RequestWith(ctx, cl.Broker(1))
		if err != nil {
			t.Fatal(err)
		}
		code := resp.Topics[0].Partitions[0].ErrorCode
		if code != 0 && code != kerr.NotLeaderForPartition.Code {
			t.Fatalf("produce: %v", kerr.ErrorForCode(code))
		}
		return code == 0
	})

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Version = 7
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "bomb"
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Timestamp, lp.CurrentLeaderEpoch = -3, -1
	lt.Partitions = append(lt.Partitions, lp)
	lo.Topics = append(lo.Topics, lt)
	start := time.Now()
	resp, err := lo.RequestWith(ctx, cl.Broker(1))
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	p := resp.Topics[0].Partitions[0]
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("ListOffsets -3: error %d offset %d timestamp %d, took %v, the test process allocated %d MiB", p.ErrorCode, p.Offset, p.Timestamp, time.Since(start), alloc>>20)
	if alloc > 64<<20 {
		t.Fatalf("one ListOffsets request of a %d-byte batch allocated %d MiB", len(batch), alloc>>20)
	}
	if p.ErrorCode != 0 || p.Offset != 0 || p.Timestamp != now+1 {
		t.Fatalf("ListOffsets -3 = error %d, offset %d, timestamp %d; want the batch's: offset 0, timestamp %d", p.ErrorCode, p.Offset, p.Timestamp, now+1)
	}
}
