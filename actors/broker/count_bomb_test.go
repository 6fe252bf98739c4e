package broker

import (
	"bytes"
	"compress/gzip"
	"context"
	"io/fs"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestCompressedBatchRecordCountIsChecked: a gzip batch holding one record
// whose header claims 2^31-1 records (lastOffsetDelta 2^31-2) was taken as
// it was, because produce never decompressed: the log end jumped by 2^31-1
// for a 100-byte request, and since a segment's relative offsets are 32
// bits the log rolled a new segment (four files, one kept open) every
// second such batch. Kafka's LogValidator reads a compressed batch's
// records and refuses one that ends before its count (INVALID_RECORD).
// Each such batch must be refused so, and the log must not move; a real
// client's compressed batch of many tiny records is still taken whole.
func TestCompressedBatchRecordCountIsChecked(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "bomb", 1, 1, nil)

	now := time.Now().UnixMilli()
	rec := kmsg.Record{Value: []byte("v")}
	rec.Length = int32(len(rec.AppendTo(nil)) - 1)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(rec.AppendTo(nil))
	_ = zw.Close()
	batch := sealBatch(kmsg.RecordBatch{Magic: 2, Attributes: 1, LastOffsetDelta: math.MaxInt32 - 1, FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: math.MaxInt32, Records: z.Bytes()})

	var accepted, lastBase int64
	for range 10 {
		var p kmsg.ProduceResponseTopicPartition
		c.waitFor(30*time.Second, "the partition answers", func() bool {
			resp, err := produceRequest("bomb", bytes.Clone(batch)).RequestWith(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			p = resp.Topics[0].Partitions[0]
			return p.ErrorCode != kerr.NotLeaderForPartition.Code && p.ErrorCode != kerr.LeaderNotAvailable.Code
		})
		if p.ErrorCode == 0 {
			accepted++
			lastBase = p.BaseOffset
		} else if p.ErrorCode != kerr.InvalidRecord.Code {
			t.Fatalf("a one-record gzip batch claiming %d records: error %d, want INVALID_RECORD", int64(math.MaxInt32), p.ErrorCode)
		}
	}
	segments := 0
	_ = filepath.WalkDir(c.cfgs[0].DataDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(path, "bomb") && strings.HasSuffix(path, ".log") {
			segments++
		}
		return nil
	})
	if accepted > 0 {
		t.Fatalf("%d of 10 one-record gzip batches claiming %d records accepted; the last at offset %d; the partition has %d segment files",
			accepted, int64(math.MaxInt32), lastBase, segments)
	}

	// franz-go's zstd batch of 2000 empty records, far fewer bytes than
	// records: read on produce, accepted whole, at offset 0.
	producer := c.client(kgo.DefaultProduceTopic("bomb"), kgo.ProducerBatchCompression(kgo.ZstdCompression()),
		kgo.ProducerLinger(time.Second), kgo.DisableIdempotentWrite())
	recs := make([]*kgo.Record, 2000)
	for i := range recs {
		recs[i] = &kgo.Record{}
	}
	results := producer.ProduceSync(ctx, recs...)
	if err := results.FirstErr(); err != nil {
		t.Fatalf("a zstd batch of %d empty records: %v", len(recs), err)
	}
	if first, last := results[0].Record.Offset, results[len(results)-1].Record.Offset; first != 0 || last != int64(len(recs)-1) {
		t.Fatalf("the %d records at offsets %d to %d, want 0 to %d", len(recs), first, last, len(recs)-1)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "bomb")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("bomb", 0); o.Err != nil || o.Offset != int64(len(recs)) {
		t.Fatalf("log end %d (%v), want %d", o.Offset, o.Err, len(recs))
	}
}
