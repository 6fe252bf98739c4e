package broker

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/configs"
)

// TestJoinDrainRemove: broker 4 starts with bootstrap off next to a
// three-broker cluster that does not list it, and joins by itself as a
// learner, then a voter. Broker 2 is then dropped from the others' peers:
// the controller moves its replicas away, removes it, and tells it, and
// it refuses to start again.
func TestJoinDrainRemove(t *testing.T) {
	c := newTestCluster(t, 4, func(cfg *configs.Config) {
		if cfg.NodeID == 4 {
			cfg.Bootstrap = false
		} else {
			cfg.Peers = cfg.Peers[:3]
		}
	})
	voters := func(i int) []uint64 { return c.brokers[i].Controller().View().Voters }
	defer func() {
		if t.Failed() {
			for i, b := range c.brokers {
				if b != nil {
					v := b.Controller().View()
					st := b.Board().Get(0)
					t.Logf("broker %d: cluster %q voters %v learners %v brokers %d; raft %+v", i+1, v.ClusterID, v.Voters, v.Learners, len(v.Brokers), *st)
				}
			}
		}
	}()
	c.waitFor(30*time.Second, "broker 4 a voter", func() bool {
		return slices.Equal(voters(0), []uint64{1, 2, 3, 4}) && slices.Equal(voters(3), []uint64{1, 2, 3, 4})
	})
	if v := c.brokers[0].Controller().View(); v.Brokers[4].KafkaAddr != c.brokers[3].KafkaAddr() {
		t.Fatalf("broker 4 registered as %+v, its Kafka address is %s", v.Brokers[4], c.brokers[3].KafkaAddr())
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := c.client(kgo.DefaultProduceTopic("drained"), kgo.MetadataMinAge(50*time.Millisecond))
	c.createTopic(ctx, cl, "drained", 8, 3, nil)
	for i := range 200 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}

	// Drop broker 2 from every other broker's config.
	for _, i := range []int{0, 2, 3} {
		cfg := *c.cfgs[i]
		cfg.Peers = slices.DeleteFunc(slices.Clone(c.cfgs[3].Peers), func(p configs.Peer) bool { return p.ID == 2 })
		c.brokers[i].Reload(&cfg)
	}
	select {
	case reason := <-c.brokers[1].Removed():
		t.Logf("broker 2: %s", reason)
	case <-time.After(60 * time.Second):
		t.Fatalf("broker 2 not told it was removed; controller state %+v", c.brokers[0].Controller().View())
	}
	v := c.brokers[0].Controller().View()
	if !slices.Equal(v.Voters, []uint64{1, 3, 4}) || !v.IsRemoved(2) {
		t.Fatalf("voters %v removed %v", v.Voters, v.Removed)
	}
	for _, p := range v.Topics["drained"].Partitions {
		if slices.Contains(p.Replicas, 2) || p.Reassigning() || len(p.Replicas) != 3 {
			t.Fatalf("partition %d still on broker 2 or moving: %+v", p.Index, p)
		}
	}
	c.stop(1)
	_, err := Start(Options{Config: c.cfgs[1], Log: c.brokers[0].log})
	if err == nil || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("removed broker started again: %v", err)
	}

	// Everything produced is still there.
	n := 0
	rd := c.client(kgo.ConsumeTopics("drained"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for n < 200 && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(*kgo.Record) { n++ })
	}
	if n != 200 {
		t.Fatalf("read back %d of 200 records", n)
	}
}
