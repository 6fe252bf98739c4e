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
// learner, then a voter. The controller's leader is then dropped from the
// others' peers: it hands the controller over, its replicas move away, it
// is removed and told, and it refuses to start again.
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

	// Drop the controller's leader from every other broker's config: it
	// must hand the controller over before it leaves.
	gone := c.leader()
	if gone < 0 {
		t.Fatal("no controller leader")
	}
	goneID := uint64(gone + 1)
	var rest []int
	for i := range c.brokers {
		if i == gone {
			continue
		}
		rest = append(rest, i)
		cfg := *c.cfgs[i]
		cfg.Peers = slices.DeleteFunc(slices.Clone(c.cfgs[3].Peers), func(p configs.Peer) bool { return p.ID == goneID })
		c.brokers[i].Reload(&cfg)
	}
	select {
	case reason := <-c.brokers[gone].Removed():
		t.Logf("broker %d: %s", goneID, reason)
	case <-time.After(60 * time.Second):
		t.Fatalf("broker %d not told it was removed; controller state %+v", goneID, c.brokers[rest[0]].Controller().View())
	}
	v := c.brokers[rest[0]].Controller().View()
	if len(v.Voters) != 3 || slices.Contains(v.Voters, goneID) || !v.IsRemoved(goneID) {
		t.Fatalf("voters %v removed %v", v.Voters, v.Removed)
	}
	for _, p := range v.Topics["drained"].Partitions {
		if slices.Contains(p.Replicas, goneID) || p.Reassigning() || len(p.Replicas) != 3 {
			t.Fatalf("partition %d still on broker %d or moving: %+v", p.Index, goneID, p)
		}
	}
	c.stop(gone)
	_, err := Start(context.Background(), Options{Config: c.cfgs[gone], Log: c.brokers[rest[0]].log})
	if err == nil || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("removed broker started again: %v", err)
	}
	c.waitFor(10*time.Second, "a new controller leader", func() bool { return c.leader() >= 0 })

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

// TestJoinAfterCompaction: a broker joins a cluster whose controller log
// was compacted long before, so it must be sent a snapshot taken before it
// was added; the snapshot must admit it.
func TestJoinAfterCompaction(t *testing.T) {
	c := newTestCluster(t, 4, func(cfg *configs.Config) {
		if cfg.NodeID == 4 {
			// It knows nobody until its config is reloaded below.
			cfg.Bootstrap, cfg.Peers = false, cfg.Peers[3:]
		} else {
			cfg.Peers = cfg.Peers[:3]
		}
	})
	lead := uint64(0)
	c.waitFor(10*time.Second, "controller leader", func() bool {
		// The group publishes its status once it runs, which may be
		// just after Start returns.
		if st := c.brokers[0].Board().Get(0); st != nil {
			lead = st.Leader
		}
		return lead != 0
	})
	c.propose(int(lead-1), 1500, "pad") // past the 1000 entries kept after a snapshot
	cfg := *c.cfgs[3]
	cfg.Peers = append(slices.Clone(c.cfgs[0].Peers), cfg.Peers...)
	c.brokers[3].Reload(&cfg)
	c.waitFor(30*time.Second, "broker 4 a voter with the whole state", func() bool {
		v := c.brokers[3].Controller().View()
		return slices.Equal(v.Voters, []uint64{1, 2, 3, 4}) && c.hasConfigs(3, "pad", 1500)
	})
}
