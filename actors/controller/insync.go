package controller

import (
	"strconv"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// The controller group's leader keeps its ISR by the rule partition
// leaders keep theirs (raftactor.InSyncTracker) and broadcasts it with
// theirs, so that every voter knows whether it is caught up: a voter
// behind its leader is one whose broker's /healthz is not yet ok, since
// stopping another broker then could leave the group without a quorum
// that can commit.

// isrEveryTicks and leadershipEveryTicks pace the ISR samples and their
// broadcast as the partition leaders pace theirs (250 and 500 ms at 50 ms
// ticks).
const (
	isrEveryTicks        = 5
	leadershipEveryTicks = 10
)

// inSync is the controller leader's ISR bookkeeping.
type inSync struct {
	tracker  raftactor.InSyncTracker
	term     uint64 // of the leadership sampled; 0 when this broker does not lead
	isr      []uint64
	progress []raftactor.ReplicaProgress // scratch
}

// sampleISR samples the controller group's progress while this broker leads
// it. The status board's progress is a copy the group publishes when its
// commit moves and every few ticks, without the leader itself: the leader's
// commit stands for its end. A follower counts as heard from when raft
// streams appends to it (replicate) as well as when it is RecentActive,
// which CheckQuorum clears at every election timeout, and the board's
// copies may always be taken just after.
func (c *controllerActor) sampleISR() {
	st := c.o.Board.Get(ControllerGroup)
	if st == nil || st.Role != "leader" {
		c.isr.term, c.isr.isr = 0, nil
		return
	}
	if st.Term != c.isr.term {
		c.isr.tracker.Reset()
		c.isr.term = st.Term
	}
	self := c.o.NodeID
	c.isr.progress = append(c.isr.progress[:0], raftactor.ReplicaProgress{ID: self, Match: st.Commit, Active: true})
	for key, pr := range st.Progress {
		id, err := strconv.ParseUint(key, 10, 64)
		if err != nil {
			continue
		}
		c.isr.progress = append(c.isr.progress, raftactor.ReplicaProgress{
			ID: id, Match: pr.Match, Active: pr.RecentActive || pr.State == "replicate",
			Stopping: c.o.Liveness.Stopping(id),
			Restarts: c.o.Liveness.Restarts(id),
		})
	}
	c.isr.isr = c.isr.tracker.Observe(c.ticks, self, st.Voters, c.isr.progress, c.o.ReplicaLagTicks)
}

// broadcastLeadership tells the peers, and this broker's own board, that
// this broker leads the controller group, and its ISR.
func (c *controllerActor) broadcastLeadership(ctx actor.Context) {
	if c.isr.term == 0 || c.o.Leaderships == nil {
		return
	}
	c.o.Leaderships(ctx, []netactor.LeaderInfo{{Group: ControllerGroup, Leader: c.o.NodeID, Term: c.isr.term, ISR: c.isr.isr}})
}
