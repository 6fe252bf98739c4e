package raftactor

import (
	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Sleeping through ticks.
//
// Most groups of a broker are followers, and a follower's tick only counts
// towards its election timeout: raft campaigns once randomizedElectionTimeout
// ticks (at least ElectionTicks) have passed since it last heard from its
// leader, and does nothing else on a tick. So a follower that has just
// stepped an append, heartbeat or snapshot from its leader cannot act on
// its own before ElectionTicks more ticks, and with heartbeats every
// HeartbeatTicks it usually hears from the leader again long before. Such
// a group asks the Ticker to skip it until then (subscription.wakeAt), and
// counts the ticks it slept through when it next runs: before any message
// it handles, and at the latest with the Tick it asked to be woken by.
//
// Raft sees every tick, in order, exactly once. A tick it sees late is one
// before the wake-up tick, which can only raise electionElapsed below
// ElectionTicks: no campaign, and no change to the one other use of the
// count (a vote request inside the leader's lease is ignored either way).
// From the wake-up tick on, ticks arrive as messages again, as they would
// have.
//
// A group sleeps only while nothing else is timed by its ticks: no
// proposal waiting, and an Extension that says its ticks can wait.

// TickSleeper is implemented by an Extension whose Tick may be called late:
// while TicksCanWait reports true, a follower group that has just heard from
// its leader may skip ticks and call Tick once for each of them, in a row,
// before it handles its next message. An Extension that is not a
// TickSleeper is ticked on every tick.
type TickSleeper interface {
	TicksCanWait() bool
}

// onTick counts the ticks a numbered Tick brings: itself and any slept
// through. A Tick already counted while catching up brings none.
func (g *groupActor) onTick(ctx actor.Context, m *Tick) {
	n := uint64(1)
	if m.ticker != nil {
		if g.d.sub == nil {
			g.d.sub = m.ticker.subscription(ctx.Self())
		}
		switch {
		case g.clock == 0: // this incarnation's first: nothing slept through
		case m.N <= g.clock:
			n = 0
		default:
			n = m.N - g.clock
		}
		g.clock = max(g.clock, m.N)
	}
	g.tick(ctx, n)
	g.wakeIfBusy()
	g.renewQuiet(ctx)
}

// catchUp counts the ticks slept through so far, before the group handles
// a message. Ticks from the wake-up tick on are not counted here: they are
// on their way as messages.
func (g *groupActor) catchUp(ctx actor.Context) {
	s := g.d.sub
	if s == nil || g.clock == 0 {
		return
	}
	wake := s.wakeAt.Load()
	if wake == 0 {
		return
	}
	if to := min(s.ticker.now.Load(), wake-1); to > g.clock {
		n := to - g.clock
		g.clock = to
		g.tick(ctx, n)
		g.wakeIfBusy()
	}
}

func (g *groupActor) tick(ctx actor.Context, n uint64) {
	for range n {
		g.ticks++
		if g.rn == nil {
			continue
		}
		if !g.quiet {
			g.rn.Tick()
		}
		if g.foundingUntil != 0 {
			g.founding()
		}
		g.expireWaiters(ctx)
		if !g.quiet {
			g.publishIfChanged()
		}
		if g.ext != nil {
			g.ext.Tick(g.handle, ctx)
		}
	}
}

// noteLeaderContact records that stepping m restarted the election timer:
// raft does so for every append, heartbeat or snapshot from the leader of
// the current term, and the node is then that leader's follower.
func (g *groupActor) noteLeaderContact(m *pb.Message) {
	switch m.GetType() {
	case pb.MsgApp, pb.MsgHeartbeat, pb.MsgSnap:
	default:
		return
	}
	b := g.rn.BasicStatus()
	if b.RaftState == raft.StateFollower && b.Lead == m.GetFrom() && b.GetTerm() == m.GetTerm() {
		g.contactAt, g.contactLead, g.contactTerm = g.clock, b.Lead, b.GetTerm()
	}
}

// sleepIfIdle tells the Ticker, after each message, up to which tick the
// group may sleep: ElectionTicks after the last contact with its leader if
// it is still that leader's follower and nothing else needs ticks; not at
// all otherwise.
func (g *groupActor) sleepIfIdle() {
	s := g.d.sub
	if s == nil || g.clock == 0 {
		return
	}
	var wake uint64
	switch {
	case g.quiet:
		wake = g.quietWake()
	case g.ticksCanWait():
		wake = g.contactAt + uint64(g.d.cfg.ElectionTicks)
	}
	if wake <= g.clock+1 {
		wake = 0 // the next tick is wanted anyway
	}
	if s.wakeAt.Load() != wake {
		s.wakeAt.Store(wake)
	}
}

func (g *groupActor) ticksCanWait() bool {
	if g.rn == nil || g.contactLead == 0 || len(g.waiters) > 0 || len(g.batch) > 0 {
		return false
	}
	if g.ext != nil {
		ts, ok := g.ext.(TickSleeper)
		if !ok || !ts.TicksCanWait() {
			return false
		}
	}
	b := g.rn.BasicStatus()
	return b.RaftState == raft.StateFollower && b.Lead == g.contactLead && b.GetTerm() == g.contactTerm
}
