package raftactor

import (
	"cmp"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"
)

// Stepping down before a stop.
//
// A broker that stops while it leads a group leaves the group without a
// leader until a follower's election timeout passes, as if it had crashed.
// Kafka's controlled shutdown moves leaderships off a broker before it
// closes its sockets; StepDown is that move for one group. Raft's
// leadership transfer brings the chosen voter's log up to date if it is
// behind and then tells it to campaign at once (MsgTimeoutNow), which takes
// a round trip or two. Raft drops proposals while the transfer runs
// (Handle.Transferring); the state machine decides what its clients are
// told meanwhile.

// stepDown hands the leadership of a leading group to its successor among
// the voters alive reports able to take over; see StepDown.
func (g *groupActor) stepDown(alive func(id uint64) bool) {
	if g.rn == nil {
		return
	}
	st := g.rn.Status()
	if st.RaftState != raft.StateLeader {
		return
	}
	eligible := func(id uint64) bool { return (alive == nil || alive(id)) && !g.stopping(id) }
	if t := st.LeadTransferee; t != 0 && eligible(t) {
		return // under way to a voter that can take over
	}
	// Raft gives up a transfer to another voter for this one.
	to := successor(st, eligible)
	if to == 0 {
		g.log.Debug().Uint64("term", st.GetTerm()).Msg("stepping down: no voter can take over")
		return
	}
	g.log.Debug().Uint64("node_id", to).Uint64("term", st.GetTerm()).Msg("stepping down: transferring leadership")
	g.rn.TransferLeader(to)
}

// transferLeader asks raft to hand leadership to id, unless id is stopping;
// it reports whether it asked.
func (g *groupActor) transferLeader(id uint64) bool {
	if g.rn == nil || g.stopping(id) {
		return false
	}
	g.rn.TransferLeader(id)
	return true
}

// stopping reports whether node id announced that it is stopping.
func (g *groupActor) stopping(id uint64) bool {
	s := g.d.cfg.Stopping
	return s != nil && s(id)
}

// successor picks the voter a leader hands over to, 0 if none is eligible.
// Raft sends MsgTimeoutNow only to a voter whose log matches the leader's,
// so the best is one it replicates to steadily, then the furthest along,
// then one it heard from within the current election timeout; ties go to
// the lowest id, so the choice does not depend on map order.
func successor(st raft.Status, eligible func(id uint64) bool) uint64 {
	var best uint64
	var bestPr tracker.Progress
	for id, pr := range st.Progress {
		if id == st.ID || pr.IsLearner || !eligible(id) {
			continue
		}
		if best == 0 {
			best, bestPr = id, pr
			continue
		}
		if c := compareSuccessors(pr, bestPr); c > 0 || (c == 0 && id < best) {
			best, bestPr = id, pr
		}
	}
	return best
}

// compareSuccessors orders two voters' progress by how soon each could
// take over: positive when a is the better.
func compareSuccessors(a, b tracker.Progress) int {
	rank := func(pr tracker.Progress) int {
		if pr.State == tracker.StateReplicate {
			return 1
		}
		return 0
	}
	active := func(pr tracker.Progress) int {
		if pr.RecentActive {
			return 1
		}
		return 0
	}
	if c := cmp.Compare(rank(a), rank(b)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Match, b.Match); c != 0 {
		return c
	}
	return cmp.Compare(active(a), active(b))
}
