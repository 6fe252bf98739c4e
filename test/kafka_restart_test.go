package test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestProduceAcrossRestart: a producer with franz-go's default settings
// (idempotent, acks=all, unbounded retries) produces continuously while
// the broker is SIGKILLed (or, second variant, SIGTERMed) and restarted.
// Every record whose promise succeeded must be in the log exactly once, at
// the partition and offset it was acknowledged with, in production order
// within its partition; no record at all may be there twice (the producer
// retries what it lost with the same sequence numbers, and the restarted
// broker must recognise them).
func TestProduceAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(strings.ToUpper(unixSignalName(sig)), func(t *testing.T) { testProduceAcrossRestart(t, sig) })
	}
}

func unixSignalName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "sigkill"
	}
	return "sigterm"
}

func testProduceAcrossRestart(t *testing.T, sig syscall.Signal) {
	nd := startKafka(t)
	const (
		topic      = "stream"
		partitions = 4
		maxRecords = 100_000 // the producer never sends more
		inFlight   = 2_000   // records produced and not yet answered, at most
		perPhase   = 3_000   // acknowledgements wanted before and after each restart
		restarts   = 3
	)
	adm := nd.admin(t)
	createTopic(t, adm, topic, partitions, nil)
	prod := nd.client(t)
	ctx := testCtx(t, 2*time.Minute)

	type outcome struct {
		done      bool
		err       error
		partition int32
		offset    int64
	}
	var (
		mu      sync.Mutex
		results = make([]outcome, maxRecords)
		acked   atomic.Int64
		sem     = make(chan struct{}, inFlight)
		stop    = make(chan struct{})
		sentCh  = make(chan int, 1)
	)
	go func() {
		i := 0
		defer func() { sentCh <- i }()
		for ; i < maxRecords; i++ {
			select {
			case <-stop:
				return
			case sem <- struct{}{}:
			}
			idx := i
			rec := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%d", i%61), Value: fmt.Appendf(nil, "%d", i)}
			prod.Produce(ctx, rec, func(r *kgo.Record, err error) {
				mu.Lock()
				results[idx] = outcome{done: true, err: err, partition: r.Partition, offset: r.Offset}
				mu.Unlock()
				if err == nil {
					acked.Add(1)
				}
				<-sem
			})
		}
	}()
	stopped := false
	stopProducing := func() int {
		if !stopped {
			stopped = true
			close(stop)
		}
		return <-sentCh
	}
	defer func() {
		if !stopped {
			stopProducing()
		}
	}()

	waitFor(t, 30*time.Second, fmt.Sprintf("%d acknowledged records before the first restart", perPhase), func() bool { return acked.Load() >= perPhase })
	for round := 1; round <= restarts; round++ {
		// Not a wait for anything: a random pause so that the signal lands
		// at a different point of the produce pipeline each time (acks
		// arrive in bursts of the in-flight window, and the poll above
		// fires right after one).
		time.Sleep(time.Duration(rand.IntN(25)) * time.Millisecond)
		nd.signal(sig)
		code := nd.wait(15 * time.Second)
		if nd.running() {
			t.Fatalf("restart %d: broker still running 15 s after %s", round, unixSignalName(sig))
		}
		if sig == syscall.SIGTERM && code != 0 {
			t.Fatalf("restart %d: SIGTERM under load: exit code %d, want 0 (a clean stop)", round, code)
		}
		atRestart := acked.Load()
		t.Logf("restart %d: %s after %d acknowledged records", round, unixSignalName(sig), atRestart)
		nd.start(t)
		waitFor(t, 45*time.Second, fmt.Sprintf("restart %d: %d more acknowledged records", round, perPhase), func() bool {
			return acked.Load() >= atRestart+perPhase
		})
	}
	sent := stopProducing()
	flushCtx := testCtx(t, 30*time.Second)
	if err := prod.Flush(flushCtx); err != nil {
		t.Fatalf("flush: %v (the restarted broker does not answer what is left)", err)
	}

	mu.Lock()
	defer mu.Unlock()
	failed := 0
	var firstErr error
	for i := range sent {
		if !results[i].done {
			t.Fatalf("record %d has no outcome after Flush", i)
		}
		if results[i].err != nil {
			if failed++; firstErr == nil {
				firstErr = results[i].err
			}
		}
	}
	t.Logf("sent %d records: %d acknowledged, %d failed (first: %v)", sent, sent-failed, failed, firstErr)

	ends, err := adm.ListEndOffsets(testCtx(t, 10*time.Second), topic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("ListEndOffsets: %v %v", err, ends.Error())
	}
	total := 0
	for _, o := range ends[topic] {
		total += int(o.Offset)
	}
	got := consumeAll(t, testCtx(t, 60*time.Second), nd, topic, total)

	seenAt := make(map[int]kgo.Record, len(got))
	next := make(map[int32]int64)
	for _, r := range got {
		if r.Offset != next[r.Partition] {
			t.Fatalf("partition %d: read offset %d, expected %d (offsets dense from 0, each once)", r.Partition, r.Offset, next[r.Partition])
		}
		next[r.Partition]++
		idx, err := strconv.Atoi(string(r.Value))
		if err != nil || idx < 0 || idx >= sent {
			t.Fatalf("record at %d/%d has value %q: never sent", r.Partition, r.Offset, r.Value)
		}
		if prev, dup := seenAt[idx]; dup {
			t.Fatalf("record %d is in the log twice: at %d/%d and %d/%d (acknowledged: %v)",
				idx, prev.Partition, prev.Offset, r.Partition, r.Offset, results[idx].err == nil)
		}
		seenAt[idx] = *r
	}
	lastOffset := make(map[int32]int64)
	missing := 0
	for i := range sent {
		o := results[i]
		if o.err != nil {
			continue
		}
		r, ok := seenAt[i]
		if !ok {
			if missing++; missing <= 5 {
				t.Errorf("record %d was acknowledged at %d/%d and is not in the log", i, o.partition, o.offset)
			}
			continue
		}
		if r.Partition != o.partition || r.Offset != o.offset {
			t.Errorf("record %d acknowledged at %d/%d, found at %d/%d", i, o.partition, o.offset, r.Partition, r.Offset)
		}
		// An idempotent producer keeps each partition in production order.
		if last, ok := lastOffset[r.Partition]; ok && r.Offset <= last {
			t.Errorf("record %d at %d/%d is before an earlier record of the same partition (at %d)", i, r.Partition, r.Offset, last)
		}
		lastOffset[r.Partition] = r.Offset
	}
	if missing > 0 {
		t.Fatalf("%d acknowledged records lost across the %s", missing, unixSignalName(sig))
	}
}
