package test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/internal/testports"
)

// TestSecondProcessWithBrokerIDExits: a fourth process started with broker
// 2's config, but ports and a data dir of its own (a copy-pasted config),
// while broker 2 runs, exits with code 1 and one error naming node id 2
// and broker 2's raft address; the cluster goes on as if it had never
// been: produce and consume work, no raft group's term or leader moved,
// and no broker counted a restart of broker 2. The two processes used to
// replace each other's raft connections on every peer, forever. Then
// broker 2 is SIGKILLed and started again at once: a new process of its
// id whose predecessor is gone, which its peers take as a restart, and it
// serves as promptly as before.
func TestSecondProcessWithBrokerIDExits(t *testing.T) {
	nodes, seeds := startCluster(t, 3)
	adm := clusterAdmin(t, seeds)
	const topic = "dupid"
	createReplicated(t, adm, topic, 3)
	ctx := testCtx(t, 3*time.Minute)
	produce := numberedProducer(ctx, t, seeds, topic)
	produce(0, 100)

	// Settled: every broker in sync, and the raft groups' terms and
	// leaders the same over a second (preferred leaders moved back).
	waitFor(t, 60*time.Second, "every broker's /healthz 200", func() bool {
		for _, nd := range nodes {
			if nd.healthStatus() != 200 {
				return false
			}
		}
		return true
	})
	var before map[string]groupTerm
	waitFor(t, 30*time.Second, "raft terms and leaders settled", func() bool {
		a := clusterTerms(t, nodes)
		time.Sleep(time.Second)
		before = clusterTerms(t, nodes)
		return maps.Equal(a, before)
	})
	restarts := restartsOf(t, 2, nodes[0], nodes[2])

	ports := testports.Free(t, 3)
	dup := &node{
		id: 2, dir: filepath.Join(t.TempDir(), "node2-copy"), config: filepath.Join(t.TempDir(), "node2-copy.yaml"),
		kafka: fmt.Sprintf("127.0.0.1:%d", ports[0]), raft: fmt.Sprintf("127.0.0.1:%d", ports[1]), debug: fmt.Sprintf("127.0.0.1:%d", ports[2]),
	}
	writeConfig(t, dup, true, []*node{nodes[0], dup, nodes[2]})
	start := time.Now()
	dup.start(t)
	t.Cleanup(dup.kill)
	if code := dup.wait(30 * time.Second); code != 1 {
		t.Fatalf("second process with node id 2: exit %d, want 1\n%s", code, dup.tail(4000))
	}
	t.Logf("the second process exited %v after its start", time.Since(start).Round(time.Millisecond))
	var said []string
	for line := range strings.Lines(dup.tail(1 << 20)) {
		if strings.HasPrefix(line, "flotilla: ") {
			said = append(said, strings.TrimSpace(line))
		}
	}
	if len(said) != 1 {
		t.Fatalf("the second process said %d errors on stderr, want one:\n%s", len(said), dup.tail(8000))
	}
	for _, want := range []string{"node id 2 is in use by another live process", "raft address " + nodes[1].raft} {
		if !strings.Contains(said[0], want) {
			t.Fatalf("the second process's error does not say %q: %s", want, said[0])
		}
	}
	t.Logf("it said: %s", said[0])

	produce(100, 200)
	if after := clusterTerms(t, nodes); !maps.Equal(after, before) {
		t.Fatalf("raft terms or leaders moved while the second process ran:\nbefore %v\nafter  %v", before, after)
	}
	if after := restartsOf(t, 2, nodes[0], nodes[2]); after != restarts {
		t.Fatalf("brokers 1 and 3 counted %v restarts of broker 2, %v before the second process", after, restarts)
	}
	logged := 0
	for _, nd := range []*node{nodes[0], nodes[2]} {
		n := strings.Count(nd.tail(1<<22), "refused a second process with a peer's node id")
		if n > 1 {
			t.Fatalf("broker %d logged the second process %d times, want at most once", nd.id, n)
		}
		logged += n
	}
	if logged == 0 {
		t.Fatal("neither broker 1 nor broker 3 logged that it refused the second process")
	}

	// kill -9 and an immediate restart: the same id, a new process, whose
	// predecessor's connections its kernel closed.
	nodes[1].kill()
	nodes[1].start(t)
	serving := waitFor(t, 15*time.Second, "broker 2 serving Kafka again", func() bool {
		checkStarted(t, nodes[1])
		return servesMetadata(nodes[1])
	})
	inSync := waitFor(t, 60*time.Second, "broker 2's /healthz 200", func() bool { return nodes[1].healthStatus() == 200 })
	t.Logf("broker 2 restarted after kill -9: serving %v, in sync %v after its start", serving.Round(time.Millisecond), (serving + inSync).Round(time.Millisecond))
	if strings.Contains(nodes[1].tail(1<<22), "in use by another live process") {
		t.Fatalf("the restarted broker 2 was taken for a second process:\n%s", nodes[1].tail(4000))
	}
	waitFor(t, 10*time.Second, "brokers 1 and 3 counting broker 2's restart", func() bool {
		return restartsOf(t, 2, nodes[0], nodes[2]) == [2]uint64{restarts[0] + 1, restarts[1] + 1}
	})
	produce(200, 300)
	if got := consumeAll(t, ctx, nodes[1], topic, 300); len(got) != 300 {
		t.Fatalf("read back %d of 300 records through broker 2", len(got))
	}
}

// groupTerm is a raft group's term and leader as one broker sees it.
type groupTerm struct{ term, leader uint64 }

// clusterTerms returns every raft group's term and leader on every node,
// keyed by node and group.
func clusterTerms(t *testing.T, nodes []*node) map[string]groupTerm {
	t.Helper()
	terms := make(map[string]groupTerm)
	for _, nd := range nodes {
		var st raftStatus
		if err := getJSON("http://"+nd.debug+"/debug/raft", &st); err != nil {
			t.Fatalf("node %d: %v", nd.id, err)
		}
		for _, g := range st.Groups {
			terms[fmt.Sprintf("node %d %s", nd.id, g.Name)] = groupTerm{g.Term, g.Leader}
		}
	}
	return terms
}

// restartsOf returns how many restarts of broker id each of two nodes
// counted (/debug/cluster).
func restartsOf(t *testing.T, id uint64, a, b *node) [2]uint64 {
	t.Helper()
	var got [2]uint64
	for i, nd := range []*node{a, b} {
		var st struct {
			Health map[string]struct {
				Restarts uint64 `json:"restarts"`
			} `json:"peer_health"`
		}
		if err := getJSON("http://"+nd.debug+"/debug/cluster", &st); err != nil {
			t.Fatalf("node %d: %v", nd.id, err)
		}
		got[i] = st.Health[fmt.Sprint(id)].Restarts
	}
	return got
}

// servesMetadata reports whether nd answers Metadata on its Kafka port,
// listing itself.
func servesMetadata(nd *node) bool {
	cl, err := kgo.NewClient(kgo.SeedBrokers(nd.kafka), kgo.RequestRetries(0))
	if err != nil {
		return false
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return false
	}
	for _, b := range resp.Brokers {
		if b.NodeID == int32(nd.id) {
			return true
		}
	}
	return false
}
