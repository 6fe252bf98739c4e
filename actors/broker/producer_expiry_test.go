package broker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/configs"
)

// TestProducersExpire: with kafka.producer_id_expiration_ms at 200 ms, a
// partition's leader has the idempotent producers whose last batch is
// older than that forgotten on its own, and every replica forgets the same
// ones; a producer whose batch is timestamped ahead stays. A forgotten
// producer then writes on, accepted as a new one.
func TestProducersExpire(t *testing.T) {
	const expiration = 200 * time.Millisecond
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Kafka.ProducerIDExpirationMs = expiration.Milliseconds() })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.createTopic(ctx, c.client(), "expiry", 1, 3, nil)
	tp := partition.TopicPartition{Topic: "expiry", Partition: 0}

	produce := func(cl *kgo.Client, ts time.Time) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v"), Timestamp: ts}).FirstErr(); err != nil {
			t.Fatalf("produce at %v: %v", ts, err)
		}
	}
	// Each client is an idempotent producer with a producer id of its own.
	newProducer := func() *kgo.Client {
		return c.client(kgo.DefaultProduceTopic("expiry"), kgo.ProducerLinger(0), kgo.RecordRetries(3))
	}
	var stale []*kgo.Client
	for range 3 {
		cl := newProducer()
		produce(cl, time.Now().Add(-time.Hour))
		stale = append(stale, cl)
	}
	produce(newProducer(), time.Now())
	produce(newProducer(), time.Now().Add(time.Hour))

	// Every replica, followers included, ends with the one producer ahead
	// of the cutoff: nothing but the leader's expiry entries removes any.
	replica := func(i int) *partition.View {
		r := c.brokers[i].Replicas().Get(tp)
		if r == nil {
			return nil
		}
		return r.Machine.View()
	}
	c.waitFor(20*time.Second, "every replica forgets the producers idle for longer than the expiration", func() bool {
		for i := range c.brokers {
			if v := replica(i); v == nil || v.HighWatermark != 5 || v.Producers != 1 {
				return false
			}
		}
		return true
	})

	// A forgotten producer goes on at its next sequence number: unknown to
	// the partition, it is accepted (Kafka's KIP-360 rule) and remembered
	// again, on every replica.
	produce(stale[0], time.Now().Add(time.Hour))
	c.waitFor(20*time.Second, "every replica remembers the producer again", func() bool {
		for i := range c.brokers {
			if v := replica(i); v == nil || v.HighWatermark != 6 || v.Producers != 2 {
				return false
			}
		}
		return true
	})
}
