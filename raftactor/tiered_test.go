package raftactor

import (
	"errors"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// sliceCold is a ColdLog over entries [first, last] held in a map, with
// the term of entry first-1 when known (boundaryTerm > 0) and the snapshot
// data there when it can describe it.
type sliceCold struct {
	first        uint64
	ents         map[uint64]*pb.Entry
	boundaryTerm uint64
	boundaryData []byte
}

func (c *sliceCold) FirstIndex() uint64 { return c.first }
func (c *sliceCold) Entry(i uint64) (*pb.Entry, error) {
	if e, ok := c.ents[i]; ok && i >= c.first {
		return e, nil
	}
	return nil, errors.New("not here")
}
func (c *sliceCold) KeepEntry(e *pb.Entry) { c.ents[e.GetIndex()] = e }
func (c *sliceCold) Boundary() (uint64, uint64, bool) {
	return c.first - 1, c.boundaryTerm, c.boundaryTerm > 0
}
func (c *sliceCold) BoundarySnapshot() ([]byte, bool) { return c.boundaryData, c.boundaryData != nil }

func entry(i, term uint64) *pb.Entry {
	return &pb.Entry{Index: new(i), Term: new(term), Data: make([]byte, 100)}
}

func TestTieredStorage(t *testing.T) {
	// Entries 1..100 were applied; the cold log has 21..100 (retention
	// removed the rest); memory was compacted to 90 and holds 91..120.
	cold := &sliceCold{first: 21, ents: map[uint64]*pb.Entry{}}
	ms := raft.NewMemoryStorage()
	var all []*pb.Entry
	for i := uint64(1); i <= 120; i++ {
		e := entry(i, 1+i/50)
		all = append(all, e)
		if i <= 100 {
			cold.ents[i] = e
		}
	}
	if err := ms.Append(all); err != nil {
		t.Fatal(err)
	}
	if err := ms.Compact(90); err != nil {
		t.Fatal(err)
	}
	s := &tieredStorage{MemoryStorage: ms, cold: cold}

	if first, _ := s.FirstIndex(); first != 21 {
		t.Fatalf("FirstIndex %d, want 21", first)
	}
	if last, _ := s.LastIndex(); last != 120 {
		t.Fatalf("LastIndex %d, want 120", last)
	}
	for _, i := range []uint64{21, 50, 89, 90, 91, 120} {
		term, err := s.Term(i)
		if err != nil || term != 1+i/50 {
			t.Fatalf("Term(%d) = %d, %v; want %d", i, term, err, 1+i/50)
		}
	}
	if _, err := s.Term(20); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Term(20): %v, want ErrCompacted", err)
	}
	// Across the boundary between cold and memory, contiguous.
	ents, err := s.Entries(80, 110, 1<<30)
	if err != nil || len(ents) != 30 {
		t.Fatalf("Entries(80,110): %d entries, %v", len(ents), err)
	}
	for k, e := range ents {
		if e.GetIndex() != 80+uint64(k) {
			t.Fatalf("entry %d has index %d", k, e.GetIndex())
		}
	}
	// maxSize limits, but at least one entry comes back.
	if ents, _ := s.Entries(30, 60, 1); len(ents) != 1 {
		t.Fatalf("Entries with a tiny maxSize: %d entries, want 1", len(ents))
	}
	per := uint64(proto.Size(entry(30, 1)))
	if ents, _ := s.Entries(30, 60, 4*per+per/2); len(ents) != 4 {
		t.Fatalf("Entries with room for 4.5 entries: %d entries, want 4", len(ents))
	}
	if _, err := s.Entries(10, 30, 1<<30); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Entries below the cold log: %v, want ErrCompacted", err)
	}
	// A gap in the cold log is reported as compacted: raft sends the snapshot.
	delete(cold.ents, 40)
	if _, err := s.Entries(35, 45, 1<<30); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Entries over a gap: %v, want ErrCompacted", err)
	}
}

// TestTieredStorageBoundary: below the memory tail the cold log's boundary
// answers Term, and raft is sent a snapshot at the boundary rather than the
// latest one, unless the boundary is unknown, cannot be described, or is
// not below the latest snapshot.
func TestTieredStorageBoundary(t *testing.T) {
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}, AutoLeave: new(false)} // as MemoryStorage keeps it
	latest := &pb.Snapshot{Data: []byte("latest"), Metadata: &pb.SnapshotMetadata{Index: new(uint64(95)), Term: new(uint64(2)), ConfState: cs}}
	boundary := &pb.Snapshot{Data: []byte("boundary"), Metadata: &pb.SnapshotMetadata{Index: new(uint64(20)), Term: new(uint64(1)), ConfState: cs}}
	tests := []struct {
		name         string
		coldFirst    uint64
		boundaryTerm uint64
		data         []byte
		wantTerm20   error // from Term(20)
		want         *pb.Snapshot
	}{
		{"boundary known", 21, 1, []byte("boundary"), nil, boundary},
		{"boundary unknown", 21, 0, []byte("boundary"), raft.ErrCompacted, latest},
		{"boundary not describable", 21, 1, nil, nil, latest},
		{"boundary not below the latest snapshot", 96, 2, []byte("boundary"), raft.ErrCompacted, latest},
		{"no cold log", 0, 0, nil, raft.ErrCompacted, latest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cold := &sliceCold{first: tt.coldFirst, ents: map[uint64]*pb.Entry{}, boundaryTerm: tt.boundaryTerm, boundaryData: tt.data}
			ms := raft.NewMemoryStorage()
			for i := uint64(1); i <= 120; i++ {
				if err := ms.Append([]*pb.Entry{entry(i, 1+i/50)}); err != nil {
					t.Fatal(err)
				}
				if i >= tt.coldFirst && tt.coldFirst > 0 && i <= 100 {
					cold.ents[i] = entry(i, 1+i/50)
				}
			}
			if _, err := ms.CreateSnapshot(95, cs, []byte("latest")); err != nil {
				t.Fatal(err)
			}
			if err := ms.Compact(90); err != nil {
				t.Fatal(err)
			}
			s := &tieredStorage{MemoryStorage: ms, cold: cold}
			term, err := s.Term(20)
			if !errors.Is(err, tt.wantTerm20) || (err == nil && term != tt.boundaryTerm) {
				t.Errorf("Term(20) = %d, %v; want %d, %v", term, err, tt.boundaryTerm, tt.wantTerm20)
			}
			if err != nil && err != raft.ErrCompacted {
				t.Errorf("Term(20) error %v is not raft.ErrCompacted itself (raft compares with ==)", err)
			}
			snap, err := s.Snapshot()
			if err != nil || !proto.Equal(snap, tt.want) {
				t.Errorf("Snapshot() = %v, %v; want %v", snap, err, tt.want)
			}
		})
	}
}
