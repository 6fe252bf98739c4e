package broker

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestConcurrentConsumersReadEverythingBack: consumers reading the same
// partitions at once each get every record byte for byte, while the
// broker reads record sets into buffers its connections share and hands
// them back once each response is encoded. A buffer handed back too soon
// shows up as a corrupt record here, or as a race under -race.
func TestConcurrentConsumersReadEverythingBack(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const topic, partitions, records, size = "shared-reads", 4, 3000, 2 << 10
	c.createTopic(ctx, c.client(), topic, partitions, 1, nil)

	rng := rand.NewChaCha8([32]byte{9})
	values := make(map[string][]byte, records)
	p := c.client(kgo.DefaultProduceTopic(topic))
	for i := range records {
		v := make([]byte, size)
		rng.Read(v)
		k := fmt.Sprintf("k%05d", i)
		values[k] = v
		p.Produce(ctx, &kgo.Record{Key: []byte(k), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce %s: %v", k, err)
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	const consumers = 3
	errs := make(chan error, consumers)
	for range consumers {
		cl := c.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchMaxPartitionBytes(256<<10))
		go func() {
			seen := make(map[string]bool, records)
			for len(seen) < records {
				fs := cl.PollFetches(ctx)
				if err := ctx.Err(); err != nil {
					errs <- fmt.Errorf("after %d of %d records: %w", len(seen), records, err)
					return
				}
				var bad error
				fs.EachError(func(_ string, _ int32, err error) { bad = err })
				fs.EachRecord(func(r *kgo.Record) {
					switch want, ok := values[string(r.Key)]; {
					case !ok || !bytes.Equal(r.Value, want):
						bad = fmt.Errorf("record %q at %d/%d: not what was produced", r.Key, r.Partition, r.Offset)
					case seen[string(r.Key)]:
						bad = fmt.Errorf("record %q at %d/%d: read twice", r.Key, r.Partition, r.Offset)
					}
					seen[string(r.Key)] = true
				})
				if bad != nil {
					errs <- bad
					return
				}
			}
			errs <- nil
		}()
	}
	for range consumers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
