package raftactor

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/storage"
)

// instantStorage answers every Persist at once.
type instantStorage struct{}

func (instantStorage) Receive(ctx actor.Context) {
	if p, ok := ctx.Message().(*storage.Persist); ok {
		ctx.Send(p.ReplyTo, &storage.Persisted{Group: p.Group, Incarnation: p.Incarnation, Seq: p.Seq})
	}
}

// bootstrapped is what node 2's WAL holds of a group of voters {1, 2} that
// it founded and that elected nobody yet: the bootstrap conf changes,
// committed, at term 1.
func bootstrapped(t *testing.T) *storage.GroupState {
	t.Helper()
	st := &storage.GroupState{HardState: &pb.HardState{Term: new(uint64(1)), Vote: new(uint64(0)), Commit: new(uint64(2))}}
	for i, id := range []uint64{1, 2} {
		data, err := proto.Marshal(&pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: new(id)})
		if err != nil {
			t.Fatal(err)
		}
		st.Entries = append(st.Entries, &pb.Entry{Index: new(uint64(i + 1)), Term: new(uint64(1)), Type: pb.EntryConfChange.Enum(), Data: data})
	}
	return st
}

// TestFirstCampaign: the preferred voter of a group this incarnation
// founds campaigns as soon as its bootstrap conf changes are applied, and
// asks again every heartbeat while nobody answers (the other founder has
// not started its replica); on any other start nobody campaigns before an
// election timeout (here 1000 ticks, far beyond the test): not another
// founder, not a group without a preferred voter (the controller's), not
// one restarting from what its WAL recovered, not a replica waiting to be
// added to a running group.
func TestFirstCampaign(t *testing.T) {
	for _, tt := range []struct {
		name      string
		tune      func(*Config)
		campaigns bool
	}{
		{"preferred founder", func(c *Config) { c.Preferred = 2 }, true},
		{"another founder", func(c *Config) { c.Preferred = 1 }, false},
		{"no preferred voter", func(c *Config) {}, false},
		{"restart", func(c *Config) { c.Preferred, c.Recovered = 2, bootstrapped(t) }, false},
		{"replica being added", func(c *Config) { c.Preferred, c.Bootstrap = 2, false }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sys := actors.NewSystem(zerolog.Nop())
			t.Cleanup(sys.Shutdown)
			st, err := sys.Spawn("storage", "storage", func() actor.Actor { return instantStorage{} })
			if err != nil {
				t.Fatal(err)
			}
			ticker := NewTicker(sys.Root, time.Hour) // fired by hand
			t.Cleanup(ticker.Stop)
			tr, board := &tickStamped{ticker: ticker}, NewStatusBoard()
			cfg := Config{Group: 5, Name: "new", NodeID: 2, Bootstrap: true, Peers: []uint64{1, 2},
				ElectionTicks: 1000, HeartbeatTicks: 2, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
				Storage: st, Transport: tr, StateMachine: &countingMachine{}, Board: board, Log: zerolog.Nop()}
			tt.tune(&cfg)
			prod, err := NewProducer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			pid, err := sys.Spawn("raft", "raft/new", prod)
			if err != nil {
				t.Fatal(err)
			}
			ticker.Subscribe(pid)
			if cfg.Bootstrap {
				waitFor(t, 5*time.Second, func() (struct{}, bool) {
					s := board.Get(5)
					return struct{}{}, s != nil && s.Commit == 2 && s.Applied == 2
				})
			}
			for range 10 {
				before := processed(sys, "raft/new")
				ticker.fire()
				waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, processed(sys, "raft/new") > before })
			}
			var votes []uint64 // the ticks of its pre-votes
			tr.mu.Lock()
			for _, s := range tr.sent {
				if s.msg.GetType() == pb.MsgPreVote {
					votes = append(votes, s.tick)
				}
			}
			tr.mu.Unlock()
			switch want := []uint64{0, 2, 4, 6, 8, 10}; {
			case tt.campaigns && !slices.Equal(votes, want):
				t.Fatalf("pre-votes at ticks %v; want %v: one before the first tick, then one every heartbeat (2 ticks)", votes, want)
			case !tt.campaigns && len(votes) > 0:
				t.Fatalf("campaigned at ticks %v, before an election timeout", votes)
			}
		})
	}
}

// foundingNode starts node id of group 0 with voters {1, 2, 3}[:voters]
// on tr, each once the test calls it: a node whose replica has not
// started yet drops what is sent to it, as the transport drops messages
// for a group its broker does not run yet.
func foundingNode(t *testing.T, sys *actors.System, tr *memTransport, ticker *Ticker, boards map[uint64]*StatusBoard, id uint64, voters int, tune func(*Config)) {
	t.Helper()
	st, err := sys.Spawn("storage", fmt.Sprintf("storage/%d", id), func() actor.Actor { return instantStorage{} })
	if err != nil {
		t.Fatal(err)
	}
	boards[id] = NewStatusBoard()
	cfg := Config{Group: 0, Name: "founded", NodeID: id, Bootstrap: true, Peers: []uint64{1, 2, 3}[:voters], Preferred: 2,
		ElectionTicks: 10_000, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
		Storage: st, Transport: tr, StateMachine: &countingMachine{}, Board: boards[id], Log: zerolog.Nop()}
	if tune != nil {
		tune(&cfg)
	}
	prod, err := NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The transport knows the replica before it starts: its first Ready
	// may already send (a preferred founder's pre-vote), and a test's spy
	// then sends to it by its pid.
	name := fmt.Sprintf("raft/%d", id)
	tr.mu.Lock()
	tr.nodes[id] = sys.Actors.NewLocalPID(name)
	tr.mu.Unlock()
	pid, err := sys.Spawn("raft", name, prod)
	if err != nil {
		t.Fatal(err)
	}
	if !pid.Equal(tr.nodes[id]) {
		t.Fatalf("spawned %v, registered %v", pid, tr.nodes[id])
	}
	ticker.Subscribe(pid)
}

// TestPreferredFounderLeadsFirst: the preferred founder (2) starts its
// replica first; its pre-votes find nobody, and it asks again until the
// others have started: it then leads, in term 2, the first election's,
// long before any election timeout (10000 ticks) could have made a leader.
func TestPreferredFounderLeadsFirst(t *testing.T) {
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	tr := &memTransport{nodes: map[uint64]*actor.PID{}}
	preVotes := make(chan struct{}, 64)
	tr.spy = func(m *pb.Message) {
		if m.GetType() == pb.MsgPreVote && m.GetFrom() == 2 {
			select {
			case preVotes <- struct{}{}:
			default:
			}
		}
	}
	ticker := NewTicker(sys.Root, 5*time.Millisecond)
	t.Cleanup(ticker.Stop)
	boards := map[uint64]*StatusBoard{}
	foundingNode(t, sys, tr, ticker, boards, 2, 3, nil)
	for range 3 * 2 { // three rounds to two peers that are not there
		select {
		case <-preVotes:
		case <-time.After(5 * time.Second):
			t.Fatal("the preferred founder does not ask again while nobody answers")
		}
	}
	foundingNode(t, sys, tr, ticker, boards, 1, 3, nil)
	foundingNode(t, sys, tr, ticker, boards, 3, 3, nil)
	leader := waitLeader(t, boards, 0)
	if s := boards[leader].Get(0); leader != 2 || s.Term != 2 {
		t.Fatalf("node %d leads in term %d; want the preferred founder 2 in term 2", leader, s.Term)
	}
}

// TestPreferredFounderIgnoresEarlierPreVotes: a founder that started long
// before the preferred one campaigns by itself, at its own election
// timeout; its pre-vote reaches the preferred founder just as that one
// asks for its own. Granting it would make both candidates of term 2, each
// voting for itself: no leader, and another election later. The preferred
// founder ignores it, and leads in term 2.
func TestPreferredFounderIgnoresEarlierPreVotes(t *testing.T) {
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	tr := &memTransport{nodes: map[uint64]*actor.PID{}}
	held := make(chan *pb.Message, 64) // node 1's pre-votes, until node 2 asks for its own
	ticker := NewTicker(sys.Root, 5*time.Millisecond)
	t.Cleanup(ticker.Stop)
	boards := map[uint64]*StatusBoard{}
	tr.drop = func(m *pb.Message) bool {
		if m.GetType() == pb.MsgPreVote && m.GetFrom() == 1 {
			select {
			case held <- m:
			default:
			}
			return true
		}
		return false
	}
	var released bool
	tr.spy = func(m *pb.Message) {
		if released || m.GetType() != pb.MsgPreVote || m.GetFrom() != 2 {
			return
		}
		// Node 2's first pre-vote: node 1's waits in node 2's mailbox
		// before node 1 can grant node 2's. (Called with tr.mu held.)
		released = true
		tr.drop = nil
		select {
		case m1 := <-held:
			sys.Root.Send(tr.nodes[2], &Step{Msgs: []*pb.Message{m1}})
		default:
		}
	}
	foundingNode(t, sys, tr, ticker, boards, 1, 2, func(c *Config) { c.ElectionTicks = 10 })
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, len(held) > 0 })
	foundingNode(t, sys, tr, ticker, boards, 2, 2, nil)
	leader := waitLeader(t, boards, 0)
	if s := boards[leader].Get(0); leader != 2 || s.Term != 2 {
		t.Fatalf("node %d leads in term %d; want the preferred founder 2 in term 2", leader, s.Term)
	}
}
