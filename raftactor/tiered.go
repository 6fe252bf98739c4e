package raftactor

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ColdLog is implemented by a state machine that keeps its applied entries
// on disk in a form it can give back (a partition's segments): the group
// then serves raft the entries below its in-memory tail from there, so a
// follower that fell behind catches up with ordinary appends read from
// disk rather than with a snapshot, and the in-memory tail kept after a
// snapshot can be short. Memory is still compacted only at snapshots: a
// restarted actor resets the state machine to its last snapshot (and the
// cold log with it) and replays the entries after it from memory. The group's actor calls KeepEntry; raft may call FirstIndex and
// Entry from the same actor only (RawNode runs there).
type ColdLog interface {
	// FirstIndex is the lowest raft index from which the cold log holds
	// every entry up to the applied index; 0 when it holds none.
	FirstIndex() uint64
	// Entry returns the applied entry at raft index i, FirstIndex <= i <=
	// applied, exactly as it was proposed.
	Entry(i uint64) (*pb.Entry, error)
	// KeepEntry hands the cold log an applied entry that the state machine
	// never saw (a conf change), so that it can serve it later.
	KeepEntry(e *pb.Entry)
}

// tieredStorage is the raft.Storage of a group with a ColdLog: the
// MemoryStorage (persisted, not yet compacted entries, the hard state, the
// latest snapshot) in front, the cold log behind it.
type tieredStorage struct {
	*raft.MemoryStorage
	cold ColdLog
}

// FirstIndex implements raft.Storage: the cold log's first index when it
// reaches further back than memory.
func (s *tieredStorage) FirstIndex() (uint64, error) {
	first, err := s.MemoryStorage.FirstIndex()
	if err != nil {
		return 0, err
	}
	if c := s.cold.FirstIndex(); c > 0 && c < first {
		return c, nil
	}
	return first, nil
}

// Term implements raft.Storage.
func (s *tieredStorage) Term(i uint64) (uint64, error) {
	memFirst, _ := s.MemoryStorage.FirstIndex()
	if i+1 >= memFirst || !s.inCold(i) {
		return s.MemoryStorage.Term(i)
	}
	e, err := s.cold.Entry(i)
	if err != nil {
		return 0, coldError(i, err)
	}
	return e.GetTerm(), nil
}

// Entries implements raft.Storage: [lo, hi) from the cold log below the
// memory tail and from memory above it, at most maxSize bytes (but at least
// one entry, as raft requires).
func (s *tieredStorage) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	memFirst, _ := s.MemoryStorage.FirstIndex()
	if lo >= memFirst || !s.inCold(lo) {
		return s.MemoryStorage.Entries(lo, hi, maxSize)
	}
	var out []*pb.Entry
	var size uint64
	i := lo
	for ; i < hi && i < memFirst; i++ {
		e, err := s.cold.Entry(i)
		if err != nil {
			return nil, coldError(i, err)
		}
		size += uint64(proto.Size(e))
		if len(out) > 0 && size > maxSize {
			return out, nil
		}
		out = append(out, e)
	}
	if i < hi {
		more, err := s.MemoryStorage.Entries(i, hi, maxSize-min(size, maxSize))
		if err != nil && !errors.Is(err, raft.ErrCompacted) {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

func (s *tieredStorage) inCold(i uint64) bool {
	c := s.cold.FirstIndex()
	return c > 0 && i >= c
}

// coldError makes a cold log failure something raft handles: an entry that
// is gone (retention) is compacted, so raft sends the snapshot instead.
func coldError(i uint64, err error) error {
	return fmt.Errorf("%w: entry %d from the state machine's log: %v", raft.ErrCompacted, i, err)
}
