package broker

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// longPoll is a raw Fetch of one topic's partitions at the given offsets.
type longPoll struct {
	topic    string
	id       [16]byte // the topic's id, for Fetch v13+
	offsets  map[int32]int64
	epoch    int32 // CurrentLeaderEpoch; -1 for none
	maxWait  time.Duration
	minBytes int32
}

// run sends the Fetch and returns the response and how long it took.
func (f longPoll) run(ctx context.Context, t *testing.T, cl *kgo.Client) (*kmsg.FetchResponse, time.Duration) {
	t.Helper()
	resp, took, err := f.send(ctx, cl)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return resp, took
}

// send is run for a goroutine other than the test's.
func (f longPoll) send(ctx context.Context, cl *kgo.Client) (*kmsg.FetchResponse, time.Duration, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes, req.SessionEpoch = -1, int32(f.maxWait/time.Millisecond), f.minBytes, 1<<20, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = f.topic, f.id
	for p, off := range f.offsets {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch, rp.LogStartOffset = p, off, 1<<20, f.epoch, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	start := time.Now()
	resp, err := req.RequestWith(ctx, cl)
	return resp, time.Since(start), err
}

// topicID looks up a topic's id.
func topicID(ctx context.Context, t *testing.T, cl *kgo.Client, topic string) [16]byte {
	t.Helper()
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	return md.Topics[topic].ID
}

// processCPU is the CPU time the test process (brokers included) has used.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestLongPollWaitingForMinBytesIdles: a Fetch that found data, but less
// than MinBytes, waits for more without reading again and again. It used
// to be woken at once by the data it had already counted, for as long as
// MaxWait, a core's worth of CPU per waiting consumer.
func TestLongPollWaitingForMinBytesIdles(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "min-bytes"
	cl := c.client()
	c.createTopic(ctx, cl, topic, 1, 1, nil)
	if err := c.client(kgo.DefaultProduceTopic(topic)).ProduceSync(ctx, &kgo.Record{Value: []byte("small")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	id := topicID(ctx, t, cl, topic)
	const wait = 2 * time.Second
	cpu := processCPU(t)
	if _, took := (longPoll{topic: topic, id: id, offsets: map[int32]int64{0: 1}, epoch: -1, maxWait: wait, minBytes: 1}).run(ctx, t, cl); took < wait/2 {
		t.Fatalf("a long poll at the log end was answered after %v, before MaxWait", took)
	}
	idle := processCPU(t) - cpu

	cpu = processCPU(t)
	resp, took := longPoll{topic: topic, id: id, offsets: map[int32]int64{0: 0}, epoch: -1, maxWait: wait, minBytes: 1 << 20}.run(ctx, t, cl)
	used := processCPU(t) - cpu
	if took < wait/2 || len(resp.Topics[0].Partitions[0].RecordBatches) == 0 {
		t.Fatalf("a long poll for more than there is: answered after %v with %d bytes; want the record after MaxWait", took, len(resp.Topics[0].Partitions[0].RecordBatches))
	}
	t.Logf("MaxWait %v: at the log end %v of CPU, waiting for MinBytes %v", wait, idle, used)
	if used > idle+time.Second {
		t.Errorf("waiting for MinBytes used %v of CPU against %v at the log end: it reads again and again", used, idle)
	}
}

// TestLongPollAnswersErrorsAtOnce: a partition that answers an error ends
// the long poll at once, as in Kafka, so that the consumer resets its
// offset or finds the leader instead of waiting out MaxWait.
func TestLongPollAnswersErrorsAtOnce(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const topic = "errors-at-once"
	cl := c.client()
	c.createTopic(ctx, cl, topic, 2, 1, map[string]*string{"segment.bytes": kadm.StringPtr("200"), "retention.bytes": kadm.StringPtr("200")})
	p := c.client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for range 10 {
		if err := p.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: make([]byte, 100)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	epoch, id := md.Topics[topic].Partitions[0].LeaderEpoch, md.Topics[topic].ID
	c.waitFor(20*time.Second, "retention moves the log start", func() bool {
		resp, _ := longPoll{topic: topic, id: id, offsets: map[int32]int64{0: 9}, epoch: -1}.run(ctx, t, cl)
		return resp.Topics[0].Partitions[0].LogStartOffset > 0
	})

	const wait = 10 * time.Second
	for _, tc := range []struct {
		name    string
		offset  int64
		epoch   int32
		want    int16
		withIdl bool // with an idle partition 1 at its log end beside it
	}{
		{"past the log end", 1000, -1, kerr.OffsetOutOfRange.Code, false},
		{"below the log start", 0, -1, kerr.OffsetOutOfRange.Code, false},
		{"below the log start, beside an idle partition", 0, -1, kerr.OffsetOutOfRange.Code, true},
		{"a newer leader epoch", 9, epoch + 1, kerr.UnknownLeaderEpoch.Code, false},
		{"an older leader epoch", 9, epoch - 1, kerr.FencedLeaderEpoch.Code, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			offsets := map[int32]int64{0: tc.offset}
			if tc.withIdl {
				offsets[1] = 0
			}
			cpu := processCPU(t)
			resp, took := longPoll{topic: topic, id: id, offsets: offsets, epoch: tc.epoch, maxWait: wait, minBytes: 1}.run(ctx, t, cl)
			used := processCPU(t) - cpu
			var got int16 = -1
			for _, rp := range resp.Topics[0].Partitions {
				if rp.Partition == 0 {
					got = rp.ErrorCode
				}
			}
			if got != tc.want {
				t.Errorf("error %v, want %v", kerr.ErrorForCode(got), kerr.ErrorForCode(tc.want))
			}
			if took > wait/2 {
				t.Errorf("answered after %v (%v of CPU); want at once, not after MaxWait %v", took, used, wait)
			}
		})
	}
}

// TestLongPollWokenAgainByTheSamePartition: a partition that woke a long
// poll with too little data wakes it again when more arrives; it used to
// be watched no more while another partition was, so the answer waited
// for MaxWait.
func TestLongPollWokenAgainByTheSamePartition(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "woken-again"
	cl := c.client()
	c.createTopic(ctx, cl, topic, 2, 1, nil)
	p := c.client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))

	id := topicID(ctx, t, cl, topic)
	const wait = 10 * time.Second
	type answer struct {
		resp *kmsg.FetchResponse
		took time.Duration
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, took, err := longPoll{topic: topic, id: id, offsets: map[int32]int64{0: 0, 1: 0}, epoch: -1, maxWait: wait, minBytes: 1000}.send(ctx, cl)
		done <- answer{resp, took, err}
	}()
	// The first record is too small to end the poll; whether it lands
	// before or after the poll is registered, the second one must end it.
	if err := p.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("small")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-done:
		t.Fatalf("answered after %v with too little data", a.took)
	case <-time.After(300 * time.Millisecond):
	}
	sent := time.Now()
	if err := p.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: make([]byte, 2000)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.err != nil {
		t.Fatalf("fetch: %v", a.err)
	}
	if late := time.Since(sent); late > wait/2 {
		t.Errorf("MinBytes was there %v before the answer (MaxWait %v)", late, wait)
	}
	if n := len(a.resp.Topics[0].Partitions[0].RecordBatches) + len(a.resp.Topics[0].Partitions[1].RecordBatches); n < 1000 {
		t.Errorf("answered %d record bytes, want at least MinBytes", n)
	}
}
