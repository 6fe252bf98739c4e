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
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
	reg := c.brokers[0].registry
	const received, fetchAnswers = "flotilla_kafka_bytes_received_total", "flotilla_kafka_requests_total"
	receivedBefore := gathered(t, reg, received)
	answeredBefore := gathered(t, reg, fetchAnswers, "api", "Fetch", "outcome", "answered")
	before := heap()
	const fetches = 60
	sent := 0
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
		sent += 4 + len(body)
	}
	// The broker reads every Fetch, answers what it can (the first, being
	// written, and the next, held) and then waits for the client to read.
	// Watch the heap until it has come that far, and a little beyond: the
	// old broker held an answer per Fetch read.
	checkHeap := func() {
		t.Helper()
		if grew := heap() - before; grew > 64<<20 {
			t.Fatalf("%d pipelined Fetches of 4 MB that the client does not read hold %d MiB", fetches, grew>>20)
		}
	}
	c.waitFor(30*time.Second, "every Fetch read and two answered", func() bool {
		checkHeap()
		return gathered(t, reg, received)-receivedBefore >= float64(sent) &&
			gathered(t, reg, fetchAnswers, "api", "Fetch", "outcome", "answered")-answeredBefore >= 2
	})
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		checkHeap()
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

// gathered returns the sum of the samples of the counter or gauge name in
// reg whose labels include the given label name, value pairs; it fails the
// test if there is no such family.
func gathered(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		var sum float64
	samples:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
					return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}) {
					continue samples
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return sum
	}
	t.Fatalf("no metric %s", name)
	return 0
}
