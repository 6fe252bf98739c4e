package broker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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

// TestPipelinedFetchesHoldOneAnswer: a client that pipelines Fetches and
// does not read the answers makes the broker hold one answer at a time,
// not one per Fetch: 60 requests of a few dozen bytes each used to pin
// 60 record sets of 4 MB.
func TestPipelinedFetchesHoldOneAnswer(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const topic = "pipelined"
	cl := c.client()
	c.createTopic(ctx, cl, topic, 1, 1, nil)
	p := c.client(kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(1<<20))
	value := make([]byte, 1000)
	for range 4000 {
		p.Produce(ctx, &kgo.Record{Value: value}, nil)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	conn, err := net.Dial("tcp", c.brokers[0].KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	const fetches = 60
	for i := range fetches {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 4
		req.ReplicaID, req.MaxBytes = -1, 16<<20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 16 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		// The request header v1: key, version, correlation id, client id.
		body := binary.BigEndian.AppendUint16(nil, uint16(kmsg.Fetch))
		body = binary.BigEndian.AppendUint16(body, uint16(req.Version))
		body = binary.BigEndian.AppendUint32(body, uint32(i))
		body = binary.BigEndian.AppendUint16(body, 1)
		body = append(body, 'x')
		body = req.AppendTo(body)
		if _, err := conn.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing to wait for: the broker answers what it can and then waits
	// for the client to read. Watch the heap for a while meanwhile.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if grew := heap() - before; grew > 64<<20 {
			t.Fatalf("%d pipelined Fetches of 4 MB that the client does not read hold %d MiB", fetches, grew>>20)
		}
	}
	// Every Fetch held back is answered, in order, once the client reads.
	if err := conn.SetReadDeadline(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	for i := range fetches {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if id := binary.BigEndian.Uint32(hdr[4:]); id != uint32(i) {
			t.Fatalf("answer %d has correlation id %d", i, id)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-4)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = 4
		if err := resp.ReadFrom(body); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if rp := resp.Topics[0].Partitions[0]; rp.ErrorCode != 0 || len(rp.RecordBatches) < 1<<20 {
			t.Fatalf("answer %d: error %d, %d record bytes", i, rp.ErrorCode, len(rp.RecordBatches))
		}
	}
}
