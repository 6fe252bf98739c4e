package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/raftactor"
)

// holdNet is a raft transport shared by a test cluster that holds back
// what one broker sends for one raft group while asked to, and sends it
// on, in order, with that broker's next message once released: a slow
// follower, not a dead one.
type holdNet struct {
	mu      sync.Mutex
	from    uint64 // 0: nothing is held
	group   uint64
	backlog []*pb.Message
	release bool
}

func (n *holdNet) hold(from, group uint64) {
	n.mu.Lock()
	n.from, n.group, n.release = from, group, false
	n.mu.Unlock()
}

// flow lets the held messages go with the broker's next send (the raft
// transport may only be used from the sending actor).
func (n *holdNet) flow() {
	n.mu.Lock()
	n.release = true
	n.mu.Unlock()
}

func (n *holdNet) wrap(self uint64) func(raftactor.Transport) raftactor.Transport {
	return func(t raftactor.Transport) raftactor.Transport { return &holdTransport{n: n, self: self, next: t} }
}

type holdTransport struct {
	n    *holdNet
	self uint64
	next raftactor.Transport
}

func (h *holdTransport) Send(ctx actor.SenderContext, group uint64, msgs []*pb.Message) {
	n := h.n
	n.mu.Lock()
	if n.from != h.self || n.group != group {
		n.mu.Unlock()
		h.next.Send(ctx, group, msgs)
		return
	}
	n.backlog = append(n.backlog, msgs...)
	if !n.release {
		n.mu.Unlock()
		return
	}
	out := n.backlog
	n.from, n.group, n.backlog = 0, 0, nil
	n.mu.Unlock()
	h.next.Send(ctx, group, out)
}

// produceAsync sends a Produce for one record straight to the partition
// actor pid on broker i and returns where its answer will arrive.
func (c *testCluster) produceAsync(i int, pid *actor.PID, value string, acks int16, timeoutTicks uint64) <-chan *partition.ProduceDone {
	c.t.Helper()
	return c.produceBatchAsync(i, pid, testBatch(c.t, value), acks, timeoutTicks)
}

// produceBatchAsync is produceAsync for a batch of the caller's.
func (c *testCluster) produceBatchAsync(i int, pid *actor.PID, records []byte, acks int16, timeoutTicks uint64) <-chan *partition.ProduceDone {
	c.t.Helper()
	b := c.brokers[i]
	out := make(chan *partition.ProduceDone, 1)
	c.proposers++
	me, err := b.Actors().Spawn("test", fmt.Sprintf("test/producer-%d", c.proposers), func() actor.Actor {
		return actor.ReceiveFunc(func(ctx actor.Context) {
			if v, ok := ctx.Message().(*partition.ProduceDone); ok {
				out <- v
			}
		})
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { b.Actors().Root.Stop(me) })
	b.Actors().Root.Send(pid, &partition.Produce{Ref: 1, Records: records, Acks: acks, TimeoutTicks: timeoutTicks, ReplyTo: me})
	return out
}

// TestMinInsyncAboveMajority: with min.insync.replicas=3 on an RF=3
// partition, an acks=all produce that a majority has committed is not
// answered while the third replica's raft traffic is held back, and is
// answered once it flows. A replica held back for longer than
// replica.lag.time.max.ms leaves the ISR: the produce waiting for it gets
// NOT_ENOUGH_REPLICAS_AFTER_APPEND, the next one NOT_ENOUGH_REPLICAS.
func TestMinInsyncAboveMajority(t *testing.T) {
	const lag = 3 * time.Second
	hn := &holdNet{}
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Kafka.ReplicaLagTimeMaxMs = int(lag / time.Millisecond) })
	for i := range c.brokers {
		c.stop(i)
	}
	c.wrapTransport = hn.wrap
	for i := range c.brokers {
		c.start(i)
	}
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	three := "3"
	c.createTopic(ctx, c.client(), "insync", 1, 3, map[string]*string{"min.insync.replicas": &three})
	tp := partition.TopicPartition{Topic: "insync", Partition: 0}

	// Wait for the preferred replica to lead with the full ISR, so that no
	// leadership transfer runs during the test.
	var leader int
	c.waitFor(20*time.Second, "the preferred replica leads with the full ISR", func() bool {
		topic := c.brokers[0].Controller().View().Topics["insync"]
		if topic == nil {
			return false
		}
		leader = int(topic.Partitions[0].Replicas[0] - 1)
		r := c.brokers[leader].Replicas().Get(tp)
		return r != nil && r.Machine.View().Leader && len(r.Machine.View().ISR) == 3
	})
	lead := c.brokers[leader].Replicas().Get(tp)
	follower := (leader + 1) % 3
	other := (leader + 2) % 3
	t.Logf("broker %d leads; holding back broker %d", leader+1, follower+1)
	hw := func(i int) int64 { return c.brokers[i].Replicas().Get(tp).Machine.View().HighWatermark }

	// A first record: the client has its connections and producer id, and
	// the follower has matched this leader's log (a new leader counts every
	// replica in sync until the lag time passes).
	cl := c.client(kgo.DefaultProduceTopic("insync"), kgo.ProducerLinger(0))
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("first")}).FirstErr(); err != nil {
		t.Fatalf("produce with every replica in sync: %v", err)
	}
	c.waitFor(10*time.Second, "every replica applies the first record", func() bool {
		return hw(leader) == 1 && hw(follower) == 1 && hw(other) == 1
	})

	// 1. Held back, not cut: committed by the leader and the other
	// follower, not acknowledged; acknowledged once the traffic flows.
	hn.hold(uint64(follower+1), lead.Group)
	acked := make(chan error, 1)
	go func() { acked <- cl.ProduceSync(ctx, &kgo.Record{Value: []byte("held")}).FirstErr() }()
	c.waitFor(10*time.Second, "a majority commits and applies the record", func() bool {
		select {
		case err := <-acked:
			t.Fatalf("acks=all produce answered (%v) while the third replica's traffic was held back", err)
		default:
		}
		return hw(leader) == 2 && hw(other) == 2
	})
	select {
	case err := <-acked:
		t.Fatalf("acks=all produce answered (%v) with 2 of 3 replicas matching and min.insync.replicas=3", err)
	case <-time.After(300 * time.Millisecond): // a few ticks and ISR samplings: an answer would be out by now
	}
	if isr := lead.Machine.View().ISR; len(isr) != 3 {
		t.Fatalf("ISR %v while the follower was held back briefly, want all 3", isr)
	}
	hn.flow()
	select {
	case err := <-acked:
		if err != nil {
			t.Fatalf("produce after the follower's traffic flowed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("produce not acknowledged within 10s after the follower's traffic flowed")
	}
	c.waitFor(10*time.Second, "the follower applies the record", func() bool { return hw(follower) == 2 })

	// 2. Held back for longer than the lag time: the waiting produce is
	// appended and answered NOT_ENOUGH_REPLICAS_AFTER_APPEND, the next one
	// is refused before it is appended.
	hn.hold(uint64(follower+1), lead.Group)
	waiting := c.produceAsync(leader, lead.PID, "after-append", -1, uint64(4*lag/(20*time.Millisecond)))
	c.waitFor(10*time.Second, "a majority commits and applies the next record", func() bool { return hw(leader) == 3 })
	select {
	case d := <-waiting:
		if !errors.Is(d.Err, kerr.NotEnoughReplicasAfterAppend) {
			t.Fatalf("produce waiting while the follower left the ISR answered %v (offset %d), want NOT_ENOUGH_REPLICAS_AFTER_APPEND", d.Err, d.BaseOffset)
		}
	case <-time.After(3 * lag):
		t.Fatalf("produce waiting for the held-back follower not answered within %v", 3*lag)
	}
	if isr := lead.Machine.View().ISR; len(isr) != 2 || slices.Contains(isr, uint64(follower+1)) {
		t.Fatalf("ISR %v after the follower was held back past the lag time, want it without broker %d", isr, follower+1)
	}
	select {
	case d := <-c.produceAsync(leader, lead.PID, "refused", -1, 100):
		if !errors.Is(d.Err, kerr.NotEnoughReplicas) {
			t.Fatalf("produce with 2 of 3 replicas in sync answered %v, want NOT_ENOUGH_REPLICAS", d.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("produce with 2 of 3 replicas in sync not answered within 10s")
	}

	// 3. Once the follower's traffic flows it rejoins the ISR and acks=all
	// produces are acknowledged again.
	hn.flow()
	c.waitFor(15*time.Second, "the follower rejoins the ISR", func() bool { return len(lead.Machine.View().ISR) == 3 })
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("produce after the follower rejoined: %v", err)
	}
	c.waitFor(10*time.Second, "every replica has the four records", func() bool {
		return hw(leader) == 4 && hw(follower) == 4 && hw(other) == 4
	})
}

// strictPartition creates an RF=3 topic with min.insync.replicas=3 and
// waits until its preferred replica leads it with all three in sync. It
// returns the partition and the index of its leader's broker.
func (c *testCluster) strictPartition(ctx context.Context, topic string) (partition.TopicPartition, int) {
	c.t.Helper()
	three := "3"
	c.createTopic(ctx, c.client(), topic, 1, 3, map[string]*string{"min.insync.replicas": &three})
	tp := partition.TopicPartition{Topic: topic, Partition: 0}
	var leader int
	c.waitFor(20*time.Second, "the preferred replica leads with the full ISR", func() bool {
		t := c.brokers[0].Controller().View().Topics[topic]
		if t == nil {
			return false
		}
		leader = int(t.Partitions[0].Replicas[0] - 1)
		r := c.brokers[leader].Replicas().Get(tp)
		return r != nil && r.Machine.View().Leader && len(r.Machine.View().ISR) == 3
	})
	return tp, leader
}

// TestNewLeaderLeavesDeadReplicaOutOfISR: a replica that died and left the
// ISR is not counted in sync again by the next leader. A new leader used to
// start with every replica in its ISR, so for replica.lag.time.max.ms after
// any leader change an acks=all produce passed min.insync.replicas=3 with
// two live replicas.
func TestNewLeaderLeavesDeadReplicaOutOfISR(t *testing.T) {
	const lag = 2 * time.Second
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Kafka.ReplicaLagTimeMaxMs = int(lag / time.Millisecond) })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tp, leader := c.strictPartition(ctx, "strict")
	other, dead := (leader+1)%3, (leader+2)%3
	c.stop(dead)
	lead := c.brokers[leader].Replicas().Get(tp)
	c.waitFor(5*lag, "the stopped replica leaves the ISR", func() bool { return len(lead.Machine.View().ISR) == 2 })

	c.brokers[leader].Actors().Root.Send(lead.PID, &raftactor.TransferLeader{To: uint64(other + 1)})
	next := c.brokers[other].Replicas().Get(tp)
	c.waitFor(10*time.Second, "the other live replica leads", func() bool { return next.Machine.View().Leader })
	if isr := next.Machine.View().ISR; slices.Contains(isr, uint64(dead+1)) {
		t.Errorf("the new leader's ISR %v has broker %d, stopped %v ago", isr, dead+1, 5*lag)
	}
	select {
	case d := <-c.produceAsync(other, next.PID, "after", -1, 100):
		// NOT_LEADER if the leadership went back to the preferred replica
		// meanwhile; never success.
		if !errors.Is(d.Err, kerr.NotEnoughReplicas) && !errors.Is(d.Err, kerr.NotLeaderForPartition) {
			t.Errorf("acks=all with 2 of 3 replicas alive and min.insync.replicas=3: %v, want NOT_ENOUGH_REPLICAS", d.Err)
		}
	case <-ctx.Done():
		t.Fatal("no answer")
	}
}

// TestRetryOfHeldBatchWaitsForMinInsync: an idempotent producer's retry of
// a batch that was held for min.insync.replicas and failed by a leader
// change is not answered success by the new leader while fewer replicas
// than min.insync.replicas have it (it was, as a duplicate of an applied
// batch, when the new leader counted the stopped replica in sync), and is
// answered with the original's offset once they do.
func TestRetryOfHeldBatchWaitsForMinInsync(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Kafka.ReplicaLagTimeMaxMs = 30_000 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tp, leader := c.strictPartition(ctx, "strict-retry")
	down, other := (leader+1)%3, (leader+2)%3
	lead := c.brokers[leader].Replicas().Get(tp)
	// Crashed, it stays in the ISR for 30 s: the batch is taken, then
	// held. (Stopped cleanly, it would leave the ISR at once.)
	c.crash(down)

	const pid = 7
	first := c.produceBatchAsync(leader, lead.PID, producerBatch(t, "v", pid, 0, 0), -1, 500)
	hw := func(i int) int64 { return c.brokers[i].Replicas().Get(tp).Machine.View().HighWatermark }
	c.waitFor(10*time.Second, "two replicas apply the batch", func() bool { return hw(leader) == 1 && hw(other) == 1 })
	select {
	case d := <-first:
		t.Fatalf("answered with 2 of 3 replicas and min.insync.replicas=3: %v", d.Err)
	default:
	}
	c.brokers[leader].Actors().Root.Send(lead.PID, &raftactor.TransferLeader{To: uint64(other + 1)})
	if d := <-first; !errors.Is(d.Err, kerr.NotLeaderForPartition) {
		t.Fatalf("the held batch after the leader moved: %v, want NOT_LEADER_FOR_PARTITION", d.Err)
	}
	next := c.brokers[other].Replicas().Get(tp)
	c.waitFor(10*time.Second, "the other live replica leads", func() bool { return next.Machine.View().Leader })
	retry := c.produceBatchAsync(other, next.PID, producerBatch(t, "v", pid, 0, 0), -1, 100)
	select {
	case d := <-retry:
		if d.Err == nil {
			t.Fatalf("the retry was answered success at offset %d with 2 of 3 replicas and min.insync.replicas=3", d.BaseOffset)
		}
		// Refused for want of replicas, or (the leadership went back to
		// the preferred replica meanwhile) for want of a leader here.
		if !errors.Is(d.Err, kerr.NotEnoughReplicas) && !errors.Is(d.Err, kerr.NotEnoughReplicasAfterAppend) &&
			!errors.Is(d.Err, kerr.RequestTimedOut) && !errors.Is(d.Err, kerr.NotLeaderForPartition) {
			t.Fatalf("the retry: %v, want it refused", d.Err)
		}
	case <-ctx.Done():
		t.Fatal("no answer to the retry")
	}
	c.start(down)
	// Leadership may meanwhile go back to the preferred replica: ask
	// whichever broker leads with the three replicas in sync, again if it
	// stopped leading just then.
	var last *partition.ProduceDone
	c.waitFor(30*time.Second, "the retry answered with the original's offset once the third replica is back", func() bool {
		for i, b := range c.brokers {
			r := b.Replicas().Get(tp)
			if r == nil || !r.Machine.View().Leader || len(r.Machine.View().ISR) != 3 {
				continue
			}
			select {
			case last = <-c.produceBatchAsync(i, r.PID, producerBatch(t, "v", pid, 0, 0), -1, 400):
			case <-ctx.Done():
				t.Fatal("no answer to the retry once the third replica is back")
			}
			if errors.Is(last.Err, kerr.NotLeaderForPartition) {
				return false
			}
			if last.Err != nil || last.BaseOffset != 0 {
				t.Fatalf("the retry once the third replica is back: offset %d, %v; want the original's offset 0", last.BaseOffset, last.Err)
			}
			return true
		}
		return false
	})
}
