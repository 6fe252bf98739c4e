package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type clusterView struct {
	ClusterID string `json:"cluster_id"`
	Brokers   []struct {
		NodeID    uint64 `json:"node_id"`
		KafkaAddr string `json:"kafka_addr"`
	} `json:"brokers"`
}

// registered reports whether nd's applied controller state lists every
// broker of nodes with its Kafka address, under a cluster id.
func registered(nd *node, nodes []*node) (string, bool) {
	var v clusterView
	if err := getJSON("http://"+nd.debug+"/debug/cluster", &v); err != nil || v.ClusterID == "" {
		return "", false
	}
	want := map[uint64]string{}
	for _, n := range nodes {
		want[n.id] = n.kafka
	}
	for _, b := range v.Brokers {
		if want[b.NodeID] == b.KafkaAddr {
			delete(want, b.NodeID)
		}
	}
	return v.ClusterID, len(want) == 0
}

// electionBound is how long an election may take before a test fails: far
// above what a healthy cluster needs (about a second, which the tests log),
// so that only a broken election fails on a machine loaded by the rest of
// the suite.
const electionBound = 10 * time.Second

// TestClusterFailover runs three real brokers: they elect a controller
// leader, register, re-elect after the leader is SIGKILLed, and take the
// killed broker back with its state.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes := newCluster(t, 3)
	for _, nd := range nodes {
		nd.start(t)
	}
	start := time.Now()
	waitLeader(t, 15*time.Second, nodes)
	took := time.Since(start)
	t.Logf("controller leader elected %v after the last broker started", took)
	if took > electionBound {
		t.Errorf("first election took %v, want under %v", took, electionBound)
	}

	var clusterID string
	waitFor(t, 15*time.Second, "registrations on every broker", func() bool {
		ids := map[string]bool{}
		for _, nd := range nodes {
			id, ok := registered(nd, nodes)
			if !ok {
				return false
			}
			ids[id] = true
			clusterID = id
		}
		return len(ids) == 1 // one cluster id, the same everywhere
	})

	leader := waitLeader(t, 15*time.Second, nodes)
	var termBefore uint64
	waitFor(t, 15*time.Second, "the leader's term", func() bool {
		var ok bool
		_, termBefore, _, _, _, ok = leader.controller()
		return ok && termBefore > 0
	})
	leader.kill()
	var rest []*node
	for _, nd := range nodes {
		if nd != leader {
			rest = append(rest, nd)
		}
	}
	start = time.Now()
	next := waitLeader(t, 15*time.Second, rest)
	took = time.Since(start)
	t.Logf("new controller leader %d elected %v after SIGKILL of %d", next.id, took, leader.id)
	if took > electionBound {
		t.Errorf("re-election took %v, want under %v", took, electionBound)
	}

	// The restarted broker comes back with its term, vote and log: it
	// rejoins as a follower of the new leader and catches up.
	leader.start(t)
	waitFor(t, 15*time.Second, "killed broker rejoins as follower", func() bool {
		role, term, l, _, _, ok := leader.controller()
		return ok && role == "follower" && l == agreedLeader(rest) && term >= termBefore
	})
	waitFor(t, 15*time.Second, "killed broker catches up", func() bool {
		lead := nodeByID(rest, agreedLeader(rest))
		if lead == nil {
			return false
		}
		_, _, _, commit, _, ok := lead.controller()
		_, _, _, _, applied, ok2 := leader.controller()
		return ok && ok2 && applied >= commit
	})
	if id, ok := registered(leader, nodes); !ok || id != clusterID {
		t.Fatalf("restarted broker's state: cluster id %q (want %q), all registered %v", id, clusterID, ok)
	}
}

// TestRestartKeepsState stops a single broker with SIGTERM (clean exit 0)
// and starts it again: its term and applied state come back from the WAL.
func TestRestartKeepsState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes := newCluster(t, 1)
	nd := nodes[0]
	nd.start(t)
	var clusterID string
	waitFor(t, 15*time.Second, "single broker registered", func() bool {
		var ok bool
		clusterID, ok = registered(nd, nodes)
		return ok
	})
	var term, commit uint64
	waitFor(t, 15*time.Second, "the controller's term and commit", func() bool {
		var ok bool
		_, term, _, commit, _, ok = nd.controller()
		return ok && term > 0 && commit > 0
	})

	nd.signal(syscall.SIGTERM)
	if code := nd.wait(10 * time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit code %d, want 0", code)
	}
	nd.start(t)
	waitFor(t, 15*time.Second, "restarted broker leads again", func() bool {
		checkStarted(t, nd)
		role, term2, _, _, applied, ok := nd.controller()
		return ok && role == "leader" && term2 > term && applied >= commit
	})
	if id, ok := registered(nd, nodes); !ok || id != clusterID {
		t.Fatalf("after restart: cluster id %q, want %q (registered %v)", id, clusterID, ok)
	}
}

// TestConfigErrors: a bad config stops the process before it binds any
// port, with exit code 2 and the field named.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, yaml, field string
	}{
		{"unknown key", "node_id: 1\nbogus_key: 3\n", "bogus_key"},
		{"node not in peers", "node_id: 4\npeers:\n  - {id: 1, addr: \"127.0.0.1:19192\"}\n", "node_id"},
		{"duplicate peer id", "node_id: 1\npeers:\n  - {id: 1, addr: \"127.0.0.1:19192\"}\n  - {id: 1, addr: \"127.0.0.1:19193\"}\n", "peers[1].id"},
		{"bad address", "node_id: 1\nraft: {listen: \"nonsense\"}\n", "raft.listen"},
		{"listen on another peer's address", "node_id: 2\nraft: {listen: \"127.0.0.1:19192\"}\npeers:\n  - {id: 1, addr: \"127.0.0.1:19192\"}\n  - {id: 2, addr: \"127.0.0.1:19193\"}\n", "raft.listen"},
		{"peer queue below frame", "node_id: 1\nraft: {peer_queue_bytes: 1048576}\n", "raft.peer_queue_bytes"},
		{"append larger than a frame", "node_id: 1\nraft: {max_frame_bytes: 1048576, peer_queue_bytes: 1048576, max_size_per_msg: 1000000}\n", "raft.max_size_per_msg"},
		{"negative float for an unsigned setting", "node_id: 1\nraft: {snapshot_entries: -1.0}\n", "raft.snapshot_entries"},
		{"key without a value", "node_id: 1\ndata_dir:\n", "data_dir: no value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			// A config accepted by mistake starts a broker: kill it
			// rather than wait for it.
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, flotillaBin, "--config", path, "--data-dir", filepath.Join(dir, "data")).CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want code 2; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.field) {
				t.Fatalf("output does not name %q:\n%s", tc.field, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
				t.Fatalf("data dir was created before the config was refused")
			}
		})
	}
	out, err := exec.Command(flotillaBin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "flotilla ") {
		t.Fatalf("flotilla version: %v %q", err, out)
	}
}
