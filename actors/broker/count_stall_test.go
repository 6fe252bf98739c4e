package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/configs"
)

// headerBomb is a zstd batch of about 2 KiB: one record of almost 64 MiB
// of empty headers, whose header claims a record more than its compressed
// bytes, so that produce reads it (and refuses it: the record ends the
// stream) at the cost of 33 million headers.
func headerBomb(t *testing.T, now int64) []byte {
	t.Helper()
	const size = 64<<20 - 64
	headers := (size - 16) / 2
	body := []byte{0}                    // attributes
	body = binary.AppendVarint(body, 0)  // timestamp delta
	body = binary.AppendVarint(body, 0)  // offset delta
	body = binary.AppendVarint(body, -1) // null key
	body = binary.AppendVarint(body, -1) // null value
	body = binary.AppendVarint(body, int64(headers))
	body = append(body, make([]byte, 2*headers)...) // each: an empty key, an empty value
	rec := append(binary.AppendVarint(nil, int64(len(body))), body...)
	w, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	z := w.EncodeAll(rec, nil)
	n := int32(len(z) + 1)
	return sealBatch(kmsg.RecordBatch{Magic: 2, Attributes: int16(partition.CompressionZstd), LastOffsetDelta: n - 1,
		FirstTimestamp: now, MaxTimestamp: now, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: n, Records: z})
}

// TestCountBombsKeepTheLeader: produce reads a compressed batch that
// claims more records than it has bytes, to count them, which for a 2 KiB
// batch of 33 million empty headers takes hundreds of milliseconds. That
// ran on the partition's raft actor, past the 500 ms its followers wait
// for a heartbeat (the default raft timing): twelve such batches from a
// few clients made them elect another leader, and another producer of the
// partition waited seconds for an answer. Counted on the connections that
// read them, every such batch is refused INVALID_RECORD while the leader
// keeps its epoch and answers the other producer in less than three times
// the quickest bomb's answer.
func TestCountBombsKeepTheLeader(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) {
		cfg.Raft.TickMs, cfg.Raft.ElectionTicks, cfg.Raft.HeartbeatTicks = 50, 10, 2
	})
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "bombed", 1, 3, nil)
	tp := partition.TopicPartition{Topic: "bombed", Partition: 0}
	var leader int
	c.waitFor(20*time.Second, "the preferred replica leads with the full ISR", func() bool {
		topic := c.brokers[0].Controller().View().Topics[tp.Topic]
		if topic == nil {
			return false
		}
		leader = int(topic.Partitions[0].Replicas[0] - 1) // node ids are 1-based
		v := c.replicaView(leader, tp)
		return v != nil && v.Leader && len(v.ISR) == 3
	})
	epoch := c.replicaView(leader, tp).Epoch
	leaderID := int32(c.cfgs[leader].NodeID)

	// Another producer writes to the partition while the bombs land,
	// one record at a time, acks=all.
	producer := c.client(kgo.DefaultProduceTopic("bombed"))
	if err := producer.ProduceSync(ctx, &kgo.Record{Value: []byte("warm")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var bombing atomic.Bool
	bombing.Store(true)
	var (
		slowest  time.Duration
		produced int
		during   int
	)
	producing := make(chan error, 1)
	go func() {
		for i := 0; i < 10000 && ctx.Err() == nil; i++ {
			running := bombing.Load()
			start := time.Now()
			if err := producer.ProduceSync(ctx, &kgo.Record{Value: []byte("other")}).FirstErr(); err != nil {
				producing <- err
				return
			}
			slowest = max(slowest, time.Since(start))
			produced++
			if !running {
				break
			}
			during++
		}
		producing <- nil
	}()

	batch := headerBomb(t, time.Now().UnixMilli())
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		quickest = time.Hour // the quickest answer to a bomb
	)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Counting a bomb takes seconds under -race on a loaded
			// machine, and six count at once: kgo's default read
			// timeout (the request's 10 s plus 10 s) is too short.
			bc := c.client(kgo.RequestTimeoutOverhead(2 * time.Minute))
			for range 2 {
				start := time.Now()
				resp, err := produceRequest("bombed", bytes.Clone(batch)).RequestWith(ctx, bc.Broker(int(leaderID)))
				if err != nil {
					t.Errorf("a bomb of %d bytes: %v", len(batch), err)
					return
				}
				if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.InvalidRecord.Code {
					t.Errorf("a bomb of %d bytes: error %d, want INVALID_RECORD", len(batch), code)
					continue
				}
				mu.Lock()
				quickest = min(quickest, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	bombing.Store(false)
	if err := <-producing; err != nil {
		t.Fatalf("the other producer: %v", err)
	}
	t.Logf("%d records produced, %d while 12 bombs landed, the slowest answered in %v; the quickest bomb in %v", produced, during, slowest, quickest)

	for i := range c.brokers {
		if v := c.replicaView(i, tp); v == nil || v.Epoch != epoch {
			t.Fatalf("broker %d's replica moved from leader epoch %d: the bombs made the followers elect", i+1, epoch)
		}
	}
	// However long counting takes (-race makes it twenty times longer), the
	// other producer does not wait behind it. Counted on the partition, a
	// record waited behind the bombs queued before it, nine times as long
	// as the quickest bomb or more; sharing the cores with six counting
	// connections costs it less than three times that bomb.
	if slowest >= 3*quickest {
		t.Fatalf("the other producer of the partition waited %v for an answer while the bombs landed, the quickest bomb %v", slowest, quickest)
	}
	if during == 0 {
		t.Fatal("no record produced while the bombs landed")
	}
}
