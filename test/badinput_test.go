package test

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRaftPortGarbage sends random bytes, an oversized frame length and a
// half frame to a broker's raft port: each closes that connection only; the
// cluster keeps its leader and keeps committing.
func TestRaftPortGarbage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes := newCluster(t, 3)
	for _, nd := range nodes {
		nd.start(t)
	}
	target := waitLeader(t, 15*time.Second, nodes) // the busiest port: the leader's
	var term uint64
	waitFor(t, 15*time.Second, "every broker in the leader's term", func() bool {
		var leader uint64
		leader, term = agreedLeaderTerm(nodes)
		return leader == target.id
	})

	junk := make([]byte, 64<<10)
	_, _ = rand.Read(junk)
	oversized := binary.BigEndian.AppendUint32(nil, 1<<31-1)
	half := append(binary.BigEndian.AppendUint32(nil, 1000), junk[:100]...)
	for _, payload := range [][]byte{junk, oversized, half, {0, 0, 0, 0}} { // the last: an empty frame, a hello naming nobody
		conn, err := net.DialTimeout("tcp", target.raft, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write(payload)
		if len(payload) != len(half) {
			// The broker must close the connection by itself; the half frame
			// instead waits for more bytes, and we vanish mid-frame.
			// A reset is a close too: the broker closes with our unread
			// garbage still in its buffer, and the kernel answers with RST.
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("payload of %d bytes: connection not closed by the broker: %v", len(payload), err)
			}
		}
		conn.Close()
	}
	// Same leader in the same term: nothing but the bad connections was
	// disturbed (a leader re-elected after an upset would show a new term).
	waitFor(t, 15*time.Second, "cluster unchanged", func() bool {
		leader, tm := agreedLeaderTerm(nodes)
		return leader == target.id && tm == term
	})
}

// TestTornWALTail kills a broker, appends garbage to its newest WAL file as
// a crash mid-write would leave it, and restarts it: the broker warns, cuts
// the tail, and comes back with its state.
func TestTornWALTail(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes := newCluster(t, 1)
	nd := nodes[0]
	nd.start(t)
	var clusterID string
	waitFor(t, 15*time.Second, "registered", func() bool {
		var ok bool
		clusterID, ok = registered(nd, nodes)
		return ok
	})
	nd.kill()

	walDir := filepath.Join(nd.dir, "wal")
	entries, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	last := filepath.Join(walDir, names[len(names)-1])
	before, _ := os.Stat(last)
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A record header promising 4 KiB, then only part of it.
	torn := binary.BigEndian.AppendUint32(nil, 4096)
	torn = append(torn, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3)
	if _, err := f.Write(torn); err != nil {
		t.Fatal(err)
	}
	f.Close()

	nd.start(t)
	waitFor(t, 15*time.Second, "restarted broker leads with its state", func() bool {
		checkStarted(t, nd)
		role, _, _, _, _, ok := nd.controller()
		id, reg := registered(nd, nodes)
		return ok && role == "leader" && reg && id == clusterID
	})
	if !strings.Contains(nd.tail(1<<20), "truncat") {
		t.Errorf("no warning about the truncated WAL tail in the log")
	}
	// The garbage is gone: whatever the restarted broker wrote since starts
	// where the last good record ended.
	data, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	if end := before.Size() + int64(len(torn)); int64(len(data)) >= end && string(data[before.Size():end]) == string(torn) {
		t.Errorf("WAL file %s still holds the torn record at offset %d", last, before.Size())
	}
}

// TestDebugEndpoint checks what an operator reads off a running broker.
func TestDebugEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes := newCluster(t, 3)
	for _, nd := range nodes {
		nd.start(t)
	}
	leader := waitLeader(t, 15*time.Second, nodes)

	// /debug/raft: the leader reports its followers' progress.
	var st raftStatus
	waitFor(t, 15*time.Second, "leader progress", func() bool {
		if getJSON("http://"+leader.debug+"/debug/raft", &st) != nil || len(st.Groups) != 1 {
			return false
		}
		g := st.Groups[0]
		return g.Role == "leader" && len(g.Progress) == 2 && g.Progress["1"].State+g.Progress["2"].State+g.Progress["3"].State != ""
	})
	if st.NodeID != leader.id {
		t.Fatalf("/debug/raft node_id %d, want %d", st.NodeID, leader.id)
	}

	// /debug/actors: every actor the issue names is listed.
	var acts struct {
		Actors []struct {
			Name, Kind          string
			Mailbox             int64
			Processed, Restarts uint64
		}
	}
	if err := getJSON("http://"+leader.debug+"/debug/actors", &acts); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, a := range acts.Actors {
		have[a.Name] = true
	}
	want := []string{"raft/controller", "raft/listener", "storage", "controller", "debug"}
	for _, nd := range nodes {
		if nd != leader {
			want = append(want, "peer/"+string(rune('0'+nd.id)))
		}
	}
	for _, name := range want {
		if !have[name] {
			t.Errorf("/debug/actors lacks %s: %+v", name, acts.Actors)
		}
	}

	// /metrics: the series the issue asks for.
	resp, err := httpClient.Get("http://" + leader.debug + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{
		`flotilla_raft_term{group="controller"}`,
		`flotilla_raft_role{group="controller",role="leader"} 1`,
		`flotilla_raft_commit_index{group="controller"}`,
		`flotilla_raft_applied_index{group="controller"}`,
		`flotilla_wal_fsync_seconds_bucket`,
		`flotilla_raft_frames_sent_total{peer=`,
		`flotilla_raft_frames_received_total{peer=`,
	} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	// /healthz says ok once the broker serves Kafka clients (it answers
	// 503 until it caught up with the controller), as a readiness probe
	// would wait for it.
	var health string
	waitFor(t, 15*time.Second, "/healthz 200", func() bool {
		resp, err := httpClient.Get("http://" + leader.debug + "/healthz")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		health = string(b)
		return resp.StatusCode == 200
	})
	if !strings.Contains(health, `"status": "ok"`) {
		t.Errorf("GET /healthz: 200, body lacks the ok status: %s", health)
	}
	// The page for a person.
	for path, want := range map[string]string{"/": "Raft groups", "/debug/pprof/": "goroutine"} {
		resp, err := httpClient.Get("http://" + leader.debug + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %s, body lacks %q", path, resp.Status, want)
		}
	}
}
