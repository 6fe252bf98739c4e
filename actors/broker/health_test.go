package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kgo"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors/debug"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/raftactor"
)

// TestHealthzWaitsForQuorum: a broker restarted without a quorum of its
// controller group serves no Kafka client, and /healthz says so with 503
// until a peer is back and it has caught up; then 200.
func TestHealthzWaitsForQuorum(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Debug.Listen = "127.0.0.1:0" })
	c.waitReady()
	for i := range c.brokers {
		c.stop(i)
	}
	// A restart binds a new debug port: ask the broker for it.
	c.cfgs[0].Debug.Listen = "127.0.0.1:0"
	c.start(0)
	health := func() (int, string) {
		resp, err := http.Get("http://" + c.brokers[0].DebugAddr() + "/healthz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var body struct {
			Status string `json:"status"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return resp.StatusCode, err.Error()
		}
		return resp.StatusCode, body.Status
	}
	// Well past an election timeout: it stays unhealthy alone.
	deadline := time.Now().Add(5 * c.electionTimeout())
	for time.Now().Before(deadline) {
		if code, status := health(); code != http.StatusServiceUnavailable {
			t.Fatalf("alone: /healthz %d %q, want 503", code, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, status := health()
	t.Logf("alone: %d %q", code, status)
	c.start(1)
	c.waitFor(15*time.Second, "/healthz 200 once a quorum is back", func() bool {
		code, _ := health()
		return code == http.StatusOK
	})
}

// electionTimeout is the brokers' election timeout.
func (c *testCluster) electionTimeout() time.Duration {
	return time.Duration(c.cfgs[0].Raft.ElectionTicks) * c.cfgs[0].TickInterval()
}

// holdBack is a raft transport shared by the brokers of a test cluster
// that drops the appends and snapshots for one broker in chosen groups: its
// replicas there stay connected and answer heartbeats, but cannot catch up.
type holdBack struct {
	mu   sync.Mutex
	held map[uint64]uint64 // group → the broker held back in it
}

func (h *holdBack) hold(group, node uint64) {
	h.mu.Lock()
	h.held[group] = node
	h.mu.Unlock()
}

func (h *holdBack) release(group uint64) {
	h.mu.Lock()
	delete(h.held, group)
	h.mu.Unlock()
}

// wrap returns broker self's transport through h.
func (h *holdBack) wrap(uint64) func(raftactor.Transport) raftactor.Transport {
	return func(t raftactor.Transport) raftactor.Transport { return &holdBackTransport{h: h, next: t} }
}

type holdBackTransport struct {
	h    *holdBack
	next raftactor.Transport
}

func (t *holdBackTransport) Send(ctx actor.SenderContext, group uint64, msgs []*pb.Message) {
	t.h.mu.Lock()
	node, held := t.h.held[group]
	t.h.mu.Unlock()
	if held {
		msgs = slices.DeleteFunc(slices.Clone(msgs), func(m *pb.Message) bool {
			return m.GetTo() == node && (m.GetType() == pb.MessageType_MsgApp || m.GetType() == pb.MessageType_MsgSnap)
		})
	}
	if len(msgs) > 0 {
		t.next.Send(ctx, group, msgs)
	}
}

// healthz is broker i's /healthz: its status code and body.
func (c *testCluster) healthz(i int) (int, healthzBody) {
	var body healthzBody
	resp, err := http.Get("http://" + c.brokers[i].DebugAddr() + "/healthz")
	if err != nil {
		return 0, healthzBody{Status: err.Error()}
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		body.Status = err.Error()
	}
	return resp.StatusCode, body
}

// healthzBody is a /healthz answer.
type healthzBody struct {
	Status         string                `json:"status"`
	BehindReplicas int                   `json:"behind_replicas"`
	Behind         []debug.BehindReplica `json:"behind"`
}

// TestHealthzWaitsForReplicasToCatchUp: a broker restarted after a clean
// stop answers /healthz 503 while one of its replicas has not caught up
// with its leader (its appends are held back here, as a backlog would
// hold it), naming it, although it serves Kafka clients; 200 once the
// replica is back in its leader's ISR. A rolling restart that stopped the
// next broker at the first 200 left every partition with its leader and a
// replica that could not acknowledge yet, and nothing committed until it
// had caught up.
func TestHealthzWaitsForReplicasToCatchUp(t *testing.T) {
	net := &holdBack{held: map[uint64]uint64{}}
	c := startCluster(t, 3, &testCluster{wrapTransport: net.wrap}, func(cfg *configs.Config) { cfg.Debug.Listen = "127.0.0.1:0" })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c.createTopic(ctx, c.client(), "held", 2, 3, nil)
	for i := range c.brokers {
		c.waitFor(15*time.Second, fmt.Sprintf("broker %d healthy", i+1), func() bool {
			code, _ := c.healthz(i)
			return code == http.StatusOK
		})
	}

	// Broker 3 stops cleanly (its replicas leave the ISRs at once), misses
	// writes to held/0, and starts again unable to catch up there.
	c.stop(2)
	p := c.client(kgo.DefaultProduceTopic("held"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range 50 {
		if err := p.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: fmt.Appendf(nil, "r%d", i)}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	group := c.brokers[0].Controller().View().Topics["held"].Partitions[0].Group
	net.hold(group, 3)
	c.start(2)
	c.waitFor(15*time.Second, "broker 3 serving Kafka clients", c.brokers[2].machine.CaughtUp)
	c.waitFor(15*time.Second, "broker 3's /healthz to name held/0 alone behind", func() bool {
		code, body := c.healthz(2)
		if code == http.StatusOK {
			t.Fatalf("/healthz 200 while broker 3's replica of held/0 has not caught up")
		}
		return code == http.StatusServiceUnavailable && body.Status == "replicas not in their leaders' ISR" &&
			body.BehindReplicas == 1 && len(body.Behind) == 1 && body.Behind[0].Name == "held/0"
	})
	_, body := c.healthz(2)
	t.Logf("held back: %+v", body)

	net.release(group)
	c.waitFor(15*time.Second, "broker 3 healthy once caught up", func() bool {
		code, _ := c.healthz(2)
		return code == http.StatusOK
	})
}
