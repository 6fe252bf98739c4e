package raftactor

import (
	"bytes"

	pb "go.etcd.io/raft/v3/raftpb"
)

// Naming the outgoing leader.
//
// Raft's leadership transfer ends one leadership before the next is known:
// the transferee campaigns at a new term at once (MsgTimeoutNow), and a
// voter, the old leader first, knows no leader from its vote until the
// winner's first append reaches it. Kafka's metadata goes on naming the old
// leader until the new one is recorded, and answers LEADER_NOT_AVAILABLE
// only when the leader is not a live broker
// (KRaftMetadataCache.getPartitionMetadata); a client told
// LEADER_NOT_AVAILABLE waits for its next metadata refresh. So a replica
// that learns a transfer is under way, from the MsgTimeoutNow that starts
// it or from the transferee's vote request, keeps the leader it knew and
// that leader's term, and publishes them (GroupStatus.Outgoing) until it
// knows a leader again, for an election timeout at most: long enough for
// any transfer that succeeds.

// transferContext marks the vote requests of a transferee (etcd raft's
// campaignTransfer).
var transferContext = []byte("CampaignTransfer")

// noteTransfer remembers the leader this replica knows, and its term, when
// m, about to be stepped, starts a transfer of its leadership.
func (g *groupActor) noteTransfer(m *pb.Message) {
	b := g.rn.BasicStatus()
	switch {
	case b.Lead == 0:
		return
	case m.GetType() == pb.MessageType_MsgTimeoutNow && m.GetFrom() == b.Lead && m.GetTerm() == b.GetTerm():
	case m.GetType() == pb.MessageType_MsgVote && m.GetTerm() > b.GetTerm() && bytes.Equal(m.GetContext(), transferContext):
	default:
		return
	}
	g.outgoing, g.outgoingTerm = b.Lead, b.GetTerm()
	g.outgoingUntil = g.ticks + uint64(g.d.cfg.ElectionTicks)
}

// outgoingLeader returns the outgoing leader and its term to publish with
// lead, the leader raft knows now: none once that is someone again, or
// once an election timeout has passed since the transfer began.
func (g *groupActor) outgoingLeader(lead uint64) (leader, term uint64) {
	if g.outgoing != 0 && (lead != 0 || g.ticks >= g.outgoingUntil) {
		g.outgoing, g.outgoingTerm = 0, 0
	}
	return g.outgoing, g.outgoingTerm
}
