package broker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/configs"
)

// TestMetadataDuringCleanStop: while a broker stops cleanly and hands
// its leaderships over, the other brokers' Metadata name a leader they
// list for every partition (the outgoing one until the new one is known),
// as Kafka's does during a controlled shutdown; once it has stopped they
// list it no more. They used to fence it as soon as it announced the
// stop, and answered what it led LEADER_NOT_AVAILABLE until they knew the
// new leaders.
func TestMetadataDuringCleanStop(t *testing.T) {
	const topic, parts = "stopmeta", 30
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Raft.ElectionTicks = 25 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c.createTopic(ctx, c.client(), topic, parts, 3, nil)
	c.waitFor(30*time.Second, "every partition led and named everywhere", func() bool {
		for _, b := range c.brokers {
			if ps, ok := metadataLeaderless(b.KafkaAddr(), topic, time.Second); !ok || len(ps) > 0 {
				return false
			}
		}
		return true
	})
	victim := 2
	c.waitFor(30*time.Second, "the victim leading some partitions", func() bool { return len(c.ledGroups(victim)) >= 5 })
	addrs := []string{c.brokers[0].KafkaAddr(), c.brokers[1].KafkaAddr()}
	var answers, bad atomic.Int64
	var first atomic.Value
	var firstBad, lastBad atomic.Int64
	t0 := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, a := range addrs {
		for range 3 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if ps, ok := metadataLeaderless(a, topic, time.Second); ok {
						answers.Add(1)
						if len(ps) > 0 {
							bad.Add(1)
							d := int64(time.Since(t0))
							firstBad.CompareAndSwap(0, d)
							lastBad.Store(d)
							first.CompareAndSwap(nil, fmt.Sprintf("%s: %v", a, ps))
						}
					}
				}
			})
		}
	}
	time.Sleep(200 * time.Millisecond)
	t.Logf("stopping broker %d, which leads %d groups", victim+1, len(c.ledGroups(victim)))
	stopAt := time.Since(t0)
	c.stop(victim)
	t.Logf("Stop returned %v after it began", time.Since(t0)-stopAt)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d Metadata answers from the other brokers, %d with leaderless partitions (first %v)", answers.Load(), bad.Load(), first.Load())
	if bad.Load() > 0 {
		t.Errorf("the other brokers answered LEADER_NOT_AVAILABLE during a clean stop, from %v to %v after it began: %v",
			time.Duration(firstBad.Load())-stopAt, time.Duration(lastBad.Load())-stopAt, first.Load())
	}
	gone := int32(victim + 1) // node ids are 1-based (newTestCluster)
	for _, a := range addrs {
		c.waitFor(10*time.Second, "the stopped broker out of "+a+"'s broker list", func() bool {
			brokers, ok := metadataBrokers(a, time.Second)
			return ok && !slices.Contains(brokers, gone)
		})
	}
}

// metadataBrokers asks the broker at addr alone for the brokers its
// Metadata lists; ok is false when it does not answer within timeout.
func metadataBrokers(addr string, timeout time.Duration) (brokers []int32, ok bool) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0), kgo.DialTimeout(timeout))
	if err != nil {
		return nil, false
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kresp, err := cl.SeedBrokers()[0].Request(ctx, kmsg.NewPtrMetadataRequest())
	if err != nil {
		return nil, false
	}
	for _, b := range kresp.(*kmsg.MetadataResponse).Brokers {
		brokers = append(brokers, b.NodeID)
	}
	return brokers, true
}
