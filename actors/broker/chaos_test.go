package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/partition"
)

// TestNetworkChaosLosesNothing: three brokers, a 6-partition RF 3 topic,
// the default idempotent acks=all producer, and a fault loop that isolates
// a broker, cuts what it hears or what it says, cuts the link between two,
// or crashes one and starts it again, ten times. Afterwards every record
// was acknowledged (kgo retries everything retriable), each is there once
// and in order, and the replicas' committed logs are byte for byte the
// same. It found valid batches refused INVALID_RECORD after a failed
// leadership hand-over.
func TestNetworkChaosLosesNothing(t *testing.T) {
	const (
		topic      = "chaos"
		partitions = 6
		rounds     = 10
		maxRecords = 400_000
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("fault seed %d", seed)
	net := &network{isolated: map[uint64]bool{}}
	c := startCluster(t, 3, &testCluster{wrapTransport: net.wrap})
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c.createTopic(ctx, c.client(), topic, partitions, 3, nil)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.seeds()...), kgo.DefaultProduceTopic(topic),
		kgo.MetadataMinAge(100*time.Millisecond), kgo.MaxBufferedRecords(5000))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	var cmu sync.Mutex // c.brokers, between the fault loop and the checks
	faults := make(chan struct{})
	var faultErr error
	go func() {
		defer close(faults)
		rng := rand.New(rand.NewPCG(seed, 7))
		for round := 0; round < rounds && ctx.Err() == nil; round++ {
			time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
			a := uint64(rng.IntN(3) + 1)
			b := a%3 + 1
			kind := rng.IntN(5)
			switch kind {
			case 0:
				net.isolate(a, true)
			case 1: // a hears nothing
				for o := uint64(1); o <= 3; o++ {
					if o != a {
						net.cutLink(o, a, true)
					}
				}
			case 2: // a says nothing
				for o := uint64(1); o <= 3; o++ {
					if o != a {
						net.cutLink(a, o, true)
					}
				}
			case 3:
				net.cutLink(a, b, true)
				net.cutLink(b, a, true)
			case 4:
				cmu.Lock()
				c.crash(int(a - 1))
				cmu.Unlock()
			}
			t.Logf("round %d: fault %d on broker %d (link to %d)", round, kind, a, b)
			time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
			net.heal()
			if kind == 4 {
				nb, err := c.launch(int(a - 1))
				if err != nil {
					faultErr = fmt.Errorf("restart broker %d: %w", a, err)
					return
				}
				cmu.Lock()
				c.brokers[a-1] = nb
				cmu.Unlock()
			}
		}
	}()
	defer func() { cancel(); <-faults }()

	type ack struct {
		partition int32
		offset    int64
	}
	var mu sync.Mutex
	acked := map[uint64]ack{}
	failures := map[string]int{}
	seq := uint64(0)
produce:
	for seq < maxRecords && ctx.Err() == nil {
		select {
		case <-faults:
			break produce
		default:
		}
		for range 200 {
			v := binary.BigEndian.AppendUint64(nil, seq)
			seq++
			cl.Produce(ctx, &kgo.Record{Key: v, Value: v}, func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failures[err.Error()]++
					return
				}
				acked[binary.BigEndian.Uint64(r.Value)] = ack{r.Partition, r.Offset}
			})
		}
		time.Sleep(20 * time.Millisecond)
	}
	<-faults
	if faultErr != nil {
		t.Fatalf("fault loop: %v", faultErr)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	mu.Lock()
	t.Logf("produced %d records: %d acknowledged", seq, len(acked))
	for msg, n := range failures {
		t.Errorf("%d records failed with: %s", n, msg)
	}
	mu.Unlock()

	tps := make([]partition.TopicPartition, partitions)
	for p := range tps {
		tps[p] = partition.TopicPartition{Topic: topic, Partition: int32(p)}
	}
	c.waitFor(60*time.Second, "every replica at one leader's high watermark", func() bool {
		for _, tp := range tps {
			var lead uint64
			var hw int64 = -1
			for _, b := range c.brokers {
				r := b.Replicas().Get(tp)
				if r == nil {
					return false
				}
				v := r.Machine.View()
				if v.LeaderID == 0 || (lead != 0 && v.LeaderID != lead) || (hw >= 0 && v.HighWatermark != hw) {
					return false
				}
				lead, hw = v.LeaderID, v.HighWatermark
			}
		}
		return true
	})

	cons, err := kgo.NewClient(kgo.SeedBrokers(c.seeds()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ends := map[int32]int64{}
	for _, tp := range tps {
		ends[tp.Partition] = c.brokers[0].Replicas().Get(tp).Machine.View().HighWatermark
	}
	next := map[int32]int64{}
	seen := map[uint64]ack{}
	last := map[int32]uint64{}
	dups := 0
	for ctx.Err() == nil {
		done := true
		for p, e := range ends {
			done = done && next[p] >= e
		}
		if done {
			break
		}
		cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			next[r.Partition] = max(next[r.Partition], r.Offset+1)
			s := binary.BigEndian.Uint64(r.Value)
			if _, ok := seen[s]; ok {
				dups++
				return
			}
			if l, ok := last[r.Partition]; ok && s < l {
				t.Errorf("partition %d: record %d at offset %d after %d", r.Partition, s, r.Offset, l)
			}
			last[r.Partition] = s
			seen[s] = ack{r.Partition, r.Offset}
		})
	}
	missing := 0
	for s, a := range acked {
		got, ok := seen[s]
		switch {
		case !ok:
			if missing++; missing <= 5 {
				t.Errorf("acknowledged record %d (partition %d offset %d) missing", s, a.partition, a.offset)
			}
		case got != a:
			t.Errorf("record %d acknowledged at %v, found at %v", s, a, got)
		}
	}
	t.Logf("read %d distinct records, %d duplicates, %d acknowledged missing", len(seen), dups, missing)
	if dups > 0 {
		t.Errorf("%d duplicates from an idempotent producer", dups)
	}
	for _, tp := range tps {
		var logs [][]byte
		for i, b := range c.brokers {
			l, err := committedLog(b.Replicas().Get(tp).Machine.View().Log)
			if err != nil {
				t.Fatalf("broker %d %v: %v", i+1, tp, err)
			}
			logs = append(logs, l)
		}
		for i := 1; i < len(logs); i++ {
			if !bytes.Equal(logs[0], logs[i]) {
				t.Errorf("%v: broker 1's committed log (%d bytes) and broker %d's (%d bytes) differ", tp, len(logs[0]), i+1, len(logs[i]))
			}
		}
	}
}

// committedLog reads a replica's log from its start to its high
// watermark.
func committedLog(l *partition.Log) ([]byte, error) {
	var out []byte
	for off, end := l.LogStart(), l.LogEnd(); off < end; {
		b, err := l.Read(off, 1<<30)
		if err != nil {
			return nil, err
		}
		batches, err := partition.SplitBatches(b)
		if err != nil || len(batches) == 0 {
			return nil, fmt.Errorf("read at %d: %d batches, %v", off, len(batches), err)
		}
		for _, batch := range batches {
			h, err := partition.ParseBatch(batch)
			if err != nil {
				return nil, fmt.Errorf("batch at %d: %w", off, err)
			}
			off = h.BaseOffset + int64(h.LastOffsetDelta) + 1
		}
		out = append(out, b...)
	}
	return out, nil
}
