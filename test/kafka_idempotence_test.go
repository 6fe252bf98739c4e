package test

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// idempotentBatch encodes an uncompressed record batch (magic 2) of n
// records from producer pid/epoch starting at sequence seq, with its CRC,
// as a producer sends it.
func idempotentBatch(pid int64, epoch int16, seq int32, n int) []byte {
	ts := time.Now().UnixMilli()
	var records []byte
	for i := range n {
		r := kmsg.Record{OffsetDelta: int32(i), Key: fmt.Appendf(nil, "p%d-e%d-s%d", pid, epoch, int(seq)+i), Value: []byte("idempotent")}
		body := r.AppendTo(nil)
		r.Length = int32(len(body) - 1) // everything after the 1-byte varint of length 0
		records = r.AppendTo(records)
	}
	b := kmsg.RecordBatch{
		Magic:           2,
		LastOffsetDelta: int32(n - 1),
		FirstTimestamp:  ts,
		MaxTimestamp:    ts,
		ProducerID:      pid,
		ProducerEpoch:   epoch,
		FirstSequence:   seq,
		NumRecords:      int32(n),
		Records:         records,
	}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12)) // length: what follows it
	// CRC-32C of everything from the attributes (byte 21) to the end.
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}

// produceRaw sends one batch to partition 0 of topic with acks=all and
// returns the partition's error code and base offset.
func produceRaw(t *testing.T, cl *kgo.Client, nd *node, topic string, batch []byte) (int16, int64) {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 10_000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := brokerRequest[*kmsg.ProduceResponse](t, cl, nd, req)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("Produce v%d: %d topics in the answer", resp.Version, len(resp.Topics))
	}
	p := resp.Topics[0].Partitions[0]
	return p.ErrorCode, p.BaseOffset
}

// TestIdempotentProduce drives the broker's producer-state checks with raw
// batches, so that each rule is exercised on purpose rather than by timing:
// a retried batch is answered with its original offset (also after a
// SIGKILL and restart, from the recovered producer state), a sequence gap
// and a new epoch not starting at 0 are OUT_OF_ORDER_SEQUENCE_NUMBER, an
// older epoch is INVALID_PRODUCER_EPOCH, and the log holds each batch once.
func TestIdempotentProduce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	const topic = "idempotent"
	createTopic(t, nd.admin(t), topic, 1, nil)
	cl := nd.client(t)

	init := kmsg.NewPtrInitProducerIDRequest()
	init.TransactionTimeoutMillis = 60_000
	ipid := brokerRequest[*kmsg.InitProducerIDResponse](t, cl, nd, init)
	if ipid.ErrorCode != 0 || ipid.ProducerID < 0 || ipid.ProducerEpoch < 0 {
		t.Fatalf("InitProducerId: %s id %d epoch %d", codeName(ipid.ErrorCode), ipid.ProducerID, ipid.ProducerEpoch)
	}
	pid, e := ipid.ProducerID, ipid.ProducerEpoch
	ipid2 := brokerRequest[*kmsg.InitProducerIDResponse](t, cl, nd, init)
	if ipid2.ProducerID == pid {
		t.Errorf("two InitProducerId requests both got producer id %d", pid)
	}

	steps := []struct {
		name   string
		batch  []byte
		code   int16
		offset int64 // -1: not checked
	}{
		{"first batch", idempotentBatch(pid, e, 0, 3), 0, 0},
		{"its retry", idempotentBatch(pid, e, 0, 3), 0, 0},
		{"next batch", idempotentBatch(pid, e, 3, 2), 0, 3},
		{"retry of an earlier batch of the last five", idempotentBatch(pid, e, 0, 3), 0, 0},
		{"sequence gap", idempotentBatch(pid, e, 10, 1), kerr.OutOfOrderSequenceNumber.Code, -1},
		{"new epoch not starting at 0", idempotentBatch(pid, e+1, 5, 1), kerr.OutOfOrderSequenceNumber.Code, -1},
		{"new epoch", idempotentBatch(pid, e+1, 0, 2), 0, 5},
		{"older epoch", idempotentBatch(pid, e, 5, 1), kerr.InvalidProducerEpoch.Code, -1},
	}
	for _, s := range steps {
		code, off := produceRaw(t, cl, nd, topic, s.batch)
		if code != s.code || (s.offset >= 0 && off != s.offset) {
			t.Errorf("%s: %s at offset %d; want %s at %d", s.name, codeName(code), off, codeName(s.code), s.offset)
		}
	}

	// The producer state survives a crash: retries are still recognised.
	nd.kill()
	nd.start(t)
	nd.waitKafka(t)
	waitTopicReady(t, nd.admin(t), topic, 1)
	cl = nd.client(t)
	for _, s := range []struct {
		name   string
		batch  []byte
		code   int16
		offset int64
	}{
		{"after restart: retry of the new epoch's batch", idempotentBatch(pid, e+1, 0, 2), 0, 5},
		{"after restart: older epoch", idempotentBatch(pid, e, 5, 1), kerr.InvalidProducerEpoch.Code, -1},
		{"after restart: sequence gap", idempotentBatch(pid, e+1, 7, 1), kerr.OutOfOrderSequenceNumber.Code, -1},
		{"after restart: next batch", idempotentBatch(pid, e+1, 2, 1), 0, 7},
	} {
		code, off := produceRaw(t, cl, nd, topic, s.batch)
		if code != s.code || (s.offset >= 0 && off != s.offset) {
			t.Errorf("%s: %s at offset %d; want %s at %d", s.name, codeName(code), off, codeName(s.code), s.offset)
		}
	}

	got := consumeAll(t, testCtx(t, 30*time.Second), nd, topic, 8)
	var want []string // each batch once, in order: epoch e seq 0-4, epoch e+1 seq 0-2
	for s := range 5 {
		want = append(want, fmt.Sprintf("p%d-e%d-s%d", pid, e, s))
	}
	for s := range 3 {
		want = append(want, fmt.Sprintf("p%d-e%d-s%d", pid, e+1, s))
	}
	if len(got) != len(want) {
		t.Fatalf("the log holds %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if w := want[i]; string(r.Key) != w || r.Offset != int64(i) || r.ProducerID != pid {
			t.Errorf("offset %d: record %q (at %d, producer %d), want %q", i, r.Key, r.Offset, r.ProducerID, w)
		}
	}
}
