package raftactor

import (
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// TestOutgoingLeaderDuringTransfer: from the moment a leadership transfer
// starts until a replica knows the new leader, the replica publishes the
// outgoing leader and its term: the transferee campaigning, the old leader
// and the third voter, each of which knows no leader from its vote until
// the winner's first append. Once the winner is known it is gone. (Votes
// for the transferee are held back, so the window stays open to look at.)
func TestOutgoingLeaderDuringTransfer(t *testing.T) {
	sms := map[uint64]StateMachine{1: &countingMachine{}, 2: &countingMachine{}, 3: &countingMachine{}}
	c := newMemCluster(t, nil, sms, func(cfg *Config) { cfg.ElectionTicks = 100 })
	leader := c.leader(t)
	term := c.boards[leader].Get(0).Term
	heir := leader%3 + 1
	c.tr.mu.Lock()
	c.tr.drop = func(m *pb.Message) bool { return m.GetType() == pb.MessageType_MsgVoteResp && m.GetTo() == heir }
	c.tr.mu.Unlock()
	for id, b := range c.boards {
		if s := b.Get(0); s.Outgoing != 0 {
			t.Fatalf("node %d shows outgoing leader %d before any transfer", id, s.Outgoing)
		}
	}
	c.sys.Root.Send(c.pids[leader], &TransferLeader{To: heir})
	for id, b := range c.boards {
		waitFor(t, 5*time.Second, func() (struct{}, bool) {
			s := b.Get(0)
			return struct{}{}, s.Leader == 0 && s.Term > term && s.Outgoing == leader && s.OutgoingTerm == term
		})
		if s := b.Get(0); s.Outgoing != leader {
			t.Fatalf("node %d: %+v", id, s)
		}
	}
	c.tr.mu.Lock()
	c.tr.drop = nil
	c.tr.mu.Unlock()
	for id, b := range c.boards {
		s := waitFor(t, 5*time.Second, func() (*GroupStatus, bool) {
			s := b.Get(0)
			return s, s.Leader != 0
		})
		if s.Outgoing != 0 || s.OutgoingTerm != 0 {
			t.Fatalf("node %d knows leader %d and still shows outgoing leader %d (term %d)", id, s.Leader, s.Outgoing, s.OutgoingTerm)
		}
	}
}
