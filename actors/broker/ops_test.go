package broker

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/raftactor"
)

// messages returns the logged lines whose message is msg, decoded.
func (l *lineLog) messages(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range l.lines() {
		if !strings.Contains(line, msg) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %s: %v", line, err)
		}
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestNewLeaderLogsNoISRChangeFromEmpty: a new partition leader logs its
// first ISR with its readiness, not as a change from an empty ISR it never
// had (`ISR changed … was=[]`, though the previous leader's ISR was full).
func TestNewLeaderLogsNoISRChangeFromEmpty(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tp, leader := c.strictPartition(ctx, "isr-log")
	other := (leader + 1) % 3
	var logs lineLog
	c.stop(other)
	c.logs, c.logLevel = func(uint64) io.Writer { return &logs }, zerolog.DebugLevel
	c.start(other)
	c.logs = nil
	lead := c.brokers[leader].Replicas().Get(tp)
	c.waitFor(20*time.Second, "the restarted replica rejoins the ISR", func() bool { return len(lead.Machine.View().ISR) == 3 })
	// A transfer raft drops (the target not caught up yet, another
	// transfer or election under way) is asked for again.
	asked := time.Time{}
	c.waitFor(30*time.Second, "the restarted broker logs its leadership", func() bool {
		if len(logs.messages(t, "partition leader ready")) > 0 {
			return true
		}
		if time.Since(asked) > time.Second {
			if r := c.brokers[leader].Replicas().Get(tp); r != nil {
				c.brokers[leader].Actors().Root.Send(r.PID, &raftactor.TransferLeader{To: uint64(other + 1)})
			}
			asked = time.Now()
		}
		return false
	})
	for _, l := range logs.messages(t, "partition leader ready") {
		if isr, _ := l["isr"].([]any); len(isr) == 0 {
			t.Errorf("leader ready without its ISR: %v", l)
		}
	}
	for _, l := range logs.messages(t, "partition ISR changed") {
		if was, _ := l["was"].([]any); len(was) == 0 {
			t.Errorf("ISR change from an empty ISR logged: %v", l)
		}
	}
}

// TestPartitionHealthGauges: the leader of an RF=3 partition with
// min.insync.replicas=3 counts it under-replicated and under its min ISR
// once a replica stops, and no longer once it is back in sync.
func TestPartitionHealthGauges(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Kafka.ReplicaLagTimeMaxMs = 1000 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, leader := c.strictPartition(ctx, "health")
	reg := c.brokers[leader].registry
	health := func() (float64, float64) {
		return gathered(t, reg, "flotilla_partitions_under_replicated"), gathered(t, reg, "flotilla_partitions_under_min_isr")
	}
	if u, m := health(); u != 0 || m != 0 {
		t.Fatalf("healthy partition: %v under-replicated, %v under min ISR", u, m)
	}
	down := (leader + 1) % 3
	c.stop(down)
	c.waitFor(15*time.Second, "the leader counts the partition under-replicated and under its min ISR", func() bool {
		u, m := health()
		return u == 1 && m == 1
	})
	c.start(down)
	c.waitFor(20*time.Second, "the partition is healthy again", func() bool {
		u, m := health()
		return u == 0 && m == 0
	})
}

// TestOfflinePartitions: once the only replica of a partition stops and
// its session times out, the controller leader counts the partition
// offline; the other brokers report 0, as Kafka's controller alone does.
func TestOfflinePartitions(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Kafka.BrokerSessionTimeoutMs = 1500 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.createTopic(ctx, c.client(), "lonely", 3, 1, nil)
	lead := c.leader()
	offline := func(i int) float64 { return gathered(t, c.brokers[i].registry, "flotilla_partitions_offline") }
	c.waitFor(20*time.Second, "every partition has a leader", func() bool { return offline(lead) == 0 })
	hosted := map[int]int{} // broker index → partitions whose only replica it is
	for _, p := range c.brokers[lead].Controller().View().Topics["lonely"].Partitions {
		hosted[int(p.Replicas[0]-1)]++
	}
	down := -1
	for i, n := range hosted {
		if i != lead && n > 0 {
			down = i
		}
	}
	if down < 0 {
		t.Skipf("every partition is on the controller leader: %v", hosted)
	}
	c.stop(down)
	c.waitFor(15*time.Second, "the controller leader counts the stopped broker's partitions offline", func() bool {
		return c.leader() == lead && offline(lead) == float64(hosted[down])
	})
	for i := range c.brokers {
		if i != lead && c.brokers[i] != nil {
			if n := offline(i); n != 0 {
				t.Errorf("broker %d, not the controller leader, reports %v offline partitions", i+1, n)
			}
		}
	}
	c.start(down)
	c.waitFor(20*time.Second, "the partitions are back online", func() bool {
		l := c.leader()
		return l >= 0 && offline(l) == 0
	})
}
