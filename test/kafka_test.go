package test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKafkaRoundTrip produces with franz-go's default producer (idempotent,
// acks=all) and reads back with a plain consumer, over 1 and 16 partitions
// and every compression codec: every record comes back byte for byte at the
// partition and offset its produce promise reported, offsets dense from 0,
// and compressed batches stay compressed as the producer made them.
func TestKafkaRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	adm := nd.admin(t)
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
		attr  uint8 // the compression bits a consumer sees in the batch attributes
	}{
		{"none", kgo.NoCompression(), 0},
		{"gzip", kgo.GzipCompression(), 1},
		{"snappy", kgo.SnappyCompression(), 2},
		{"lz4", kgo.Lz4Compression(), 3},
		{"zstd", kgo.ZstdCompression(), 4},
	}
	for _, partitions := range []int32{1, 16} {
		for _, c := range codecs {
			// The bulk of the volume goes through the uncompressed
			// 16-partition case; the others check the codecs and the
			// single-partition path with fewer records.
			n := 10_000
			if partitions == 16 && c.attr == 0 {
				n = 100_000
			}
			t.Run(fmt.Sprintf("%dp-%s", partitions, c.name), func(t *testing.T) {
				topic := fmt.Sprintf("roundtrip-%d-%s", partitions, c.name)
				createTopic(t, adm, topic, partitions, nil)
				rng := rand.New(rand.NewPCG(uint64(partitions), uint64(c.attr)))
				recs := randomRecords(rng, topic, n, time.Now())

				start := time.Now()
				prod := nd.client(t, kgo.ProducerBatchCompression(c.codec))
				produceAll(t, testCtx(t, 60*time.Second), prod, recs)
				produced := time.Since(start)

				start = time.Now()
				got := consumeAll(t, testCtx(t, 60*time.Second), nd, topic, n)
				t.Logf("%d records: produced in %v, consumed in %v", n, produced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
				checkRoundTrip(t, recs, got, int(partitions))

				// The broker stores batches as the producer compressed
				// them. kgo leaves a batch uncompressed when compressing
				// does not shrink it, so "none" is allowed, but another
				// codec never is, and most records must carry this one.
				byCodec := map[uint8]int{}
				for _, r := range got {
					byCodec[r.Attrs.CompressionType()]++
				}
				for codec, count := range byCodec {
					if codec != c.attr && codec != 0 {
						t.Errorf("%d records read with compression %d, produced with %d", count, codec, c.attr)
					}
				}
				if byCodec[c.attr] < len(got)/2 {
					t.Errorf("only %d of %d records read in %s batches: %v", byCodec[c.attr], len(got), c.name, byCodec)
				}
			})
		}
	}
}
