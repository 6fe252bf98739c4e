package test

import (
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kcatPartition is one partition of `kcat -L -J`.
type kcatPartition struct {
	Partition int32 `json:"partition"`
	Leader    int32 `json:"leader"`
	Replicas  []struct {
		ID int32 `json:"id"`
	} `json:"replicas"`
	ISRs []struct {
		ID int32 `json:"id"`
	} `json:"isrs"`
}

// kcatPartitions returns what `kcat -L` says of topic through broker nd.
func kcatPartitions(nd *node, topic string) ([]kcatPartition, bool) {
	out, err := exec.Command("kcat", "-b", nd.kafka, "-L", "-J", "-t", topic, "-m", "2").Output()
	if err != nil {
		return nil, false
	}
	var md struct {
		Topics []struct {
			Topic      string          `json:"topic"`
			Partitions []kcatPartition `json:"partitions"`
		} `json:"topics"`
	}
	if json.Unmarshal(out, &md) != nil || len(md.Topics) != 1 {
		return nil, false
	}
	return md.Topics[0].Partitions, true
}

// kcatBrokers returns the broker ids `kcat -L` lists through broker nd.
func kcatBrokers(nd *node) (map[int32]bool, bool) {
	out, err := exec.Command("kcat", "-b", nd.kafka, "-L", "-J", "-m", "2").Output()
	if err != nil {
		return nil, false
	}
	var md struct {
		Brokers []struct {
			ID int32 `json:"id"`
		} `json:"brokers"`
	}
	if json.Unmarshal(out, &md) != nil {
		return nil, false
	}
	ids := map[int32]bool{}
	for _, b := range md.Brokers {
		ids[b.ID] = true
	}
	return ids, true
}

// every reports whether f holds for every partition kcat shows through nd.
func every(nd *node, topic string, n int, f func(p kcatPartition, isr map[int32]bool) bool) bool {
	ps, ok := kcatPartitions(nd, topic)
	if !ok || len(ps) != n {
		return false
	}
	for _, p := range ps {
		isr := map[int32]bool{}
		for _, r := range p.ISRs {
			isr[r.ID] = true
		}
		if !f(p, isr) {
			return false
		}
	}
	return true
}

// TestKcatSeesLeadersAndISR: `kcat -L` shows leaders, replicas, the ISR
// and the broker list change as a broker dies and comes back (ISR by
// Kafka's time rule, here replica.lag.time.max.ms = 1 s; the dead broker
// leaves the broker list after broker.session.timeout.ms, here 2 s),
// through a broker that stays up.
func TestKcatSeesLeadersAndISR(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Skip("kcat is not installed")
	}
	nodes := newClusterWith(t, 3, "replica_lag_time_max_ms: 1000, broker_session_timeout_ms: 2000")
	for _, nd := range nodes {
		nd.start(t)
	}
	waitLeader(t, 15*time.Second, nodes)
	cl, err := kgo.NewClient(kgo.SeedBrokers(nodes[0].kafka, nodes[1].kafka, nodes[2].kafka))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const topic, n = "watched", 6
	// Retried until every broker has registered: a replication factor of
	// 3 is refused while one of them has not yet.
	createReplicated(t, kadm.NewClient(cl), topic, n)
	watcher := nodes[1]
	waitFor(t, 15*time.Second, "every partition led by its preferred replica with the full ISR", func() bool {
		return every(watcher, topic, n, func(p kcatPartition, isr map[int32]bool) bool {
			return len(p.Replicas) == 3 && p.Leader == p.Replicas[0].ID && len(isr) == 3
		})
	})

	victim := nodes[0]
	victim.kill()
	waitFor(t, 15*time.Second, "no partition led by the dead broker, which left every ISR", func() bool {
		return every(watcher, topic, n, func(p kcatPartition, isr map[int32]bool) bool {
			return p.Leader > 0 && p.Leader != int32(victim.id) && !isr[int32(victim.id)] && len(isr) == 2 && len(p.Replicas) == 3
		})
	})
	waitFor(t, 15*time.Second, "the dead broker out of the broker list", func() bool {
		ids, ok := kcatBrokers(watcher)
		return ok && len(ids) == 2 && !ids[int32(victim.id)]
	})

	victim.start(t)
	waitFor(t, 20*time.Second, "the restarted broker back in every ISR and leading its preferred partitions", func() bool {
		return every(watcher, topic, n, func(p kcatPartition, isr map[int32]bool) bool {
			return len(isr) == 3 && p.Leader == p.Replicas[0].ID
		})
	})
	if ids, ok := kcatBrokers(watcher); !ok || len(ids) != 3 {
		t.Fatalf("broker list after the restart: %v (read %v), want all three", ids, ok)
	}
}
