package broker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/configs"
)

// TestOffsetsTopicReplicasOfGrownCluster: broker 1 founds a cluster alone,
// and brokers 2 and 3 join it with peers lists naming only broker 1 and
// themselves. The first FindCoordinator after they became voters creates
// the offsets topic with three replicas, the cluster's size, whichever
// broker it reaches: its replication factor used to come from that
// broker's peers at start, one or two here.
func TestOffsetsTopicReplicasOfGrownCluster(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) {
		if cfg.NodeID == 1 {
			cfg.Peers = cfg.Peers[:1]
			return
		}
		cfg.Bootstrap = false
		cfg.Peers = []configs.Peer{cfg.Peers[0], cfg.Peers[cfg.NodeID-1]}
	})
	c.waitFor(60*time.Second, "brokers 2 and 3 voters, registered and alive on every broker", func() bool {
		for _, b := range c.brokers {
			v := b.Controller().View()
			if !slices.Equal(v.Voters, []uint64{1, 2, 3}) || len(v.Placeable()) != 3 {
				return false
			}
		}
		return c.allRegistered()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	c.waitFor(30*time.Second, "FindCoordinator to create the offsets topic and answer", func() bool {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey = "g"
		resp, err := req.RequestWith(ctx, cl)
		return err == nil && resp.ErrorCode == 0
	})
	topic := c.brokers[0].Controller().View().Topics[controller.OffsetsTopic]
	if topic == nil {
		t.Fatal("no offsets topic after FindCoordinator answered")
	}
	for _, p := range topic.Partitions {
		if len(p.Replicas) != 3 {
			t.Fatalf("offsets partition %d has replicas %v, want 3 in a cluster of 3", p.Index, p.Replicas)
		}
	}
}
