package raftactor

import (
	"errors"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// sliceCold is a ColdLog over entries [first, last] held in a map.
type sliceCold struct {
	first uint64
	ents  map[uint64]*pb.Entry
}

func (c *sliceCold) FirstIndex() uint64 { return c.first }
func (c *sliceCold) Entry(i uint64) (*pb.Entry, error) {
	if e, ok := c.ents[i]; ok && i >= c.first {
		return e, nil
	}
	return nil, errors.New("not here")
}
func (c *sliceCold) KeepEntry(e *pb.Entry) { c.ents[e.GetIndex()] = e }

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
