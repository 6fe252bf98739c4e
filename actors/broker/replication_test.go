package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/partition"
)

// TestFollowerCatchesUpFromSegments: with one replica of an RF=3 partition
// down, the leader keeps only a short tail of applied entries in memory; the
// replica, restarted, must catch up with appends the leader reads back from
// its segments, and end with the same log.
func TestFollowerCatchesUpFromSegments(t *testing.T) {
	// Checkpoint partitions every 16 KiB: the leader's memory is compacted
	// many times while the replica is away, so it must serve the replica
	// from its segments (a snapshot would leave the replica's log starting
	// past offset 0, and the comparison below would fail).
	c := newTunedCluster(t, 3, func(rs *partition.RaftSettings) { rs.SnapshotBytes, rs.CatchUpEntries = 16<<10, 4 })
	c.waitReady()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.createTopic(ctx, c.client(), "replicated", 1, 3, nil)
	tp := partition.TopicPartition{Topic: "replicated", Partition: 0}
	var leader int
	c.waitFor(10*time.Second, "a ready partition leader", func() bool {
		for i, b := range c.brokers {
			if r := b.Replicas().Get(tp); r != nil && r.Machine.View().Leader {
				leader = i
				return true
			}
		}
		return false
	})
	down := (leader + 1) % 3
	c.stop(down)

	cl := c.client(kgo.DefaultProduceTopic("replicated"), kgo.ProducerLinger(0))
	const n = 400 // far more batches than the 16-entry tail kept in memory
	for i := 0; i < n; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: bytes.Repeat([]byte{byte(i)}, 512)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}

	c.start(down)
	want := c.brokers[leader].Replicas().Get(tp).Machine.View().HighWatermark
	c.waitFor(20*time.Second, "the restarted replica catches up", func() bool {
		r := c.brokers[down].Replicas().Get(tp)
		return r != nil && r.Machine.View().HighWatermark >= want
	})
	lead, _ := c.brokers[leader].Replicas().Get(tp).Machine.View().Log.Read(0, 1<<30)
	got, _ := c.brokers[down].Replicas().Get(tp).Machine.View().Log.Read(0, 1<<30)
	if want != n || !bytes.Equal(lead, got) {
		t.Fatalf("leader has %d records; replica's log (%d bytes) differs from the leader's (%d bytes)", want, len(got), len(lead))
	}
}

// TestPreferredLeaders: partition leaders end up on each partition's
// preferred replica, spread evenly over the brokers.
func TestPreferredLeaders(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.createTopic(ctx, c.client(), "spread", 12, 3, nil)
	c.waitFor(10*time.Second, "topic applied on broker 1", func() bool { return c.brokers[0].Controller().View().Topics["spread"] != nil })
	topic := func() []uint64 {
		var preferred []uint64
		for _, p := range c.brokers[0].Controller().View().Topics["spread"].Partitions {
			preferred = append(preferred, p.Replicas[0])
		}
		return preferred
	}
	c.waitFor(20*time.Second, "every partition led by its preferred replica", func() bool {
		for i, want := range topic() {
			r := c.brokers[want-1].Replicas().Get(partition.TopicPartition{Topic: "spread", Partition: int32(i)})
			if r == nil || !r.Machine.View().Leader {
				return false
			}
		}
		return true
	})
	count := map[uint64]int{}
	for _, id := range topic() {
		count[id]++
	}
	if count[1] != 4 || count[2] != 4 || count[3] != 4 {
		t.Fatalf("leaders per broker %v, want 4 each", count)
	}
}

// TestISRAndMinInsync: the ISR follows Kafka's time rule and Metadata
// reports it; acks=all produces are refused with NOT_ENOUGH_REPLICAS while
// the ISR is smaller than min.insync.replicas, and accepted again once the
// replica is back.
func TestISRAndMinInsync(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seeds := c.seeds()
	admCl := c.client()
	three := "3"
	c.createTopic(ctx, admCl, "strict", 1, 3, map[string]*string{"min.insync.replicas": &three})
	tp := partition.TopicPartition{Topic: "strict", Partition: 0}
	leaderOf := func() int {
		for i, b := range c.brokers {
			if b == nil {
				continue
			}
			if r := b.Replicas().Get(tp); r != nil && r.Machine.View().Leader {
				return i
			}
		}
		return -1
	}
	c.waitFor(15*time.Second, "a partition leader with the full ISR", func() bool {
		l := leaderOf()
		return l >= 0 && len(c.brokers[l].Replicas().Get(tp).Machine.View().ISR) == 3
	})
	produce := func(opts ...kgo.Opt) error {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("strict"),
			kgo.MetadataMinAge(50 * time.Millisecond)}, opts...)...)
		if err != nil {
			return err
		}
		defer cl.Close()
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		defer pcancel()
		return cl.ProduceSync(pctx, &kgo.Record{Value: []byte("x")}).FirstErr()
	}
	if err := produce(); err != nil {
		t.Fatalf("produce with the full ISR: %v", err)
	}

	leader := leaderOf()
	down := (leader + 1) % 3
	c.stop(down)
	c.waitFor(15*time.Second, "the stopped replica leaves the ISR", func() bool {
		l := leaderOf()
		return l >= 0 && len(c.brokers[l].Replicas().Get(tp).Machine.View().ISR) == 2
	})
	// The leader reports the ISR (other brokers know only the leader until
	// leadership is disseminated). Polled: a leadership that moves just
	// then (the preferred replica taking over after the creation) starts
	// with the replicas that acknowledged its first entry, and the rest
	// join at its next look, a quarter of a second later.
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr("strict")
	req.Topics = append(req.Topics, rt)
	c.waitFor(5*time.Second, "metadata from the leader with 3 replicas, 2 in sync", func() bool {
		l := leaderOf()
		if l < 0 {
			return false
		}
		resp, err := admCl.Broker(l+1).Request(ctx, req)
		if err != nil {
			return false
		}
		p := resp.(*kmsg.MetadataResponse).Topics[0].Partitions[0]
		return len(p.ISR) == 2 && len(p.Replicas) == 3
	})
	// Without retries, to see the broker's answer (a leader move may
	// answer NOT_LEADER first: poll).
	var last error
	c.waitFor(10*time.Second, "acks=all refused with NOT_ENOUGH_REPLICAS", func() bool {
		last = produce(kgo.RecordRetries(0))
		if last == nil {
			t.Fatal("acks=all produce accepted with 2 of 3 replicas in sync and min.insync.replicas=3")
		}
		return errors.Is(last, kerr.NotEnoughReplicas)
	})

	c.start(down)
	c.waitFor(15*time.Second, "the replica rejoins the ISR", func() bool {
		l := leaderOf()
		return l >= 0 && len(c.brokers[l].Replicas().Get(tp).Machine.View().ISR) == 3
	})
	if err := produce(); err != nil {
		t.Fatalf("produce after the replica came back: %v", err)
	}
}

// TestLeadershipDisseminated: every broker answers Metadata with the leader
// of partitions it does not host, from what their leaders broadcast.
func TestLeadershipDisseminated(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "single", 6, 1, nil)
	for i := range c.brokers {
		c.waitFor(10*time.Second, fmt.Sprintf("broker %d knows every partition's leader", i+1), func() bool {
			req := kmsg.NewPtrMetadataRequest()
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr("single")
			req.Topics = append(req.Topics, rt)
			resp, err := cl.Broker(i+1).Request(ctx, req)
			if err != nil {
				return false
			}
			md := resp.(*kmsg.MetadataResponse)
			if len(md.Topics) != 1 || md.Topics[0].ErrorCode != 0 || len(md.Topics[0].Partitions) != 6 {
				return false
			}
			for _, p := range md.Topics[0].Partitions {
				if p.ErrorCode != 0 || p.Leader <= 0 || len(p.Replicas) != 1 || p.Leader != p.Replicas[0] || len(p.ISR) != 1 {
					return false
				}
			}
			return true
		})
	}
}
