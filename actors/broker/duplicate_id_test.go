package broker

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/internal/testports"
)

// TestSecondProcessWithMemberIDIsIgnored: a broker started with a copy of
// a member's config whose node_id was left unchanged (its own data dir and
// listeners, joining) does not take over that id's addresses. Its hellos
// used to make the controller register the member at the second process's
// addresses, the member registered itself back, and clients were sent to
// the impostor part of the time.
func TestSecondProcessWithMemberIDIsIgnored(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	real2 := c.brokers[1].KafkaAddr()
	dup := *c.cfgs[1]
	dup.DataDir = t.TempDir()
	dup.Raft.Listen = "127.0.0.1:0"
	dup.Kafka.Listen, dup.Kafka.Advertise = "127.0.0.1:0", ""
	dup.Bootstrap = false
	check := func() {
		t.Helper()
		for i, m := range c.brokers {
			if got := m.Controller().View().Brokers[2].KafkaAddr; got != real2 {
				t.Fatalf("broker %d sees node 2 at %s, the second process's address; node 2 is at %s", i+1, got, real2)
			}
		}
	}
	// Its data dir is new, so it first asks its peers whether node 2 is
	// registered; it advertises the member's raft address, where their
	// answers go, so it waits, starting nothing, for as long as it is let.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := Start(ctx, Options{Config: &dup, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(testLogLevel)})
	if err != nil {
		t.Logf("the second process did not start: %v", err)
		check()
		return
	}
	defer b.Stop()
	// It says hello every second; watch for several.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		check()
	}
}

// TestMovedMemberIsRegisteredAtItsNewAddresses: a member restarted at a new
// raft address is registered there once it no longer answers at the old
// one, and the others reach it again, while a second process with its id
// is ignored (TestSecondProcessWithMemberIDIsIgnored).
func TestMovedMemberIsRegisteredAtItsNewAddresses(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	c.stop(2)
	addr := fmt.Sprintf("127.0.0.1:%d", testports.Free(t, 1)[0])
	moved := *c.cfgs[2]
	moved.Raft.Listen = addr
	moved.Peers = slices.Clone(moved.Peers)
	moved.Peers[2].Addr = addr
	c.cfgs[2] = &moved
	c.start(2)
	c.waitFor(60*time.Second, "node 3 registered at its new raft address on every broker", func() bool {
		for _, b := range c.brokers {
			if b.Controller().View().Brokers[3].RaftAddr != addr {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.createTopic(ctx, c.client(), "after-move", 1, 3, nil)
	c.waitFor(30*time.Second, "node 3 in the ISR of a new RF=3 partition", func() bool {
		for _, b := range c.brokers {
			if r := b.Replicas().Get(partition.TopicPartition{Topic: "after-move"}); r != nil && r.Machine.View().Leader {
				return slices.Contains(r.Machine.View().ISR, 3)
			}
		}
		return false
	})
}
