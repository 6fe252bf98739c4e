package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/internal/testports"
	"github.com/flotilla/flotilla/netactor"
)

// TestSecondProcessWithMemberIDIsIgnored: a broker started with a copy of
// a member's config whose node_id was left unchanged (its own data dir and
// listeners, joining) does not take over that id's addresses. Its hellos
// used to make the controller register the member at the second process's
// addresses, the member registered itself back, and clients were sent to
// the impostor part of the time. Now the peers refuse its raft connections
// outright (TestSecondProcessWithMemberIDRefused).
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

// dupState is what a second process with a member's id must leave alone:
// the controller's term and leader, and each broker's count of the
// member's restarts.
type dupState struct {
	term, leader uint64
	restarts     []uint64
}

func (c *testCluster) dupState(id uint64) dupState {
	var s dupState
	for _, b := range c.brokers {
		st := b.Board().Get(controller.ControllerGroup)
		s.term, s.leader = max(s.term, st.Term), st.Leader
		s.restarts = append(s.restarts, b.liveness.Restarts(id))
	}
	return s
}

// TestSecondProcessWithMemberIDRefused: a second process with a running
// member's node id, whether its data dir is new (a copied config) or a
// copy of the member's (a machine restored from an image), is refused by
// the peers before any of its raft messages count, and stops: Start fails,
// or Duplicate fires, with an error naming the id and the member's raft
// address. The cluster sees no restart of the member and no new term. The
// two processes used to replace each other's connections on every peer
// for as long as both ran.
func TestSecondProcessWithMemberIDRefused(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	image := c.imageOf(1)
	c.waitFor(30*time.Second, "a controller leader", func() bool { return c.leader() >= 0 })

	for _, tt := range []struct {
		name    string
		dataDir string
	}{
		{"new data dir", t.TempDir()},
		{"copied data dir", image},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := c.dupState(2)
			dup := *c.cfgs[1]
			dup.DataDir = tt.dataDir
			dup.Raft.Listen = "127.0.0.1:0"
			dup.Kafka.Listen, dup.Kafka.Advertise = "127.0.0.1:0", ""
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			b, err := Start(ctx, Options{Config: &dup, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(testLogLevel)})
			if err == nil {
				select {
				case err = <-b.Duplicate():
					b.Abort()
				case <-ctx.Done():
					b.Abort()
					t.Fatal("the second process was not refused within 10 s")
				}
			}
			var dupErr *DuplicateIDError
			if !errors.As(err, &dupErr) {
				t.Fatalf("second process: %v, want a *DuplicateIDError", err)
			}
			t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
			for _, want := range []string{"node id 2 is in use by another live process", "raft address " + c.cfgs[1].Raft.Listen} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
			// Longer than a hold timeout: had the second process been let
			// in anywhere, the churn would show.
			time.Sleep(2 * netactor.HoldTimeout(c.cfgs[0].TickInterval()))
			if after := c.dupState(2); !reflect.DeepEqual(after, before) {
				t.Fatalf("the cluster changed: term, leader and broker 2's restarts per broker %+v, before %+v", after, before)
			}
		})
	}
}

// TestCrashedMemberRestartsAtOnce: a member that crashed and starts again
// at once is a new process of its id, not a second one: its old
// connections closed with it, so its peers take the new one as a restart,
// and it serves as soon as it has caught up.
func TestCrashedMemberRestartsAtOnce(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	before := c.brokers[0].liveness.Restarts(2)
	c.crash(1)
	start := time.Now()
	c.start(1)
	c.waitFor(10*time.Second, "broker 2 serving again", func() bool {
		select {
		case err := <-c.brokers[1].Duplicate():
			t.Fatalf("the restarted broker was taken for a second process: %v", err)
		case <-c.brokers[1].serving:
			return true
		default:
		}
		return false
	})
	t.Logf("broker 2 served %v after its restart began", time.Since(start).Round(time.Millisecond))
	c.waitFor(10*time.Second, "broker 1 counting the restart", func() bool { return c.brokers[0].liveness.Restarts(2) == before+1 })
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

// TestPredecessorGoneWithinHoldTimeout: a process refused because its
// predecessor still held the id (on its way out, its connections not yet
// closed) does not stop if the predecessor is gone within a hold timeout:
// the peers take it then, as a restart.
func TestPredecessorGoneWithinHoldTimeout(t *testing.T) {
	// Longer ticks, a longer hold timeout (4 s): room for the crash below
	// on a busy machine.
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Raft.TickMs = 100 })
	c.waitReady()
	image := c.imageOf(1)
	c.waitFor(10*time.Second, "its restart counted", func() bool {
		return c.brokers[0].liveness.Restarts(2) == 1 && c.brokers[2].liveness.Restarts(2) == 1
	})

	// Its successor: another port, since the predecessor holds the one
	// its peers know; so the peers do not reach it (it would serve only
	// once they registered it there), but it reaches them.
	next := *c.cfgs[1]
	next.DataDir = image
	next.Raft.Listen = "127.0.0.1:0"
	next.Kafka.Listen, next.Kafka.Advertise = "127.0.0.1:0", ""
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Start(ctx, Options{Config: &next, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(testLogLevel)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	c.waitFor(10*time.Second, "the successor refused", func() bool {
		return duplicateRejections(c.brokers[0]) > 0 || duplicateRejections(c.brokers[2]) > 0
	})
	c.crash(1)
	c.waitFor(10*time.Second, "the successor taken as broker 2's restart", func() bool {
		select {
		case err := <-b.Duplicate():
			t.Fatalf("the successor stopped, its predecessor gone: %v", err)
		default:
		}
		return c.brokers[0].liveness.Restarts(2) == 2 && c.brokers[2].liveness.Restarts(2) == 2
	})
	select {
	case err := <-b.Duplicate():
		t.Fatalf("the successor stopped, its predecessor gone: %v", err)
	case <-time.After(2 * netactor.HoldTimeout(next.TickInterval())):
	}
}

// TestDuplicateNeedsOnePeersRefusalsOnEnd: a broker stops as a duplicate
// only when one peer has refused it for a hold timeout on end, not when
// two refusals, perhaps from two peers, lie that far apart (each may be a
// predecessor's connection on its way out). Found by review: the first
// refusal of any peer started the clock for good.
func TestDuplicateNeedsOnePeersRefusalsOnEnd(t *testing.T) {
	cfg := configs.Default()
	cfg.NodeID = 2
	hold := netactor.HoldTimeout(cfg.TickInterval())
	b := &Broker{cfg: &cfg, serving: make(chan struct{}), duplicate: make(chan error, 1)}
	refused := func(peer uint64, since time.Time) *netactor.RefusedError {
		return &netactor.RefusedError{Peer: peer, Since: since, Refusal: netactor.Refusal{NodeID: 2}}
	}
	b.onRefused(refused(1, time.Now()))
	b.onRefused(refused(3, time.Now())) // a new streak, later
	select {
	case err := <-b.Duplicate():
		t.Fatalf("refusals that began a moment ago stop the broker: %v", err)
	default:
	}
	b.onRefused(refused(3, time.Now().Add(-hold)))
	select {
	case err := <-b.Duplicate():
		if _, ok := errors.AsType[*DuplicateIDError](err); !ok {
			t.Fatalf("Duplicate sent %T %v, want a *DuplicateIDError", err, err)
		}
	default:
		t.Fatalf("a peer refusing for %v on end does not stop the broker", hold)
	}
}

// duplicateRejections is how many hellos b refused as a second process of
// a node id (netactor.RejectDuplicateID).
func duplicateRejections(b *Broker) float64 {
	families, err := b.registry.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "flotilla_raft_connections_rejected_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == netactor.RejectDuplicateID {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// imageOf copies broker i's data dir while it is stopped, as a machine
// image would hold it, starts the broker again, waits until it serves, and
// returns the copy's path.
func (c *testCluster) imageOf(i int) string {
	c.t.Helper()
	image := c.t.TempDir()
	c.stop(i)
	if err := os.CopyFS(image, os.DirFS(c.cfgs[i].DataDir)); err != nil {
		c.t.Fatal(err)
	}
	c.start(i)
	c.waitFor(30*time.Second, fmt.Sprintf("broker %d serving again", i+1), func() bool {
		select {
		case <-c.brokers[i].serving:
			return true
		default:
			return false
		}
	})
	return image
}
