package raftactor

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
)

// TestCompactIndex: the in-memory log keeps the catch-up tail behind
// applied, within CatchUpEntries and CatchUpBytes, and is never compacted
// past applied, whatever the entries' sizes.
func TestCompactIndex(t *testing.T) {
	tests := []struct {
		name            string
		sizes           []int // data sizes of entries 1, 2, ...
		applied         uint64
		entries, nbytes uint64 // CatchUpEntries, CatchUpBytes
		want            uint64
	}{
		{"entries bound", []int{10, 10, 10, 10, 10}, 5, 2, 0, 3},
		{"bytes bound keeps the tail that fits", []int{10, 10, 10, 10, 10}, 5, 16, 25, 3},
		{"everything fits", []int{10, 10, 10, 10, 10}, 5, 16, 1000, 1},
		{"last applied entry larger than the bytes bound", []int{10, 10, 10, 10, 200}, 5, 16, 100, 5},
		{"every entry larger than the bytes bound", []int{200, 200, 200}, 3, 16, 100, 3},
		{"unapplied entries after applied", []int{10, 10, 200, 10, 10}, 3, 16, 100, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := raft.NewMemoryStorage()
			var ents []*pb.Entry
			for i, size := range tt.sizes {
				ents = append(ents, &pb.Entry{Index: new(uint64(i + 1)), Term: new(uint64(1)), Data: make([]byte, size)})
			}
			if err := ms.Append(ents); err != nil {
				t.Fatal(err)
			}
			g := &groupActor{d: &durable{cfg: Config{CatchUpEntries: tt.entries, CatchUpBytes: tt.nbytes}, ms: ms, applied: tt.applied}}
			if got := g.compactIndex(); got != tt.want {
				t.Errorf("compactIndex() = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestSnapshotAfterLargeEntry: a snapshot taken right after an entry larger
// than CatchUpBytes (a partition's batch above 1 MiB) compacts the log to
// applied, not past its end, which MemoryStorage.Compact answers with a
// panic that restarted the group's actor and dropped its proposals.
func TestSnapshotAfterLargeEntry(t *testing.T) {
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	st, err := sys.Spawn("storage", "storage/1", func() actor.Actor { return &checkpointStorage{} })
	if err != nil {
		t.Fatal(err)
	}
	tr := &memTransport{nodes: map[uint64]*actor.PID{}, down: map[uint64]bool{}}
	board := NewStatusBoard()
	prod, err := NewProducer(Config{Group: 5, Name: "p", NodeID: 1, Bootstrap: true, Peers: []uint64{1},
		ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
		SnapshotEntries: 5, CatchUpEntries: 2, CatchUpBytes: 100,
		Storage: st, Transport: tr, StateMachine: &countingMachine{}, Board: board, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := sys.Spawn("raft", "raft/1", prod)
	if err != nil {
		t.Fatal(err)
	}
	ticker := NewTicker(sys.Root, 5*time.Millisecond)
	t.Cleanup(ticker.Stop)
	ticker.Subscribe(pid)
	waitLeader(t, map[uint64]*StatusBoard{1: board}, 5)
	p := &proposer{answers: make(chan *Proposed, 100)}
	pp, err := sys.Spawn("proposer", "proposer", func() actor.Actor { return p })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		data := append(fmt.Appendf(nil, "%03d", i), bytes.Repeat([]byte{'x'}, 200)...)
		sys.Root.Send(pid, &Propose{ID: uint64(i), Data: data, ReplyTo: pp})
		select {
		case m := <-p.answers:
			if m.Err != nil {
				t.Fatalf("proposal %d: %v", i, m.Err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("proposal %d not answered", i)
		}
	}
	for _, s := range sys.List() {
		if s.Name == "raft/1" && s.Restarts != 0 {
			t.Fatalf("the group's actor restarted %d times (panicked) while snapshotting entries larger than CatchUpBytes", s.Restarts)
		}
	}
}
