package raftactor

import (
	"slices"

	"go.etcd.io/raft/v3"
)

// The first election of a new group.
//
// The founders of a group bootstrap it with the same voters at term 1
// (Config.Bootstrap), and raft would have each wait out a randomized
// election timeout, one to two of them, before campaigning: the group has
// no leader that long, and then whichever founder timed out first leads,
// or two split the vote and try again a term later. A partition's leader
// then hands the leadership to its preferred replica (PreferLeader in
// actors/partition): one more election, and produce requests held or
// refused while it runs.
//
// So the preferred founder (Config.Preferred) campaigns as soon as raft
// lets it: once the bootstrap conf changes are applied (raft refuses to
// campaign before), as a sole voter does. PreVote is on: it first asks
// for pre-votes at term 2 without raising its own term, and the founders
// grant them (a later term, no leader, a log as long as theirs), so it
// becomes candidate and then leader of term 2. CheckQuorum changes
// nothing here: a founder has no leader whose lease a vote could break.
//
// The other founders start their replicas when they apply the controller
// entry that created the partition, as this one does, a little earlier or
// later, and the transport drops a message for a group that does not
// exist yet on its broker. A pre-vote that found none is not answered,
// and the pre-candidate would wait for its election timeout: so it asks
// again every HeartbeatTicks while it is a pre-candidate.
//
// A founder that started an election timeout or more before it (its
// broker applied the entry sooner, or started its replicas faster)
// campaigns by itself. Its pre-vote, granted by the preferred founder,
// would make both candidates of term 2, each voting for itself: a split
// vote, and another election timeout without a leader. So the preferred
// founder ignores the other founders' pre-votes while it founds; theirs
// ask only whether they may campaign, and it will grant them its own.
//
// It founds from its start until its first election is over (it is a
// candidate or knows a leader), or a quorum refused it (a founder that
// already follows a leader, as when this replica lost its data and
// founded again: it hears from that leader, or its pre-votes meet longer
// logs), and for foundingElectionTimeouts at most. Raft then carries on
// alone: an election timeout is the fallback, as for any group, and in a
// larger group the other founders may elect one of them without this one
// (its appends then end the founding). The bound is generous: brokers
// start a topic's replicas one after another, in the same order, each at
// its own pace (about 15 ms each on a loaded two-core machine), so the
// replicas of a partition of a large topic can start seconds apart.
//
// Nothing of this happens on any other start: a restart, a group
// recovered from disk, a replica added to a running group as a learner,
// or the controller group (which sets no Preferred): their group may
// have a leader, which a campaign would only disturb.

// foundingElectionTimeouts bounds the founding, in election timeouts (10 s
// at 50 ms ticks).
const foundingElectionTimeouts = 20

// startFounding marks the group that this incarnation has just founded as
// founding, if this is its preferred voter and it has others.
func (g *groupActor) startFounding() {
	cfg := g.d.cfg
	if cfg.Preferred == cfg.NodeID && len(cfg.Peers) > 1 && slices.Contains(cfg.Peers, cfg.NodeID) {
		g.foundingUntil = g.ticks + foundingElectionTimeouts*uint64(max(cfg.ElectionTicks, 1))
	}
}

// campaignFirst campaigns, once the bootstrap conf changes are applied,
// where waiting out an election timeout would only delay the group's
// first leader: a sole voter has nobody to wait for, and the preferred
// founder is the one meant to lead.
func (g *groupActor) campaignFirst() {
	voters := g.d.confState.GetVoters()
	if !slices.Contains(voters, g.d.cfg.NodeID) || g.rn.BasicStatus().RaftState == raft.StateLeader {
		return
	}
	switch {
	case len(voters) == 1:
	case g.foundingUntil != 0:
		g.foundingAt = g.ticks
	default:
		return
	}
	_ = g.rn.Campaign()
}

// founding runs at each tick of the preferred founder: it ends the
// founding once the first election is over or the time is up, and asks
// again for the pre-votes of founders that may not have had the group
// when the last request came.
func (g *groupActor) founding() {
	b := g.rn.BasicStatus()
	campaigned := !g.campaignIfAlone
	switch {
	case g.ticks >= g.foundingUntil || b.Lead != 0 || campaigned && b.RaftState != raft.StatePreCandidate:
		g.foundingUntil = 0
	case campaigned && (g.ticks-g.foundingAt)%uint64(max(g.d.cfg.HeartbeatTicks, 1)) == 0:
		_ = g.rn.Campaign()
	}
}
