package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/flotilla/flotilla/actors/storage"
)

// identity is what a data directory remembers about the broker that owns it,
// so that a config pointing a broker at another broker's data is refused
// instead of silently impersonating it in the raft groups.
type identity struct {
	NodeID uint64 `json:"node_id"`
}

const (
	identityFile = "node.json"
	lockFile     = "LOCK"
	removedFile  = "REMOVED"
	peersFile    = "peers.json"
	walDir       = "wal"
)

// claimDataDir creates dir if needed, locks it against a second broker
// process, and checks that it belongs to nodeID if it names an owner. It
// reports whether it does: one that does not is new, or lost its data,
// and recordIdentity names nodeID its owner once the broker may use it
// (newDataDir). The returned function releases the lock.
func claimDataDir(dir string, nodeID uint64) (unlock func(), owned bool, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, false, fmt.Errorf("data_dir %s is in use by another flotilla process: %w", dir, err)
	}
	unlock = func() { lock.Close() } // closing the descriptor releases the flock
	if reason, err := os.ReadFile(filepath.Join(dir, removedFile)); err == nil {
		unlock()
		return nil, false, fmt.Errorf("%s; node ids are never reused: to bring this machine back, give it a new node_id and an empty data_dir (the data in %s is no longer part of the cluster)",
			strings.TrimSpace(string(reason)), dir)
	}
	owned, err = checkIdentity(dir, nodeID)
	if err != nil {
		unlock()
		return nil, false, err
	}
	return unlock, owned, nil
}

// checkIdentity reports whether dir names its owner, and fails if that is
// not nodeID.
func checkIdentity(dir string, nodeID uint64) (bool, error) {
	path := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		var id identity
		if err := json.Unmarshal(b, &id); err != nil {
			return false, fmt.Errorf("read %s: %w", path, err)
		}
		if id.NodeID != nodeID {
			return false, fmt.Errorf("data_dir %s belongs to node %d, not node %d", dir, id.NodeID, nodeID)
		}
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("read %s: %w", path, err)
	}
}

// recordIdentity names nodeID the owner of dir.
func recordIdentity(dir string, nodeID uint64) error {
	b, _ := json.Marshal(identity{NodeID: nodeID})
	return writeFileSynced(dir, identityFile, b)
}

// lastPeers is what peers.json holds: the ids of the peers of the config
// the broker last ran with, and the members whose removal it asked for
// that the controller state may not show yet.
type lastPeers struct {
	Peers  []uint64 `json:"peers"`
	Asking []uint64 `json:"asking,omitempty"`
}

// readPeers returns what the data dir's peers.json records; ok is false
// without one.
func readPeers(dir string) (p lastPeers, ok bool, err error) {
	path := filepath.Join(dir, peersFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, false, fmt.Errorf("read %s: %w", path, err)
	}
	return p, true, nil
}

// writePeers records p in the data dir's peers.json.
func writePeers(dir string, p lastPeers) error {
	b, _ := json.Marshal(lastPeers{Peers: slices.Sorted(slices.Values(p.Peers)), Asking: slices.Sorted(slices.Values(p.Asking))})
	return writeFileSynced(dir, peersFile, b)
}

// writeFileSynced replaces dir's file name with data, durably: a crash
// leaves the old file or the new one, whole.
func writeFileSynced(dir, name string, data []byte) error {
	if err := storage.ReplaceFile((*os.File).Sync, filepath.Join(dir, name), data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return storage.SyncDir(dir)
}

// newDataDir reports whether dir, which names no owner, holds no raft
// state either: the broker must then find out whether the cluster knows
// its node id before it starts a raft group (awaitPeers). A dir with a
// WAL but no node.json lost only that file, and is taken as it is.
func newDataDir(dir string) (bool, error) {
	des, err := os.ReadDir(filepath.Join(dir, walDir))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("read data dir: %w", err)
	}
	return len(des) == 0, nil
}

// markRemoved records in dir that the cluster removed this broker, so
// that it refuses to start with it again.
func markRemoved(dir, reason string) error {
	path := filepath.Join(dir, removedFile)
	if err := os.WriteFile(path, []byte(reason+"\n"), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncFile(path); err != nil {
		return err
	}
	return storage.SyncDir(dir)
}

// syncFile fsyncs the file at path, so a rename of it publishes its bytes.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}
