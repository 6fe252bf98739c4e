package broker

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/configs"
)

// TestQuietPartitionsFailOverAfterKill: the partitions of an idle cluster
// go quiet (their raft groups stop ticking and heartbeating) with their
// ISRs full, and stay so; when the broker leading some of them is killed,
// their followers, woken by the closed connections, elect new leaders
// within about a second, at production's 50 ms ticks: as fast as groups
// that never slept.
func TestQuietPartitionsFailOverAfterKill(t *testing.T) {
	// The network drops the killed broker's last raft messages: its
	// actors' stopping (a leader's wakes its followers) would not happen
	// under kill -9.
	net := &network{isolated: map[uint64]bool{}}
	c := startCluster(t, 3, &testCluster{wrapTransport: net.wrap}, func(cfg *configs.Config) { cfg.Raft.TickMs = 50 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := c.client()
	const parts = 6
	c.createTopic(ctx, cl, "quiet", parts, 3, nil)
	tps := make([]partition.TopicPartition, parts)
	for p := range tps {
		tps[p] = partition.TopicPartition{Topic: "quiet", Partition: int32(p)}
	}
	// quiet lists what is not quiet yet, or not led with a full ISR.
	quiet := func() []string {
		var out []string
		for _, tp := range tps {
			leaders := 0
			for i, b := range c.brokers {
				if b == nil {
					continue
				}
				r := b.Replicas().Get(tp)
				if r == nil {
					out = append(out, fmt.Sprintf("%v: no replica on broker %d", tp, i+1))
					continue
				}
				st := b.Board().Get(r.Group)
				if st == nil || !st.Quiet {
					out = append(out, fmt.Sprintf("%v: awake on broker %d", tp, i+1))
				}
				if v := r.Machine.View(); v.Leader {
					leaders++
					if len(v.ISR) != 3 {
						out = append(out, fmt.Sprintf("%v: ISR %v", tp, v.ISR))
					}
				}
			}
			if leaders != 1 {
				out = append(out, fmt.Sprintf("%v: %d leaders", tp, leaders))
			}
		}
		return out
	}
	c.waitFor(20*time.Second, "every partition quiet with a full ISR", func() bool { return len(quiet()) == 0 })
	// Several election timeouts (500 ms) and ISR samples: nothing wakes,
	// and no ISR shrinks, while every broker lives.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if s := quiet(); len(s) > 0 {
			t.Fatalf("idle healthy cluster: %v", s)
		}
	}

	// Kill the broker that leads the most partitions (not the controller's
	// leader if it can be helped: its election is not what is measured).
	led := make([][]partition.TopicPartition, len(c.brokers))
	for i, b := range c.brokers {
		for _, tp := range tps {
			if b.Replicas().Get(tp).Machine.View().Leader {
				led[i] = append(led[i], tp)
			}
		}
	}
	victim := 0
	for i := range c.brokers {
		if len(led[i]) > len(led[victim]) || len(led[i]) == len(led[victim]) && victim == c.leader() {
			victim = i
		}
	}
	if len(led[victim]) == 0 {
		t.Fatal("no broker leads a partition")
	}
	killed := time.Now()
	net.isolate(uint64(victim+1), true)
	c.crash(victim)
	newLeader := func(tp partition.TopicPartition) bool {
		for i, b := range c.brokers {
			if i != victim && b != nil && b.Replicas().Get(tp).Machine.View().Leader {
				return true
			}
		}
		return false
	}
	c.waitFor(10*time.Second, "new leaders", func() bool {
		return !slices.ContainsFunc(led[victim], func(tp partition.TopicPartition) bool { return !newLeader(tp) })
	})
	took := time.Since(killed)
	t.Logf("%d quiet partitions failed over %v after their leader's broker was killed", len(led[victim]), took)
	// Election timeout 500 ms to 1 s, a pre-vote and a vote round, and the
	// readiness entry: about a second. Followers that counted their slept
	// ticks would campaign together (and split their votes); followers that
	// were not woken would never campaign (8.7 s here without the wake-up,
	// the transport's silence window); 4 s leaves a slow CI machine room.
	if took > 4*time.Second {
		t.Fatalf("failover of quiet partitions took %v", took)
	}
}
