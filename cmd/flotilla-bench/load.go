package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// loadResult is what one broker did under the produce/consume load.
type loadResult struct {
	records       int
	produceTime   time.Duration
	latencies     []time.Duration // per record: Produce call → promise
	consumeTime   time.Duration
	consumedBytes int64
	requests      requestView // the producer's view of its produce requests
}

// valuePool is a block of random bytes that record values are cut from.
// Each value is a distinct window, and the pool is far larger than a
// produce batch (1 MB), so no batch holds two equal values: the data is
// incompressible, and kgo sends it uncompressed even though it tries
// snappy first (its default).
type valuePool []byte

// newValuePool returns size bytes from a seeded ChaCha8, the same on every
// run.
func newValuePool(size int) valuePool {
	p := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{'f', 'l', 'o', 't', 'i', 'l', 'l', 'a'})
	_, _ = rng.Read(p) // ChaCha8.Read never fails
	return p
}

// value returns record i's value, benchValueBytes long.
func (p valuePool) value(i int) []byte {
	slots := len(p) / benchValueBytes
	off := (i % slots) * benchValueBytes
	return p[off : off+benchValueBytes : off+benchValueBytes]
}

// runLoad produces o.records records to the benchmark topic at addr, waits
// for every promise, then consumes them all back from the start with a new
// client and checks that exactly those came back. phase is called as the
// timing of each phase starts ("produce", "consume") and when the last
// record is consumed ("done").
func runLoad(ctx context.Context, addr string, o produceOptions, pool valuePool, phase func(string)) (loadResult, error) {
	res := loadResult{records: o.records}
	var err error
	times := &requestTimes{}
	if res.produceTime, res.latencies, err = produceAll(ctx, addr, o, pool, phase, kgo.WithHooks(times)); err != nil {
		return res, err
	}
	res.requests = times.view()
	if res.consumeTime, res.consumedBytes, err = consumeAll(ctx, addr, o.records, phase); err != nil {
		return res, err
	}
	return res, nil
}

// produceAll produces o.records records with franz-go's defaults (acks=all,
// idempotent, linger 10 ms, the uniform-bytes partitioner that moves to
// another partition every 64 KiB) and at most o.inflight records buffered.
// It returns the time until the last promise and each record's latency.
// extra are options added to the client's, such as hooks.
func produceAll(ctx context.Context, addr string, o produceOptions, pool valuePool, phase func(string), extra ...kgo.Opt) (time.Duration, []time.Duration, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.DefaultProduceTopic(benchTopic),
		kgo.MaxBufferedRecords(o.inflight),
	}, extra...)...)
	if err != nil {
		return 0, nil, fmt.Errorf("producer: %w", err)
	}
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		return 0, nil, fmt.Errorf("producer ping: %w", err)
	}

	lat := make([]time.Duration, o.records)
	var mu sync.Mutex
	var failed int
	var firstErr error
	phase("produce")
	start := time.Now()
	for i := range o.records {
		at := time.Now()
		cl.Produce(ctx, &kgo.Record{Value: pool.value(i)}, func(_ *kgo.Record, err error) {
			lat[i] = time.Since(at)
			if err != nil {
				mu.Lock()
				failed++
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, nil, fmt.Errorf("flush: %w", err)
	}
	took := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	if failed > 0 {
		return 0, nil, fmt.Errorf("%d of %d records failed, the first with: %w", failed, o.records, firstErr)
	}
	return took, lat, nil
}

// consumeAll reads the benchmark topic from the start until it has n
// records, checking that each partition's offsets run from 0 without a gap
// or a repeat, that every value came back whole, and that the partitions
// end at n records in all.
func consumeAll(ctx context.Context, addr string, n int, phase func(string)) (time.Duration, int64, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumeTopics(benchTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return 0, 0, fmt.Errorf("consumer: %w", err)
	}
	defer cl.Close()

	next := map[int32]int64{}
	var got int
	var bytes int64
	var bad error
	phase("consume")
	start := time.Now()
	for got < n && bad == nil { // bounded by ctx's deadline
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, 0, fmt.Errorf("consumed %d of %d records: %w", got, n, err)
		}
		fetches.EachError(func(t string, p int32, err error) {
			bad = errors.Join(bad, fmt.Errorf("fetch %s/%d: %w", t, p, err))
		})
		fetches.EachRecord(func(r *kgo.Record) {
			if want := next[r.Partition]; r.Offset != want && bad == nil {
				bad = fmt.Errorf("partition %d: got offset %d, want %d", r.Partition, r.Offset, want)
			}
			next[r.Partition] = r.Offset + 1
			got++
			bytes += int64(len(r.Value))
		})
	}
	took := time.Since(start)
	phase("done")
	if bad != nil {
		return 0, 0, bad
	}
	if got != n || bytes != int64(n)*benchValueBytes {
		return 0, 0, fmt.Errorf("consumed %d records of %d bytes in all, produced %d of %d", got, bytes, n, int64(n)*benchValueBytes)
	}
	if err := checkEndOffsets(ctx, cl, n); err != nil {
		return 0, 0, err
	}
	return took, bytes, nil
}

// checkEndOffsets checks that the topic's partitions hold n records in all.
func checkEndOffsets(ctx context.Context, cl *kgo.Client, n int) error {
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, benchTopic)
	if err != nil {
		return fmt.Errorf("list end offsets: %w", err)
	}
	var total int64
	var bad error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			bad = errors.Join(bad, fmt.Errorf("end offset of partition %d: %w", o.Partition, o.Err))
		}
		total += o.Offset
	})
	if bad != nil {
		return bad
	}
	if total != int64(n) {
		return fmt.Errorf("partitions end at %d records in all, produced %d", total, n)
	}
	return nil
}
