package broker

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors/storage"
)

// TestRestartSweepsDeletedReplicas: a replica deleted just before the
// broker stopped (its topic deleted or moved away, the broker gone before
// the replica's actor had stopped) leaves its directory and its WAL
// records behind, and the restarted broker's controller state no longer
// assigns it. The restart removes both, once the controller state has
// caught up, and leaves the replicas it hosts alone.
func TestRestartSweepsDeletedReplicas(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	c.stop(0)

	// What such a replica leaves: group 999999 (never assigned), its
	// directory and its WAL records.
	const ghost = 999999
	dataDir := c.cfgs[0].DataDir
	ghostDir := filepath.Join(dataDir, "partitions", "gone-0-g999999")
	if err := os.MkdirAll(ghostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ghostDir, "00000000000000000000.log"), []byte("old batches"), 0o644); err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(dataDir, "wal")
	w, _, err := storage.Open(walDir, storage.Options{Fsync: true, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ents := []*pb.Entry{{Index: new(uint64(1)), Term: new(uint64(1)), Type: pb.EntryNormal.Enum(), Data: []byte("x")}}
	if err := w.AppendUpdate(ghost, ents, &pb.HardState{Term: new(uint64(1)), Commit: new(uint64(1))}, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A directory that is not a partition's stays.
	other := filepath.Join(dataDir, "partitions", "notes")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}

	c.start(0)
	c.waitReady()
	c.waitFor(15*time.Second, "the deleted replica's directory removed", func() bool {
		_, err := os.Stat(ghostDir)
		return os.IsNotExist(err)
	})
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("a directory that is no partition's: %v", err)
	}
	c.stop(0)
	_, states, err := storage.Open(walDir, storage.Options{Fsync: true, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if states[ghost] != nil {
		t.Fatalf("the deleted replica's WAL state survived the restart: %+v", states[ghost])
	}
}
