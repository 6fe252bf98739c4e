package broker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/configs"
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

// TestCoordinatorStoppedBySupervisorAnswersNotCoordinator: an offsets
// partition replica whose actor its supervisor stopped leaves the registry
// of coordinators, so that a group request for one of its groups is
// answered NOT_COORDINATOR at once (the client looks for the coordinator
// again) instead of being sent to the dead actor and never answered, and
// it is not started again before the broker restarts.
func TestCoordinatorStoppedBySupervisorAnswersNotCoordinator(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *configs.Config) { cfg.Kafka.OffsetsTopicPartitions = 1 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "orders", 1, 1, nil)
	adm := kadm.NewClient(cl)
	var offsets kadm.Offsets
	offsets.AddOffset("orders", 0, 5, -1)
	c.waitFor(15*time.Second, "a commit to the coordinator", func() bool {
		resp, err := adm.CommitOffsets(ctx, "g", offsets)
		return err == nil && resp.Ok()
	})
	b := c.brokers[0]
	co := b.Coordinators().Get(0)
	if co == nil {
		t.Fatal("no coordinator registered after a commit")
	}
	// What the supervisor does once it gives up: a Stop nobody asked for.
	b.Actors().Root.Stop(co.PID)
	c.waitFor(10*time.Second, "the stopped coordinator shown halted", func() bool {
		st := b.Board().Get(co.Group)
		return st != nil && st.Role == "halted"
	})

	req := kmsg.NewPtrOffsetFetchRequest()
	req.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g"}} // v8+: the client asks as much
	reqCtx, reqCancel := context.WithTimeout(ctx, 5*time.Second)
	defer reqCancel()
	resp, err := cl.Broker(1).Request(reqCtx, req)
	if err != nil {
		t.Fatalf("OffsetFetch to the broker whose coordinator stopped: %v", err)
	}
	if gs := resp.(*kmsg.OffsetFetchResponse).Groups; len(gs) != 1 || gs[0].ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("OffsetFetch answered %+v, want NOT_COORDINATOR", gs)
	}
	if got := b.Coordinators().Get(0); got != nil {
		t.Fatalf("the stopped coordinator is still registered (pid %s)", got.PID.Id)
	}
	// A new topic makes the manager reconcile; the stopped one stays down.
	c.createTopic(ctx, cl, "after", 1, 1, nil)
	c.waitFor(10*time.Second, "the new topic's replica running", func() bool {
		return b.Replicas().Get(partition.TopicPartition{Topic: "after", Partition: 0}) != nil
	})
	if got := b.Coordinators().Get(0); got != nil {
		t.Fatalf("the stopped coordinator was started again (pid %s)", got.PID.Id)
	}
}
