package broker

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/configs"
)

const (
	waitsForRequests = "broker removal waits until a majority of the voters that stay ask for it"
	waitsForLive     = "broker removal waits until the voters that remain are a live majority"
)

// dropPeer returns broker i's config without peer id.
func (c *testCluster) dropPeer(i int, id uint64) *configs.Config {
	cfg := *c.cfgs[i]
	cfg.Peers = slices.DeleteFunc(slices.Clone(cfg.Peers), func(p configs.Peer) bool { return p.ID == id })
	return &cfg
}

// waitRemovalWaits waits until a running broker logs msg about broker
// id's removal, failing at once if any running broker's controller state
// shows id draining or removed before.
func (c *testCluster) waitRemovalWaits(logs *clusterLogs, id uint64, msg string) {
	c.t.Helper()
	field := fmt.Sprintf(`"node_id":%d,`, id)
	c.waitFor(30*time.Second, fmt.Sprintf("a broker logging %q for broker %d", msg, id), func() bool {
		found := false
		for i, b := range c.brokers {
			if b == nil {
				continue
			}
			if v := b.Controller().View(); v.IsDraining(id) || v.IsRemoved(id) {
				c.t.Fatalf("broker %d's removal started: broker %d's state has voters %v draining %v removed %v", id, i+1, v.Voters, v.Draining, v.Removed)
			}
			for _, line := range logs.node(uint64(i + 1)).lines() {
				found = found || strings.Contains(line, msg) && strings.Contains(line, field)
			}
		}
		return found
	})
}

// checkShrunk checks that broker gone was removed and told so, that the
// controller group of the others commits, and that topic t's partitions,
// once on all three, still take records on the two left.
func (c *testCluster) checkShrunk(ctx context.Context, gone int) {
	c.t.Helper()
	select {
	case reason := <-c.brokers[gone].Removed():
		c.t.Logf("broker %d: %s", gone+1, reason)
	case <-time.After(90 * time.Second):
		c.t.Fatalf("broker %d not removed; state %+v", gone+1, c.brokers[0].Controller().View())
	}
	c.stop(gone)
	c.waitFor(10*time.Second, "broker 1 applying the removal", func() bool { return c.brokers[0].Controller().View().IsRemoved(uint64(gone + 1)) })
	v := c.brokers[0].Controller().View()
	if slices.Contains(v.Voters, uint64(gone+1)) || len(v.Voters) != 2 {
		c.t.Fatalf("voters %v after removing broker %d", v.Voters, gone+1)
	}
	cl := c.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MetadataMinAge(50*time.Millisecond))
	for p, part := range v.Topics["t"].Partitions {
		if len(part.Replicas) != 2 || slices.Contains(part.Replicas, uint64(gone+1)) {
			c.t.Fatalf("partition %d replicas %v after removing broker %d", p, part.Replicas, gone+1)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Partition: int32(p), Value: []byte("after")}).FirstErr(); err != nil {
			c.t.Fatalf("produce to partition %d after removing broker %d: %v", p, gone+1, err)
		}
	}
}

// TestRemovalWaitsForTheVotersThatStay: broker 3 is down, and the operator
// drops broker 2 from the peers of brokers 1 and 2 and reloads them. The
// voters that stay are 1 and 3, and only 1 asked: nothing is drained or
// removed (which left the controller group {1, 3} with 3 down, and the
// partitions too, without a quorum). Broker 3, whose config was edited
// while it was down, asks once it starts, and the removal goes ahead.
func TestRemovalWaitsForTheVotersThatStay(t *testing.T) {
	c, logs := newLoggedCluster(t, 3, zerolog.InfoLevel)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c.createTopic(ctx, c.client(), "t", 2, 3, nil)
	c.stop(2)
	c.waitFor(20*time.Second, "controller leader among 1 and 2", func() bool { return c.leader() >= 0 })

	for _, i := range []int{0, 1} {
		if err := c.brokers[i].Reload(c.dropPeer(i, 2)); err != nil {
			t.Fatalf("broker %d reload: %v", i+1, err)
		}
	}
	c.waitRemovalWaits(logs, 2, waitsForRequests)
	v := c.brokers[0].Controller().View()
	if !slices.Equal(v.RemovalRequests[2], []uint64{1}) {
		t.Fatalf("removal requests %v, want broker 2's by broker 1 (its own does not count)", v.RemovalRequests)
	}
	for p, part := range v.Topics["t"].Partitions {
		if len(part.Replicas) != 3 || part.Reassigning() {
			t.Fatalf("partition %d changed while the removal waits: %+v", p, part)
		}
	}

	c.cfgs[2] = c.dropPeer(2, 2)
	c.start(2)
	c.checkShrunk(ctx, 1)
}

// TestRemovalWaitsForALiveMajority: brokers 3 and then 1 ask for broker
// 2's removal, but 3 went down in between: removing 2 would leave voters
// {1, 3} with 3 dead, so the removal does not start until 3 is back.
func TestRemovalWaitsForALiveMajority(t *testing.T) {
	c, logs := newLoggedCluster(t, 3, zerolog.InfoLevel, shortSession)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c.createTopic(ctx, c.client(), "t", 2, 3, nil)

	c.cfgs[2] = c.dropPeer(2, 2)
	if err := c.brokers[2].Reload(c.cfgs[2]); err != nil {
		t.Fatalf("broker 3 reload: %v", err)
	}
	c.waitRemovalWaits(logs, 2, waitsForRequests)
	if got := c.brokers[0].Controller().View().RemovalRequests[2]; !slices.Equal(got, []uint64{3}) {
		t.Fatalf("broker 2's removal requested by %v, want [3]", got)
	}
	c.stop(2)
	c.waitFor(20*time.Second, "brokers 1 and 2 finding broker 3 dead", func() bool {
		n := 0
		for _, id := range []uint64{1, 2} {
			for _, line := range logs.node(id).lines() {
				if strings.Contains(line, "peer counts as dead") && strings.Contains(line, `"peer":3,`) {
					n++
					break
				}
			}
		}
		return n == 2 && c.leader() >= 0
	})

	if err := c.brokers[0].Reload(c.dropPeer(0, 2)); err != nil {
		t.Fatalf("broker 1 reload: %v", err)
	}
	c.waitRemovalWaits(logs, 2, waitsForLive)
	if agreed, _ := c.brokers[0].Controller().View().RemovalAgreed(2); !agreed {
		t.Fatalf("removal requests %v: not agreed", c.brokers[0].Controller().View().RemovalRequests)
	}

	c.start(2)
	c.checkShrunk(ctx, 1)
}

// TestTruncatedConfigRemovesNobody: broker 1 reloads configs/cluster/
// node1.yaml read while it was being written: every prefix of it that is
// valid YAML and a valid config. Those that end inside the peers list drop
// broker 3, and are taken, but one broker's request removes nobody; the
// whole file, reloaded after, withdraws the request.
func TestTruncatedConfigRemovesNobody(t *testing.T) {
	c, logs := newLoggedCluster(t, 3, zerolog.InfoLevel)
	c.waitReady()
	data, err := os.ReadFile("../../configs/cluster/node1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The file's peers, at this cluster's addresses.
	for i, p := range c.cfgs[0].Peers {
		data = []byte(strings.ReplaceAll(string(data), fmt.Sprintf("127.0.0.1:%d", 9192+i), p.Addr))
	}
	whole, err := configs.Parse(data)
	if err != nil || whole.Validate() != nil || len(whole.Peers) != 3 {
		t.Fatalf("node1.yaml: %v %v", err, whole)
	}
	taken := 0
	for n := range len(data) {
		cfg, err := configs.Parse(data[:n])
		if err != nil || cfg.Validate() != nil || len(cfg.Peers) == 3 {
			continue
		}
		if c.brokers[0].Reload(cfg) == nil {
			taken++
		}
	}
	if taken == 0 {
		t.Fatal("no prefix of node1.yaml dropping a peer was taken: nothing tested")
	}
	t.Logf("%d prefixes dropping a peer taken", taken)
	c.waitRemovalWaits(logs, 3, waitsForRequests)
	if got := c.brokers[0].Controller().View().RemovalRequests; !slices.Equal(got[3], []uint64{1}) || len(got) != 1 {
		t.Fatalf("removal requests %v, want broker 3's by broker 1", got)
	}

	if err := c.brokers[0].Reload(whole); err != nil {
		t.Fatalf("reload of the whole file: %v", err)
	}
	c.waitFor(10*time.Second, "the request withdrawn", func() bool {
		for _, b := range c.brokers {
			if len(b.Controller().View().RemovalRequests) > 0 {
				return false
			}
		}
		return true
	})
	if v := c.brokers[0].Controller().View(); len(v.Voters) != 3 || len(v.Draining) > 0 || len(v.Removed) > 0 {
		t.Fatalf("membership changed: voters %v draining %v removed %v", v.Voters, v.Draining, v.Removed)
	}
}

// TestRemovalRequestSurvivesRestartWithoutQuorum: broker 3 is gone for
// good and broker 2 is down; the operator drops 3 from broker 1's peers
// and sends SIGHUP, but its request cannot commit without a quorum, and
// broker 1 restarts before it does. Broker 1 must ask again at its start
// (peers.json keeps what it asked for), or the removal, which needs both
// staying voters, would wait for it for ever: its config no longer
// differs from the peers it last ran with.
func TestRemovalRequestSurvivesRestartWithoutQuorum(t *testing.T) {
	c := newTestCluster(t, 3, shortSession)
	c.waitReady()
	c.stop(1)
	c.stop(2)
	// Broker 1 alone steps down (CheckQuorum), so that its request is not
	// even appended to a leader's log.
	c.waitFor(20*time.Second, "broker 1 not leading", func() bool {
		st := c.brokers[0].Board().Get(controller.ControllerGroup)
		return st != nil && st.Role != "leader"
	})
	c.cfgs[0] = c.dropPeer(0, 3)
	if err := c.brokers[0].Reload(c.cfgs[0]); err != nil {
		t.Fatalf("broker 1 reload: %v", err)
	}
	c.stop(0)
	c.start(0)
	c.cfgs[1] = c.dropPeer(1, 3)
	c.start(1)
	c.waitFor(60*time.Second, "broker 3's removal to start", func() bool {
		v := c.brokers[0].Controller().View()
		return v.IsDraining(3) || v.IsRemoved(3)
	})
}
