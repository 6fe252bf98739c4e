package raftactor

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/storage"
)

// flushingKeeper is a LogKeeper and a Flusher, as a partition is.
type flushingKeeper struct{ keepingMachine }

func (*flushingKeeper) Flush() error { return nil }

// forwarder sends what it receives to a channel: a stand-in for the other
// groups of a broker, writing to its storage actor.
type forwarder struct{ ch chan any }

func (f *forwarder) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *storage.Persisted, *storage.CheckpointRequest:
		f.ch <- m
	}
}

// TestUncommittedFollowerEntriesDoNotPinTheWAL: node 2 follows group 7 and
// persists entries its leader never commits (their acknowledgements are
// lost), then its peers stop: the entries can never commit and its applied
// index stays below them. Another group on node 2 writes far past the WAL's
// budget. Group 7 rewrites its uncommitted entries forward when asked again
// for the same file, so the WAL stays near its budget; recovery still has
// every entry. Run with a whole-entry state machine and with a LogKeeper
// that flushes, like a partition, whose rewrite holds references.
func TestUncommittedFollowerEntriesDoNotPinTheWAL(t *testing.T) {
	tests := []struct {
		name string
		sm   func(disk *keptDisk) StateMachine
	}{
		{name: "whole entries", sm: func(*keptDisk) StateMachine { return &countingMachine{} }},
		{name: "kept entries", sm: func(disk *keptDisk) StateMachine { return &flushingKeeper{keepingMachine{disk: disk}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			disk := &keptDisk{bodies: map[uint64][]byte{}}
			opts := storage.Options{Fsync: true, SegmentBytes: 64 << 10, BudgetBytes: 256 << 10, Log: zerolog.Nop()}
			w, _, err := storage.Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			sys := actors.NewSystem(zerolog.Nop())
			stopped := false
			tr := &memTransport{nodes: map[uint64]*actor.PID{}, down: map[uint64]bool{}}
			boards := map[uint64]*StatusBoard{}
			pids := map[uint64]*actor.PID{}
			var wal *actor.PID
			ticker := NewTicker(sys.Root, 5*time.Millisecond)
			t.Cleanup(func() {
				if !stopped {
					ticker.Stop()
					sys.Shutdown()
				}
			})
			for id := uint64(1); id <= 3; id++ {
				var st *actor.PID
				var sm StateMachine = &countingMachine{}
				if id == 2 {
					st, err = sys.Spawn(storage.Kind, "storage/2", storage.NewActor(w, zerolog.Nop()))
					wal, sm = st, tt.sm(disk)
				} else {
					st, err = sys.Spawn("storage", fmt.Sprintf("storage/%d", id), func() actor.Actor { return &checkpointStorage{} })
				}
				if err != nil {
					t.Fatal(err)
				}
				boards[id] = NewStatusBoard()
				prod, err := NewProducer(Config{
					Group: 7, Name: "p", NodeID: id, Bootstrap: true, Peers: []uint64{1, 2, 3},
					ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
					Storage: st, Transport: tr, StateMachine: sm, Board: boards[id], Log: zerolog.Nop(),
				})
				if err != nil {
					t.Fatal(err)
				}
				if pids[id], err = sys.Spawn("raft", fmt.Sprintf("raft/%d", id), prod); err != nil {
					t.Fatal(err)
				}
				tr.mu.Lock()
				tr.nodes[id] = pids[id]
				tr.mu.Unlock()
				ticker.Subscribe(pids[id])
			}
			p := &proposer{answers: make(chan *Proposed, 100)}
			pp, err := sys.Spawn("proposer", "proposer", func() actor.Actor { return p })
			if err != nil {
				t.Fatal(err)
			}
			if lead := waitLeader(t, boards, 7); lead != 1 {
				sys.Root.Send(pids[lead], &TransferLeader{To: 1})
			}
			waitFor(t, 10*time.Second, func() (struct{}, bool) {
				s := boards[1].Get(7)
				return struct{}{}, s != nil && s.Role == "leader"
			})
			for i := 1; i <= 5; i++ {
				sys.Root.Send(pids[1], &Propose{ID: uint64(i), Data: fmt.Appendf(nil, "committed %d", i), ReplyTo: pp})
				if m := <-p.answers; m.Err != nil {
					t.Fatalf("proposal %d: %v", i, m.Err)
				}
			}
			committed := boards[1].Get(7).Commit
			waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, boards[2].Get(7).Applied >= committed })

			// Node 3 goes, and node 2's acknowledgements stop reaching the
			// leader: what it persists now never commits.
			acked := make(chan uint64, 1000)
			tr.mu.Lock()
			tr.down[3] = true
			tr.drop = func(m *pb.Message) bool {
				if m.GetFrom() == 2 && m.GetType() == pb.MsgAppResp {
					if !m.GetReject() {
						acked <- m.GetIndex()
					}
					return true
				}
				return false
			}
			tr.mu.Unlock()
			for i := 1; i <= 5; i++ {
				sys.Root.Send(pids[1], &Propose{ID: uint64(100 + i), Data: fmt.Appendf(nil, "uncommitted %d", i)})
			}
			last := committed + 5
			waitFor(t, 5*time.Second, func() (struct{}, bool) {
				for {
					select {
					case i := <-acked:
						if i >= last {
							return struct{}{}, true
						}
					default:
						return struct{}{}, false
					}
				}
			})
			tr.mu.Lock()
			tr.down[1] = true
			tr.mu.Unlock()
			if s := boards[2].Get(7); s.Applied >= last {
				t.Fatalf("node 2 applied %d: the entries up to %d were meant to stay uncommitted", s.Applied, last)
			}

			// Another group on node 2 writes 3 MiB, checkpointing whenever asked.
			f := &forwarder{ch: make(chan any, 1000)}
			fp, err := sys.Spawn("other", "other", func() actor.Actor { return f })
			if err != nil {
				t.Fatal(err)
			}
			big := make([]byte, 8<<10)
			for i := uint64(1); i <= 400; i++ {
				e := &pb.Entry{Index: new(i), Term: new(uint64(1)), Type: pb.EntryNormal.Enum(), Data: big}
				hs := &pb.HardState{Term: new(uint64(1)), Commit: new(i)}
				sys.Root.Send(wal, &storage.Persist{Group: 99, Seq: i, Entries: []*pb.Entry{e}, HardState: hs, Sync: true, ReplyTo: fp})
				for done := false; !done; {
					select {
					case m := <-f.ch:
						switch m := m.(type) {
						case *storage.CheckpointRequest:
							snap := &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(i), Term: new(uint64(1))}}
							sys.Root.Send(wal, &storage.Checkpoint{Group: 99, Snapshot: snap})
						case *storage.Persisted:
							if m.Err != nil {
								t.Fatal(m.Err)
							}
							done = m.Seq == i
						}
					case <-time.After(5 * time.Second):
						t.Fatal("the storage actor did not answer within 5s")
					}
				}
			}
			files := waitFor(t, 5*time.Second, func() ([]os.DirEntry, bool) {
				des, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				return des, int64(len(des))*opts.SegmentBytes <= 2*opts.BudgetBytes
			})
			t.Logf("%d WAL files", len(files))
			if s := boards[2].Get(7); s.Role == "halted" || s.Applied >= last {
				t.Fatalf("node 2: %+v, want a live follower below %d", s, last)
			}
			ticker.Stop()
			if err := sys.Root.PoisonFuture(wal).Wait(); err != nil {
				t.Fatal(err)
			}
			stopped = true
			sys.Shutdown()

			_, states, err := storage.Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			st := states[7]
			if n := len(st.Entries); n == 0 || st.Entries[n-1].GetIndex() != last {
				t.Fatalf("recovered group 7 with %d entries, want them up to %d", n, last)
			}
			if _, ok := tt.sm(disk).(LogKeeper); ok {
				sm := &flushingKeeper{keepingMachine{disk: disk}}
				got, err := sm.Recover(st.Entries)
				if err != nil || len(got) != len(st.Entries) {
					t.Fatalf("the keeper resolved %d of %d recovered entries: %v", len(got), len(st.Entries), err)
				}
			}
		})
	}
}
