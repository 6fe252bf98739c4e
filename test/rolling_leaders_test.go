package test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Clean restarts seen by clients with kgo's default MetadataMinAge (5 s):
// a client whose answer leaves a partition without a leader, a Metadata
// answer of LEADER_NOT_AVAILABLE or a NOT_LEADER_OR_FOLLOWER without a
// KIP-951 hint, parks that partition until its next metadata refresh, up
// to 5 s later. TestCleanStopKeepsPartitionAvailable (shutdown_test.go)
// lowers MetadataMinAge to 100 ms, which hides this.

// metadataOf asks nd alone for topic's metadata through cl, a client
// seeded with nd only; the error is the request's.
func metadataOf(cl *kgo.Client, topic string, timeout time.Duration) (*kmsg.MetadataResponseTopic, error) {
	req := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, mt)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kresp, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.MetadataResponse)
	if len(resp.Topics) != 1 {
		return nil, fmt.Errorf("%d topics in the answer", len(resp.Topics))
	}
	return &resp.Topics[0], nil
}

// seedClients returns a client seeded with each node alone, for metadataOf.
func seedClients(t *testing.T, nodes []*node, opts ...kgo.Opt) []*kgo.Client {
	t.Helper()
	var cls []*kgo.Client
	for _, nd := range nodes {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(nd.kafka), kgo.RequestRetries(0)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		cls = append(cls, cl)
	}
	return cls
}

// leaderless returns the partitions of t that have no leader or an error.
func leaderless(t *kmsg.MetadataResponseTopic) []int32 {
	var ps []int32
	for _, p := range t.Partitions {
		if p.ErrorCode != 0 || p.Leader < 0 {
			ps = append(ps, p.Partition)
		}
	}
	if t.ErrorCode != 0 || len(t.Partitions) == 0 {
		ps = append(ps, -1)
	}
	return ps
}

// settledOn reports whether every broker (cls, one seeded with each) has
// every partition of topic led by its preferred replica with all three
// replicas in sync: a restart's leader moves are over.
func settledOn(cls []*kgo.Client, topic string) bool {
	for _, cl := range cls {
		mt, err := metadataOf(cl, topic, 3*time.Second)
		if err != nil || len(leaderless(mt)) > 0 {
			return false
		}
		for _, p := range mt.Partitions {
			if len(p.Replicas) != 3 || p.Leader != p.Replicas[0] || len(p.ISR) != 3 {
				return false
			}
		}
	}
	return true
}

// healthStatus returns the status code of nd's /healthz, 0 if it does not
// answer.
func (nd *node) healthStatus() int {
	resp, err := httpClient.Get("http://" + nd.debug + "/healthz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRestartedBrokerNamesLeaders: a broker restarted cleanly names, from
// its first Metadata answer on, the leaders that live brokers have, as a
// Kafka broker does once it serves: it opens its Kafka port only once
// every live peer has told it what it leads. It used to answer every
// partition LEADER_NOT_AVAILABLE for its first 200-900 ms of serving
// (its replicas, just started, hid their leaders too), and again for a
// few ms when the leaderships moved back to it (a transfer's candidate
// knows no leader).
func TestRestartedBrokerNamesLeaders(t *testing.T) {
	const topic, partitions = "restarted", 12
	nodes, seeds := startCluster(t, 3)
	createReplicated(t, clusterAdmin(t, seeds), topic, partitions)
	cls := seedClients(t, nodes, kgo.MetadataMinAge(100*time.Millisecond))
	waitFor(t, 60*time.Second, "every partition led by its preferred replica, in sync", func() bool { return settledOn(cls, topic) })

	victim := nodes[2]
	victim.signal(syscall.SIGTERM)
	if code := victim.wait(30 * time.Second); code != 0 {
		t.Fatalf("broker %d: exit code %d after SIGTERM", victim.id, code)
	}
	waitFor(t, 30*time.Second, "the other brokers to name a leader for every partition", func() bool {
		for _, cl := range cls[:2] {
			if mt, err := metadataOf(cl, topic, time.Second); err != nil || len(leaderless(mt)) > 0 {
				return false
			}
		}
		return true
	})
	victim.start(t)
	started := time.Now()
	var firstOK time.Duration
	answers, bad := 0, 0
	var example string
	// Until the leaderships have moved back to it and a little longer.
	for time.Since(started) < 30*time.Second && (firstOK == 0 || time.Since(started) < firstOK+3*time.Second) {
		mt, err := metadataOf(cls[2], topic, 300*time.Millisecond)
		if err != nil {
			continue // not serving yet: the connection waits in the backlog
		}
		answers++
		if ps := leaderless(mt); len(ps) > 0 {
			bad++
			if example == "" {
				example = fmt.Sprintf("%v after the start, partitions %v (healthz %d)", time.Since(started).Round(time.Millisecond), ps, victim.healthStatus())
			}
		} else if firstOK == 0 {
			firstOK = time.Since(started)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("restarted broker %d: %d Metadata answers, %d with leaderless partitions; the first %v after the start",
		victim.id, answers, bad, firstOK.Round(time.Millisecond))
	if firstOK == 0 {
		t.Fatal("the restarted broker never named a leader for every partition")
	}
	if bad > 0 {
		t.Errorf("the restarted broker answered Metadata with leaderless partitions while live brokers led them: first %s", example)
	}
	if !settledOn(cls, topic) {
		t.Log("(the leaderships had not all moved back yet)")
	}
}

// TestCleanRestartDefaultProducer: a clean restart of one broker after the
// other leaves no partition without an acknowledgement for longer than a
// leader change takes, for a kgo producer with its default settings,
// MetadataMinAge 5 s included. Each partition has a producer of its own
// with one record in flight at all times, so that the hand-overs (off the
// stopping broker, and back to it once it has caught up) meet requests in
// flight and arriving. The stopping broker's leaders answered those
// NOT_LEADER_OR_FOLLOWER without a hint, not knowing their successor yet,
// and kgo waited for its next metadata refresh: 3-5 s here. A fresh client
// for each restart made its last refresh a second or so before; no stale
// connection of a restart before slows the next one.
//
// The bound is well above what a leader change costs (under 1 s here: a
// retry, a reconnection to the restarted broker with kgo's backoff) and
// well below the metadata refresh.
func TestCleanRestartDefaultProducer(t *testing.T) {
	const (
		topic      = "rolling"
		partitions = 12
		maxGap     = 2500 * time.Millisecond
	)
	nodes, seeds := startCluster(t, 3)
	createReplicated(t, clusterAdmin(t, seeds), topic, partitions)
	cls := seedClients(t, nodes, kgo.MetadataMinAge(100*time.Millisecond))
	waitFor(t, 60*time.Second, "every partition led by its preferred replica, in sync", func() bool { return settledOn(cls, topic) })

	var worst time.Duration
	for _, nd := range nodes {
		prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu   sync.Mutex
			acks = make([][]time.Time, partitions)
			fail error
		)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		var wg sync.WaitGroup
		for p := range int32(partitions) {
			wg.Go(func() {
				for i := 0; i < 100_000 && ctx.Err() == nil; i++ {
					err := prod.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("x")}).FirstErr()
					mu.Lock()
					if err == nil {
						acks[p] = append(acks[p], time.Now())
					} else if ctx.Err() == nil && fail == nil {
						fail = err
					}
					mu.Unlock()
				}
			})
		}
		// ackedSince reports whether every partition has an
		// acknowledgement after at.
		ackedSince := func(at time.Time) bool {
			mu.Lock()
			defer mu.Unlock()
			return !slices.ContainsFunc(acks, func(ts []time.Time) bool { return len(ts) == 0 || ts[len(ts)-1].Before(at) })
		}
		waitFor(t, 30*time.Second, "every partition producing", func() bool { return ackedSince(time.Time{}) })

		from := time.Now()
		nd.signal(syscall.SIGTERM)
		if code := nd.wait(30 * time.Second); code != 0 {
			t.Fatalf("broker %d: exit code %d after SIGTERM", nd.id, code)
		}
		nd.start(t)
		waitFor(t, 60*time.Second, "healthz 200", func() bool { return nd.healthStatus() == 200 })
		waitFor(t, 60*time.Second, "the leaderships back on their preferred replicas", func() bool { return settledOn(cls, topic) })
		// The last leader moved back; a partition parked by it or before
		// acknowledges again at its next metadata refresh.
		settled := time.Now()
		waitFor(t, 30*time.Second, "a second more, and an acknowledgement on every partition", func() bool {
			return time.Since(settled) > time.Second && ackedSince(settled)
		})
		to := time.Now()
		cancel()
		wg.Wait()
		prod.Close()

		var gap time.Duration
		var at time.Duration
		var gp int32
		for p, ts := range acks {
			prev := from
			for _, a := range append(ts, to) {
				if a.Before(from) {
					continue
				}
				if d := a.Sub(prev); d > gap {
					gap, at, gp = d, prev.Sub(from), int32(p)
				}
				prev = a
			}
		}
		t.Logf("clean restart of broker %d: longest wait for an acknowledgement %v (partition %d, from %v after SIGTERM)",
			nd.id, gap.Round(time.Millisecond), gp, at.Round(time.Millisecond))
		if fail != nil {
			t.Errorf("restart of broker %d: a produce failed: %v", nd.id, fail)
		}
		worst = max(worst, gap)
	}
	if worst > maxGap {
		t.Errorf("a clean restart left a partition without an acknowledgement for %v, want at most %v: a client waited for a metadata refresh",
			worst.Round(time.Millisecond), maxGap)
	}
}
