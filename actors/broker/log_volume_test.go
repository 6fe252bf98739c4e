package broker

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors/partition"
)

// led tells whether every partition of topic has a leader among the running
// brokers with isr replicas in sync.
func (c *testCluster) led(topic string, partitions int32, isr int) bool {
	for p := range partitions {
		ok := false
		for _, b := range c.brokers {
			if b == nil {
				continue
			}
			r := b.Replicas().Get(partition.TopicPartition{Topic: topic, Partition: p})
			if r != nil && r.Machine.View().Leader && len(r.Machine.View().ISR) == isr {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// volume counts the lines of l from line from on: all of them, those with
// message msg, and each message's lines.
func volume(l *lineLog, from int, msg string) (all, with int, byMessage map[string]int) {
	lines := l.lines()[from:]
	byMessage = map[string]int{}
	for _, line := range lines {
		var ev struct{ Level, Message string }
		if json.Unmarshal([]byte(line), &ev) == nil {
			byMessage[ev.Level+" "+ev.Message]++
		}
		if strings.Contains(line, `"message":"`+msg+`"`) {
			with++
		}
	}
	return len(lines), with, byMessage
}

// TestReplicaLogVolume: at info, starting a partition replica is one line,
// and an election only its outcome: a failover costs each group one role
// line on a broker, not one per election step. It logs the line counts of
// creating a 300-partition topic, of a failover and of a restart.
func TestReplicaLogVolume(t *testing.T) {
	const partitions = 60
	c, logs := newLoggedCluster(t, 3, zerolog.InfoLevel)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.client()
	mark := map[uint64]int{}
	for id := uint64(1); id <= 3; id++ {
		mark[id] = len(logs.node(id).lines())
	}
	c.createTopic(ctx, cl, "volume", partitions, 3, nil)
	c.waitFor(90*time.Second, "every partition led with its replicas in sync", func() bool { return c.led("volume", partitions, 3) })
	for id := uint64(1); id <= 3; id++ {
		all, started, by := volume(logs.node(id), mark[id], "partition replica started")
		t.Logf("broker %d: %d lines for a %d-partition topic: %v", id, all, partitions, by)
		if started != partitions {
			t.Errorf("broker %d: %d replica start lines, want %d", id, started, partitions)
		}
		for _, folded := range []string{"opened partition log", "bootstrapped new raft group", "raft group started"} {
			if n := by["info "+folded]; n != 0 {
				t.Errorf("broker %d: %d info lines %q, want them folded into the replica start", id, n, folded)
			}
		}
		mark[id] = len(logs.node(id).lines())
	}

	c.stop(2)
	c.waitFor(60*time.Second, "every partition led by a survivor", func() bool { return c.led("volume", partitions, 2) })
	for id := uint64(1); id <= 2; id++ {
		all, roles, by := volume(logs.node(id), mark[id], "raft role changed")
		t.Logf("broker %d: %d lines for the failover (%d role lines): %v", id, all, roles, by)
		for _, line := range logs.node(id).lines()[mark[id]:] {
			if strings.Contains(line, `"message":"raft role changed"`) &&
				!strings.Contains(line, `"role":"leader"`) && !strings.Contains(line, `"role":"follower"`) {
				t.Errorf("broker %d: an election step at info: %s", id, line)
				break
			}
		}
	}

	mark[3] = len(logs.node(3).lines())
	c.start(2)
	c.waitFor(60*time.Second, "every partition led with its replicas in sync after the restart", func() bool { return c.led("volume", partitions, 3) })
	all, _, by := volume(logs.node(3), mark[3], "")
	t.Logf("broker 3: %d lines for its restart: %v", all, by)
}
