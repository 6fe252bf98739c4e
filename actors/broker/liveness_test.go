package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/configs"
)

// shortSession makes a broker dead to the others 1.5 s after it stops,
// instead of Kafka's 9 s.
func shortSession(cfg *configs.Config) { cfg.Kafka.BrokerSessionTimeoutMs = 1500 }

// metadataOf asks broker for the metadata of topics.
func metadataOf(ctx context.Context, t *testing.T, cl *kgo.Client, broker int32, topics ...string) *kmsg.MetadataResponse {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	for _, name := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl.Broker(int(broker)))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// fencedProblems lists how md still presents dead as alive: in the broker
// list, online, in an ISR or leading; and a partition whose every replica
// is dead not answered LEADER_NOT_AVAILABLE at a known epoch.
func fencedProblems(md *kmsg.MetadataResponse, dead int32) []string {
	var out []string
	for _, b := range md.Brokers {
		if b.NodeID == dead {
			out = append(out, fmt.Sprintf("broker %d in the broker list", dead))
		}
	}
	for _, tp := range md.Topics {
		for _, p := range tp.Partitions {
			where := fmt.Sprintf("%s/%d (error %d leader %d epoch %d replicas %v isr %v offline %v)",
				*tp.Topic, p.Partition, p.ErrorCode, p.Leader, p.LeaderEpoch, p.Replicas, p.ISR, p.OfflineReplicas)
			switch {
			case tp.ErrorCode != 0:
				out = append(out, fmt.Sprintf("%s: topic error %d", where, tp.ErrorCode))
			case slices.Contains(p.Replicas, dead) && !slices.Contains(p.OfflineReplicas, dead):
				out = append(out, where+": dead replica not offline")
			case slices.Contains(p.ISR, dead):
				out = append(out, where+": dead replica in the ISR")
			case p.Leader == dead:
				out = append(out, where+": dead leader")
			case slices.Equal(p.Replicas, []int32{dead}) && (p.Leader != -1 || p.ErrorCode != kerr.LeaderNotAvailable.Code || p.LeaderEpoch < 1):
				out = append(out, where+": want leader -1, LEADER_NOT_AVAILABLE, the last epoch")
			}
		}
	}
	return out
}

// TestMetadataFencesStoppedBroker: once a broker has been down for the
// broker session timeout, the others' Metadata answers it as Kafka answers
// a fenced broker: out of the broker list, its replicas offline and out of
// every ISR, and a partition whose only replica it is LEADER_NOT_AVAILABLE
// (not led by it forever, as when the last broadcast of its leaderships
// was believed); DescribeCluster lists it only as fenced. Back, it is
// listed again.
func TestMetadataFencesStoppedBroker(t *testing.T) {
	c := newTestCluster(t, 3, shortSession)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "solo", 3, 1, nil)
	c.createTopic(ctx, cl, "trio", 1, 3, nil)
	c.waitFor(15*time.Second, "every partition led with its full ISR, on broker 1", func() bool {
		for _, tp := range metadataOf(ctx, t, cl, 1, "solo", "trio").Topics {
			for _, p := range tp.Partitions {
				if p.Leader < 0 || len(p.ISR) != len(p.Replicas) {
					return false
				}
			}
		}
		return true
	})

	c.stop(2) // broker 3
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		problems := fencedProblems(metadataOf(ctx, t, cl, 1, "solo", "trio"), 3)
		if len(problems) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker 3 stopped 15 s ago; broker 1's Metadata still has:\n%s", strings.Join(problems, "\n"))
		}
	}
	// DescribeCluster agrees.
	dc := kmsg.NewPtrDescribeClusterRequest()
	dc.IncludeFencedBrokers = true
	resp, err := dc.RequestWith(ctx, cl.Broker(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range resp.Brokers {
		if b.NodeID == 3 && !b.IsFenced || b.NodeID != 3 && b.IsFenced {
			t.Errorf("DescribeCluster: broker %d fenced %v", b.NodeID, b.IsFenced)
		}
	}

	c.start(2)
	c.waitFor(30*time.Second, "broker 3 listed and every partition led with its full ISR again", func() bool {
		md := metadataOf(ctx, t, cl, 1, "solo", "trio")
		if !slices.ContainsFunc(md.Brokers, func(b kmsg.MetadataResponseBroker) bool { return b.NodeID == 3 }) {
			return false
		}
		for _, tp := range md.Topics {
			for _, p := range tp.Partitions {
				if p.Leader < 0 || len(p.ISR) != len(p.Replicas) || len(p.OfflineReplicas) > 0 {
					return false
				}
			}
		}
		return true
	})
}

// TestCreateTopicsWhileBrokerDown: with one broker of three stopped (not
// removed) for longer than the session timeout, new topics and partitions
// are placed on the two live ones, as Kafka places replicas on unfenced
// brokers only, so that every partition elects and takes records at once;
// the default replication factor counts live brokers, and one above them
// is refused.
func TestCreateTopicsWhileBrokerDown(t *testing.T) {
	c := newTestCluster(t, 3, shortSession)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.stop(2)
	c.waitFor(15*time.Second, "controller leader among brokers 1 and 2", func() bool { return c.leader() >= 0 })
	cl := c.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.AllowAutoTopicCreation(),
		kgo.MetadataMinAge(50*time.Millisecond), kgo.ProduceRequestTimeout(5*time.Second), kgo.RecordDeliveryTimeout(20*time.Second))
	c.waitFor(15*time.Second, "broker 3 dead to brokers 1 and 2", func() bool {
		for _, b := range []int32{1, 2} {
			if slices.ContainsFunc(metadataOf(ctx, t, cl, b).Brokers, func(mb kmsg.MetadataResponseBroker) bool { return mb.NodeID == 3 }) {
				return false
			}
		}
		return true
	})

	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 3, 2, nil, "late"); err != nil {
		t.Fatalf("create late (RF 2): %v", err)
	}
	if _, err := adm.CreateTopic(ctx, 2, -1, nil, "default"); err != nil {
		t.Fatalf("create default (default RF): %v", err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 3, nil, "toowide"); !errors.Is(err, kerr.InvalidReplicationFactor) {
		t.Errorf("create toowide (RF 3 with two live brokers): %v, want INVALID_REPLICATION_FACTOR", err)
	}
	if _, err := adm.CreatePartitions(ctx, 6, "late"); err != nil {
		t.Fatalf("grow late to 6 partitions: %v", err)
	}
	// Auto-created by the producer's Metadata request.
	produce := func(topic string, p int32) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte("x")}).FirstErr(); err != nil {
			t.Errorf("produce to %s/%d: %v", topic, p, err)
		}
	}
	produce("auto", 0)

	view := c.brokers[0].Controller().View()
	for name, wantRF := range map[string]int{"late": 2, "default": 2, "auto": 2} {
		tp := view.Topics[name]
		if tp == nil {
			t.Fatalf("topic %s missing", name)
		}
		for _, p := range tp.Partitions {
			if slices.Contains(p.Replicas, 3) || len(p.Replicas) != wantRF {
				t.Errorf("%s/%d: replicas %v, want %d of brokers 1 and 2", name, p.Index, p.Replicas, wantRF)
			}
		}
	}
	for p := range int32(6) {
		produce("late", p)
	}
}

// TestMetadataTrustsLocalNoLeader: a replica whose leader stopped knows,
// within an election timeout, that its group has no leader; the leader's
// last broadcast, of no later term, must not override that, or Metadata
// names the stopped broker as leader until the session timeout (here the
// default 9 s, beyond the test's wait).
func TestMetadataTrustsLocalNoLeader(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	createOn(ctx, t, cl, "pair", 3, 1)
	c.waitFor(15*time.Second, "pair/0 led by broker 3, its preferred replica", func() bool {
		md := metadataOf(ctx, t, cl, 1, "pair")
		return len(md.Topics) == 1 && len(md.Topics[0].Partitions) == 1 && md.Topics[0].Partitions[0].Leader == 3
	})
	c.stop(2)
	start := time.Now()
	c.waitFor(5*time.Second, "broker 1, pair/0's other replica, to answer it leaderless", func() bool {
		p := metadataOf(ctx, t, cl, 1, "pair").Topics[0].Partitions[0]
		return p.Leader == -1 && p.ErrorCode == kerr.LeaderNotAvailable.Code && p.LeaderEpoch >= 1
	})
	t.Logf("leaderless after %v", time.Since(start).Round(time.Millisecond))
}

// createOn creates a one-partition topic on the given replicas, the
// first its preferred leader, and waits for CreateTopics' answer.
func createOn(ctx context.Context, t *testing.T, cl *kgo.Client, topic string, replicas ...int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
	ra := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
	ra.Replicas = replicas
	rt.ReplicaAssignment = append(rt.ReplicaAssignment, ra)
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 15_000
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("create %s on %v: %v", topic, replicas, err)
	}
}
