package controller

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
)

// fakeNetwork is a peer table that records the control messages sent.
type fakeNetwork struct {
	peers map[uint64]string
	sent  []sentControl
}

type sentControl struct {
	to uint64
	m  *control
}

func (n *fakeNetwork) SetPeer(id uint64, addr string) error {
	n.peers[id] = addr
	return nil
}

func (n *fakeNetwork) RemovePeer(id uint64) { delete(n.peers, id) }

func (n *fakeNetwork) SendControl(_ actor.SenderContext, to uint64, data []byte) bool {
	if _, ok := n.peers[to]; !ok {
		return false
	}
	m, err := decodeControl(data)
	if err != nil {
		panic(err)
	}
	n.sent = append(n.sent, sentControl{to: to, m: m})
	return true
}

func query(id uint64, addr string) []byte {
	return (&control{RegistrationQuery: &registrationQuery{NodeID: id, RaftAddr: addr}}).encode()
}

func answer(id uint64, cluster, status string) []byte {
	return (&control{RegistrationAnswer: &registrationAnswer{NodeID: id, ClusterID: cluster, Status: status}}).encode()
}

// TestAnswerRegistration: a broker answers whether the asker's id is
// registered from its controller state, and says it does not know only
// from a state that is current or that never held anything.
func TestAnswerRegistration(t *testing.T) {
	register := func(sm *StateMachine, index, id uint64) {
		sm.Apply(index, 1, (&Command{RegisterBroker: &RegisterBroker{NodeID: id, KafkaAddr: "k", RaftAddr: "r"}}).Encode())
	}
	withCluster := func() *StateMachine {
		sm := withMembers(3)
		sm.Apply(4, 1, (&Command{InitCluster: &InitCluster{ClusterID: "c1"}}).Encode())
		register(sm, 5, 1)
		return sm
	}
	tests := []struct {
		name   string
		state  func() *StateMachine
		fresh  bool
		status string
	}{
		{"registered", func() *StateMachine { sm := withCluster(); register(sm, 6, 2); sm.MarkCaughtUp(); return sm }, false, statusRegistered},
		{"registered, not caught up", func() *StateMachine { sm := withCluster(); register(sm, 6, 2); return sm }, false, statusRegistered},
		{"removed", func() *StateMachine {
			sm := withCluster()
			register(sm, 6, 2)
			confChange(sm, 7, pb.ConfChangeRemoveNode, 2, nil, []uint64{1, 3}, nil)
			sm.MarkCaughtUp()
			return sm
		}, false, statusRemoved},
		{"a founding member that never registered, caught up", func() *StateMachine { sm := withCluster(); sm.MarkCaughtUp(); return sm }, false, statusUnknown},
		{"replaying its log", withCluster, false, statusUnsure},
		{"fresh, no cluster yet", func() *StateMachine { return withMembers(3) }, true, statusUnknown},
		{"fresh, catching up", withCluster, true, statusUnsure},
		{"restarted, nothing applied yet", func() *StateMachine { return NewStateMachine(zerolog.Nop()) }, false, statusUnsure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := &fakeNetwork{peers: map[uint64]string{2: "r2", 3: "r3"}}
			c := NewActor(Options{NodeID: 1, Machine: tt.state(), Network: net, Fresh: tt.fresh, Log: zerolog.Nop()})().(*controllerActor)
			c.onControl(nil, 2, query(2, "r2"))
			if len(net.sent) != 1 || net.sent[0].to != 2 || net.sent[0].m.RegistrationAnswer == nil {
				t.Fatalf("sent %+v, want one answer to 2", net.sent)
			}
			if a := net.sent[0].m.RegistrationAnswer; a.NodeID != 2 || a.Status != tt.status {
				t.Fatalf("answer %+v, want status %s", a, tt.status)
			}
		})
	}
}

// TestAnswerRegistrationReachesUnknownAsker: a broker joining with
// bootstrap off is in nobody's config: it is made a peer long enough to
// hear the answer, and forgotten once it stops asking. A query naming
// another node than its sender is not answered.
func TestAnswerRegistrationReachesUnknownAsker(t *testing.T) {
	sm := withMembers(3)
	sm.MarkCaughtUp()
	net := &fakeNetwork{peers: map[uint64]string{}}
	c := NewActor(Options{NodeID: 1, Machine: sm, Network: net, Log: zerolog.Nop()})().(*controllerActor)
	c.onControl(nil, 5, query(4, "r4"))
	if len(net.sent) != 0 || len(net.peers) != 0 {
		t.Fatalf("answered a query naming another node: sent %+v, peers %v", net.sent, net.peers)
	}
	c.onControl(nil, 4, query(4, "r4"))
	if net.peers[4] != "r4" || len(net.sent) != 1 || net.sent[0].m.RegistrationAnswer.Status != statusUnknown {
		t.Fatalf("peers %v, sent %+v: want 4 made a peer and told unknown", net.peers, net.sent)
	}
	c.ticks = helloEveryTicks * (askerGraceTicks / helloEveryTicks) // a full sync, within the grace
	c.syncPeers(sm.View())
	if net.peers[4] != "r4" {
		t.Fatalf("asker dropped within its grace: peers %v", net.peers)
	}
	c.ticks += 2 * askerGraceTicks // a full sync, past it
	c.syncPeers(sm.View())
	if _, ok := net.peers[4]; ok {
		t.Fatalf("asker kept after it stopped asking: peers %v", net.peers)
	}
}

// TestProbe: a broker with a new data dir may start once a majority of the
// configured voters, itself included, said they know no cluster where its
// id is registered, and must not once one says it is registered or was
// removed. Answers naming another node, or from brokers not in its config,
// count for nothing; it tells a peer that asks that it knows no cluster.
func TestProbe(t *testing.T) {
	type msg struct {
		from uint64
		data []byte
	}
	tests := []struct {
		name    string
		voters  int
		msgs    []msg
		done    bool
		refusal *Refusal
	}{
		{"a majority of three", 3, []msg{{2, answer(1, "", statusUnknown)}}, true, nil},
		{"not caught up is not an answer", 3, []msg{{2, answer(1, "c", statusUnsure)}, {3, answer(1, "c", statusUnsure)}}, false, nil},
		{"then caught up", 3, []msg{{2, answer(1, "c", statusUnsure)}, {2, answer(1, "c", statusUnknown)}}, true, nil},
		{"five voters need two answers", 5, []msg{{2, answer(1, "", statusUnknown)}, {2, answer(1, "", statusUnknown)}}, false, nil},
		{"and have them", 5, []msg{{2, answer(1, "", statusUnknown)}, {4, answer(1, "", statusUnknown)}}, true, nil},
		{"registered", 3, []msg{{3, answer(1, "c", statusRegistered)}}, true, &Refusal{Peer: 3, ClusterID: "c"}},
		{"registered after a majority", 5, []msg{{2, answer(1, "", statusUnknown)}, {3, answer(1, "c", statusRegistered)}}, true, &Refusal{Peer: 3, ClusterID: "c"}},
		{"removed", 3, []msg{{2, answer(1, "c", statusRemoved)}}, true, &Refusal{Peer: 2, ClusterID: "c", Removed: true}},
		{"answer for another node", 3, []msg{{2, answer(7, "c", statusRegistered)}, {2, answer(7, "", statusUnknown)}}, false, nil},
		{"answer from outside the config", 3, []msg{{9, answer(1, "c", statusRegistered)}, {9, answer(1, "", statusUnknown)}}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peers := []uint64{2, 3, 4, 5}[:tt.voters-1]
			net := &fakeNetwork{peers: map[uint64]string{2: "r2", 3: "r3", 4: "r4", 5: "r5", 9: "r9"}}
			done := make(chan *Refusal, 1)
			p := NewProbe(ProbeOptions{NodeID: 1, RaftAddr: "r1", Peers: peers, Voters: tt.voters, Network: net, EveryTicks: 1, Done: done, Log: zerolog.Nop()})().(*probe)
			for _, m := range tt.msgs {
				p.onControl(nil, m.from, m.data)
			}
			select {
			case r := <-done:
				if !tt.done {
					t.Fatalf("done with %+v, want still waiting", r)
				}
				if (r == nil) != (tt.refusal == nil) || r != nil && *r != *tt.refusal {
					t.Fatalf("refusal %+v, want %+v", r, tt.refusal)
				}
			default:
				if tt.done {
					t.Fatal("still waiting, want done")
				}
			}
		})
	}

	// It asks again every round those that have not said unknown, and
	// answers a peer that asks.
	net := &fakeNetwork{peers: map[uint64]string{2: "r2", 3: "r3"}}
	p := NewProbe(ProbeOptions{NodeID: 1, RaftAddr: "r1", Peers: []uint64{2, 3}, Voters: 5, Network: net, EveryTicks: 2, Done: make(chan *Refusal, 1), Log: zerolog.Nop()})().(*probe)
	p.onControl(nil, 2, answer(1, "", statusUnknown))
	p.tick(nil)
	p.tick(nil)
	if len(net.sent) != 1 || net.sent[0].to != 3 || net.sent[0].m.RegistrationQuery.NodeID != 1 || net.sent[0].m.RegistrationQuery.RaftAddr != "r1" {
		t.Fatalf("second round sent %+v, want one query to 3", net.sent)
	}
	p.onControl(nil, 3, query(3, "r3"))
	if a := net.sent[len(net.sent)-1]; a.to != 3 || a.m.RegistrationAnswer == nil || a.m.RegistrationAnswer.NodeID != 3 || a.m.RegistrationAnswer.Status != statusUnknown {
		t.Fatalf("answer to 3: %+v", a)
	}
}
