package test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWipedBrokerRefusesToRejoin: a broker of three is SIGKILLed, its data
// dir wiped (a disk replaced, a data mount missing at boot), and it is
// started again with its unchanged config (bootstrap: true). It must exit
// at once saying that a peer knows its id as a broker of the cluster, and
// what to do, while the other two serve on; it used to found empty raft
// groups and take part in them as a voter with no memory of what it had
// acknowledged. Then the advice is followed: its id is removed by the
// others' config, and the machine joins as a new broker.
func TestWipedBrokerRefusesToRejoin(t *testing.T) {
	nodes, seeds := startCluster(t, 3)
	adm := clusterAdmin(t, seeds)
	const topic = "wiped"
	createReplicated(t, adm, topic, 2)
	ctx := testCtx(t, 3*time.Minute)
	produce := numberedProducer(ctx, t, seeds, topic)
	produce(0, 100)

	wiped := nodes[1]
	wiped.kill()
	if err := os.RemoveAll(wiped.dir); err != nil {
		t.Fatal(err)
	}
	wiped.start(t)
	if code := wiped.wait(30 * time.Second); code != 1 {
		t.Fatalf("broker 2 on a wiped data dir: exit %d, want 1\n%s", code, wiped.tail(4000))
	}
	out := wiped.tail(8000)
	for _, want := range []string{"knows node 2 as a registered broker of cluster", "must not rejoin as a voter", "Restore the data_dir", "new node_id"} {
		if !strings.Contains(out, want) {
			t.Fatalf("broker 2 did not say %q:\n%s", want, out)
		}
	}
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "flotilla: ") {
			t.Logf("broker 2 said: %s", strings.TrimSpace(line))
		}
	}
	if _, err := os.Stat(filepath.Join(wiped.dir, "node.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused start left node.json: %v", err)
	}
	produce(100, 200) // brokers 1 and 3 serve on

	// The advice: drop node 2 from the others' peers, and add the machine
	// (its addresses, a new data dir) as node 4 with bootstrap off.
	rest := []*node{nodes[0], nodes[2]}
	for _, nd := range rest {
		writeConfig(t, nd, true, rest)
		nd.signal(syscall.SIGHUP)
	}
	waitFor(t, 90*time.Second, "node 2 removed from the controller", func() bool {
		v, l, ok := controllerMembers(nodes[0])
		return ok && len(l) == 0 && slices.Equal(v, []uint64{1, 3})
	})
	fresh := &node{id: 4, dir: wiped.dir + "-new", config: filepath.Join(filepath.Dir(wiped.config), "node4.yaml"),
		kafka: wiped.kafka, raft: wiped.raft, debug: wiped.debug}
	writeConfig(t, fresh, false, append(slices.Clone(rest), fresh))
	fresh.start(t)
	t.Cleanup(fresh.kill)
	waitFor(t, 60*time.Second, "node 4 a voter", func() bool {
		v, _, ok := controllerMembers(nodes[0])
		return ok && slices.Equal(v, []uint64{1, 3, 4})
	})
	produce(200, 300)
	if got := consumeAll(t, ctx, nodes[0], topic, 300); len(got) != 300 {
		t.Fatalf("read back %d of 300 records", len(got))
	}
}

// TestFirstFounderWaitsForAPeer: the first founding member of a new
// cluster to start waits for a peer before it starts raft, says so, and
// stops at SIGTERM with nothing written, so that it asks again at its next
// start; with the others up it starts.
func TestFirstFounderWaitsForAPeer(t *testing.T) {
	nodes := newClusterWith(t, 3, groupSettings)
	first := nodes[0]
	first.start(t)
	waitFor(t, 15*time.Second, "node 1 asking its peers", func() bool {
		checkStarted(t, first)
		return strings.Contains(first.tail(8000), "the data dir is new")
	})
	first.signal(syscall.SIGTERM)
	if code := first.wait(15 * time.Second); code != 0 {
		t.Fatalf("SIGTERM while waiting for peers: exit %d, want 0\n%s", code, first.tail(4000))
	}
	if _, err := os.Stat(filepath.Join(first.dir, "node.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("node 1 stopped while waiting left node.json: %v", err)
	}
	for _, nd := range nodes {
		nd.start(t)
	}
	waitLeader(t, 30*time.Second, nodes)
}
