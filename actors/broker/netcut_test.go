package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/raftactor"
)

// network is a fault-injecting raft transport shared by the brokers of a
// test cluster: it drops every message to or from an isolated broker, and
// every message on a cut link (one direction: from, to).
type network struct {
	mu       sync.Mutex
	isolated map[uint64]bool
	links    map[[2]uint64]bool // nil: none cut
}

func (n *network) isolate(id uint64, cut bool) {
	n.mu.Lock()
	n.isolated[id] = cut
	n.mu.Unlock()
}

// cutLink drops (cut) or passes again the messages from one broker to
// another.
func (n *network) cutLink(from, to uint64, cut bool) {
	n.mu.Lock()
	if n.links == nil {
		n.links = map[[2]uint64]bool{}
	}
	n.links[[2]uint64{from, to}] = cut
	n.mu.Unlock()
}

// heal ends every isolation and link cut.
func (n *network) heal() {
	n.mu.Lock()
	clear(n.isolated)
	clear(n.links)
	n.mu.Unlock()
}

// wrap returns broker self's transport through the network.
func (n *network) wrap(self uint64) func(raftactor.Transport) raftactor.Transport {
	return func(t raftactor.Transport) raftactor.Transport { return &cutTransport{n: n, self: self, next: t} }
}

type cutTransport struct {
	n    *network
	self uint64
	next raftactor.Transport
}

func (c *cutTransport) Send(ctx actor.SenderContext, group uint64, msgs []*pb.Message) {
	c.n.mu.Lock()
	cut := c.n.isolated[c.self]
	var pass []*pb.Message
	for _, m := range msgs {
		if !cut && !c.n.isolated[m.GetTo()] && !c.n.links[[2]uint64{c.self, m.GetTo()}] {
			pass = append(pass, m)
		}
	}
	c.n.mu.Unlock()
	if len(pass) > 0 {
		c.next.Send(ctx, group, pass)
	}
}

// TestNetworkCut isolates the broker leading a partition (not just kills
// it): it stops leading (CheckQuorum), acknowledges no acks=all write while
// cut off, the others elect a leader and keep taking writes, and once the
// network heals the isolated broker catches up with the same log.
func TestNetworkCut(t *testing.T) {
	net := &network{isolated: map[uint64]bool{}}
	c := newTestCluster(t, 3)
	for i := range c.brokers {
		c.stop(i)
	}
	c.wrapTransport = net.wrap
	for i := range c.brokers {
		c.start(i)
	}
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seeds := c.seeds()
	c.createTopic(ctx, c.client(), "cut", 1, 3, nil)
	tp := partition.TopicPartition{Topic: "cut", Partition: 0}
	leaderOf := func(except int) int {
		for i, b := range c.brokers {
			if i == except {
				continue
			}
			if r := b.Replicas().Get(tp); r != nil && r.Machine.View().Leader {
				return i
			}
		}
		return -1
	}
	c.waitFor(15*time.Second, "a partition leader", func() bool { return leaderOf(-1) >= 0 })
	produce := func(addrs []string, value string, timeout time.Duration) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic("cut"),
			kgo.MetadataMinAge(50*time.Millisecond), kgo.RecordDeliveryTimeout(timeout))
		if err != nil {
			return err
		}
		defer cl.Close()
		return cl.ProduceSync(ctx, &kgo.Record{Value: []byte(value)}).FirstErr()
	}
	if err := produce(seeds, "before", 10*time.Second); err != nil {
		t.Fatalf("produce before the cut: %v", err)
	}

	cutIdx := leaderOf(-1)
	cutID := uint64(cutIdx + 1)
	net.isolate(cutID, true)
	t.Logf("isolated broker %d, the partition's leader", cutID)
	// Straight to the isolated leader, before it notices: it may take the
	// batch, but a minority cannot commit it, so acks=all must fail.
	done := ask[*partition.ProduceDone](c, cutIdx, c.brokers[cutIdx].Replicas().Get(tp).PID, func(r *actor.PID) any {
		return &partition.Produce{Ref: 1, Records: testBatch(t, "minority"), Acks: -1, TimeoutTicks: 50, ReplyTo: r}
	})
	if done.Err == nil {
		t.Fatalf("the isolated leader acknowledged an acks=all write at offset %d", done.BaseOffset)
	}
	t.Logf("the isolated leader answered: %v", done.Err)
	c.waitFor(10*time.Second, "the isolated broker stops leading", func() bool {
		st := c.brokers[cutIdx].Board().Get(c.brokers[cutIdx].Replicas().Get(tp).Group)
		return st != nil && st.Role != "leader" && !c.brokers[cutIdx].Replicas().Get(tp).Machine.View().Leader
	})
	c.waitFor(10*time.Second, "the majority elects a leader", func() bool { return leaderOf(cutIdx) >= 0 })

	var majority []string
	for i, b := range c.brokers {
		if i != cutIdx {
			majority = append(majority, b.KafkaAddr())
		}
	}
	for _, v := range []string{"during-1", "during-2", "during-3"} {
		if err := produce(majority, v, 10*time.Second); err != nil {
			t.Fatalf("produce through the majority while cut: %v", err)
		}
	}

	net.isolate(cutID, false)
	newLeader := leaderOf(cutIdx)
	want, _ := c.brokers[newLeader].Replicas().Get(tp).Machine.View().Log.Read(0, 1<<20)
	c.waitFor(15*time.Second, "the healed broker catches up", func() bool {
		got, err := c.brokers[cutIdx].Replicas().Get(tp).Machine.View().Log.Read(0, 1<<20)
		return err == nil && bytes.Equal(got, want)
	})
	if n := c.brokers[newLeader].Replicas().Get(tp).Machine.View().HighWatermark; n != 4 {
		t.Fatalf("the partition holds %d records, want 4: before, during-1..3 (none from the minority)", n)
	}
}

// testBatch is a one-record, uncompressed, non-idempotent record batch.
func testBatch(t *testing.T, value string) []byte {
	t.Helper()
	return producerBatch(t, value, -1, -1, -1)
}

// sealBatch encodes b with its length and CRC-32C filled in, as a
// producer sends it.
func sealBatch(b kmsg.RecordBatch) []byte {
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}

// produceRequest is an acks=all Produce (v9, 10 s timeout) to topic
// carrying records[i] to partition i.
func produceRequest(topic string, records ...[]byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	for p, r := range records {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = int32(p), r
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

// producerBatch is a one-record, uncompressed record batch of an
// idempotent producer (or of none, with id -1).
func producerBatch(t *testing.T, value string, id int64, epoch int16, seq int32) []byte {
	t.Helper()
	rec := kmsg.Record{Value: []byte(value), OffsetDelta: 0}
	rec.Length = int32(len(rec.AppendTo(nil)) - 1) // the length varint itself is excluded
	b := kmsg.RecordBatch{
		Magic: 2, LastOffsetDelta: 0, FirstTimestamp: time.Now().UnixMilli(), MaxTimestamp: time.Now().UnixMilli(),
		ProducerID: id, ProducerEpoch: epoch, FirstSequence: seq, NumRecords: 1, Records: rec.AppendTo(nil),
	}
	raw := sealBatch(b)
	if _, err := partition.ParseBatch(raw); err != nil {
		t.Fatalf("test batch: %v", err)
	}
	return raw
}
