package broker

import (
	"context"
	"testing"
	"time"

	"github.com/flotilla/flotilla/actors/partition"
)

// TestReplicaStoppedBySupervisorShowsHalted: a replica's raft actor that
// stops without its manager asking (its supervisor gives up after repeated
// panics) stays on the status board as halted, so /healthz and
// flotilla_raft_role report a broker that needs a restart (before, its
// status left the board with it and the broker looked healthy), leaves the
// registry, and is not started again before the broker restarts.
func TestReplicaStoppedBySupervisorShowsHalted(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "doomed", 1, 1, nil)
	tp := partition.TopicPartition{Topic: "doomed", Partition: 0}
	var r *partition.Replica
	c.waitFor(10*time.Second, "the replica running", func() bool {
		r = c.brokers[0].Replicas().Get(tp)
		return r != nil
	})
	// What the supervisor does once it gives up: a Stop nobody asked for.
	c.brokers[0].Actors().Root.Stop(r.PID)
	c.waitFor(10*time.Second, "the stopped replica shown halted", func() bool {
		st := c.brokers[0].Board().Get(r.Group)
		return st != nil && st.Role == "halted" && st.Halted != ""
	})
	// Out of the registry, so that clients are answered at once, and not
	// started again into the same panics: a new topic makes the manager
	// reconcile, and the stopped one stays down.
	if got := c.brokers[0].Replicas().Get(tp); got != nil {
		t.Fatalf("the stopped replica is still served (pid %s)", got.PID.Id)
	}
	c.createTopic(ctx, cl, "after", 1, 1, nil)
	c.waitFor(10*time.Second, "the new topic's replica running", func() bool {
		return c.brokers[0].Replicas().Get(partition.TopicPartition{Topic: "after", Partition: 0}) != nil
	})
	if got := c.brokers[0].Replicas().Get(tp); got != nil {
		t.Fatalf("the stopped replica was started again (pid %s)", got.PID.Id)
	}
	if st := c.brokers[0].Board().Get(r.Group); st == nil || st.Role != "halted" {
		t.Fatalf("the stopped replica's status: %+v, want halted", st)
	}
}
