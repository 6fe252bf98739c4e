package raftactor

import (
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// Quiet groups (docs/decisions.md, "Idle raft groups go quiet").
//
// An idle leader still ticks and heartbeats its followers every
// HeartbeatTicks, and a broker's idle cost is its leaders. So, as
// CockroachDB quiesces its ranges, a leader whose group has nothing in
// flight (every replica matches its log end, which is committed and
// applied, and no proposal, Persist or transfer is pending) sends each
// follower a last heartbeat marked quiet and stops ticking raft. A
// follower that steps such a heartbeat from its leader and then knows the
// commit it carries stops ticking raft too. Raft then sees no tick at all
// in either: its election timer and heartbeat timer stand still.
//
// A quiet group wakes, and ticks raft again from the next tick on, with
// none of the slept ticks counted (a follower then waits its own
// randomized election timeout, so followers woken together do not all
// campaign at once):
//   - on any raft message but the ones a quiet group expects (a quiet
//     follower its leader's quiet heartbeats, a quiet leader the answers
//     to them), on a proposal or anything else that leaves raft with work
//     (HasReady), and on Campaign, TransferLeader, StepDown,
//     ProposeConfChange, Unreachable and SnapshotStatus;
//   - when the transport loses a peer the group depends on (Ticker.
//     WakePeer): a follower its leader's broker, a leader any of its
//     followers' brokers. A leader cut off from its followers thus ticks
//     again, and CheckQuorum steps it down as before.
//   - as a last resort, for what the transport cannot see (a replica's
//     actor that stops or hangs while its broker lives, raft messages
//     lost on a link that stays up): a quiet leader sends its quiet
//     heartbeat again every quietRenewTicks and wakes if a follower it
//     went quiet with did not answer it within an election timeout; a
//     quiet follower wakes when none came for twice quietRenewTicks.
//
// Raft's RecentActive, which the leader's ISR reads, is cleared only by
// CheckQuorum, at ticks: while the group is quiet it holds what raft saw
// before. So a leader that wakes stays awake until CheckQuorum has looked
// (quietHeldUntil), and goes quiet again only with every follower active
// by then: woken by a deaf follower's pre-votes, it would otherwise go
// quiet again at the next tick and count that follower in its ISR.
// Only groups whose Config.Quiet is set and whose Extension is a Quiescer
// go quiet, and only with peers that Config.Quiet accepts: a peer whose
// transport would not wake this broker's groups when it is lost, or that
// does not understand the mark (a broker of an earlier version steps a
// marked heartbeat as an ordinary one, and would campaign an election
// timeout later), keeps its groups awake.
//
// The Extension's ticks are separate: while raft is quiet, the group still
// calls Extension.Tick once for every tick, but late, in a row, as often
// as the Quiescer's QuietTicks allows (a partition with a long poll
// waiting wants every tick; an idle one only its retention checks).

// Quiescer is an Extension whose group may go quiet.
type Quiescer interface {
	// CanQuiesce reports, on the leader, whether the Extension needs
	// nothing from raft for now: nothing of its own in flight, no periodic
	// duty that proposes (a preferred-leader transfer due, a reassignment).
	CanQuiesce(h *Handle) bool
	// QuietTicks returns how many ticks the Extension's Tick may be put
	// off while its group is quiet: it is then called once for each tick
	// slept through, in a row. 0 asks for every tick, math.MaxUint64 for
	// none until the group wakes.
	QuietTicks() uint64
}

// wake is what the Ticker sends a quiet group whose peer was lost.
type wake struct{}

// isQuietHeartbeat reports whether m is a leader's last heartbeat before
// it goes quiet: a MsgHeartbeat with Reject set, which raft never sends
// (raft reads only the Term and Commit of a heartbeat, so a receiver
// that knows nothing of quiet groups steps it as an ordinary one).
func isQuietHeartbeat(m *pb.Message) bool {
	return m.GetType() == pb.MsgHeartbeat && m.GetReject()
}

// quiescer returns the group's Quiescer, nil if it never goes quiet.
func (g *groupActor) quiescer() Quiescer {
	if g.d.cfg.Quiet == nil || g.d.sub == nil {
		return nil
	}
	q, _ := g.ext.(Quiescer)
	return q
}

// maybeQuiesce puts a leader's group to sleep if nothing is in flight, after
// telling its followers, which go quiet once they know what it committed.
func (g *groupActor) maybeQuiesce(ctx actor.Context) {
	q := g.quiescer()
	if q == nil || g.quiet || g.clock < g.quietHeldUntil || g.rn == nil || g.halted || g.campaignIfAlone || len(g.waiters) > 0 || len(g.batch) > 0 ||
		len(g.d.pending) > 0 || g.flushing || g.checkpointWanted || g.rn.HasReady() {
		return
	}
	st := g.rn.BasicStatus()
	commit := st.HardState.GetCommit()
	if st.RaftState != raft.StateLeader || st.LeadTransferee != 0 || st.Applied != commit ||
		len(g.d.confState.GetVotersOutgoing()) > 0 {
		return
	}
	if last, _ := g.d.ms.LastIndex(); last != commit {
		return
	}
	self, ok, n := g.d.cfg.NodeID, true, 0
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id == self {
			ok = ok && pr.Match == commit
			return
		}
		ok = ok && pr.Match == commit && pr.State == tracker.StateReplicate && pr.RecentActive && g.d.cfg.Quiet(id)
		n++
	})
	if !ok || !q.CanQuiesce(g.handle) {
		return
	}
	peers := make([]uint64, 0, n)
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, _ tracker.Progress) {
		if id != self {
			peers = append(peers, id)
		}
	})
	g.sendQuietHeartbeats(ctx, peers)
	g.quiesce(peers)
}

// sendQuietHeartbeats sends each of peers the leader's quiet heartbeat.
func (g *groupActor) sendQuietHeartbeats(ctx actor.Context, peers []uint64) {
	st := g.rn.BasicStatus()
	self, term, commit := g.d.cfg.NodeID, st.GetTerm(), st.HardState.GetCommit()
	msgs := make([]*pb.Message, len(peers))
	for i, id := range peers {
		msgs[i] = &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(self), To: new(id), Term: new(term), Commit: new(commit), Reject: new(true)}
	}
	g.send(ctx, msgs)
	g.quietAt, g.quietAcks = g.clock, g.quietAcks[:0]
}

// allAnswered reports whether every follower a quiet leader went quiet
// with answered its last quiet heartbeat.
func (g *groupActor) allAnswered() bool {
	for _, id := range g.quietPeers {
		if !slices.Contains(g.quietAcks, id) {
			return false
		}
	}
	return true
}

// quietRenewTicks is how often, in election timeouts, a quiet leader sends
// its quiet heartbeat again (10: 5 s at the default 50 ms ticks and 10
// ticks an election): a few messages per group every few seconds instead
// of several a second, and a bound on how long a failure the transport
// cannot see leaves a group without a leader.
const quietRenewElections = 10

func (g *groupActor) quietRenewTicks() uint64 {
	return quietRenewElections * g.electionTicks()
}

// renewQuiet runs at each tick of a quiet group: a leader wakes once an
// election timeout passed since its last quiet heartbeat without an answer
// from every follower (CheckQuorum and the ISR then judge, as if it had
// never slept), and sends it again once quietRenewTicks passed; a follower
// wakes once twice that passed without one.
func (g *groupActor) renewQuiet(ctx actor.Context) {
	if !g.quiet || g.rn == nil {
		return
	}
	if g.d.sub.quiet.Load() == nil {
		g.unquiesce() // the Ticker woke it; its wake is on the way
		return
	}
	renew := g.quietRenewTicks()
	if g.rn.BasicStatus().RaftState != raft.StateLeader {
		if g.clock >= g.quietAt+2*renew {
			g.unquiesce()
		}
		return
	}
	if g.clock >= g.quietAt+g.electionTicks() && !g.allAnswered() {
		g.unquiesce()
		return
	}
	if g.clock >= g.quietAt+renew {
		g.sendQuietHeartbeats(ctx, g.quietPeers)
	}
}

func (g *groupActor) electionTicks() uint64 { return uint64(max(g.d.cfg.ElectionTicks, 1)) }

// noteQuietAcks records, on a quiet leader, the followers that answered.
func (g *groupActor) noteQuietAcks(msgs []*pb.Message) {
	if !g.quiet {
		return
	}
	for _, m := range msgs {
		if m.GetType() == pb.MsgHeartbeatResp && !slices.Contains(g.quietAcks, m.GetFrom()) {
			g.quietAcks = append(g.quietAcks, m.GetFrom())
		}
	}
}

// maybeFollowQuietly puts a follower's group to sleep after it stepped its
// leader's quiet heartbeat m, if it then knows everything m says.
func (g *groupActor) maybeFollowQuietly(m *pb.Message) {
	if g.quiescer() == nil || g.rn == nil || len(g.waiters) > 0 || len(g.batch) > 0 {
		return
	}
	st := g.rn.BasicStatus()
	if st.RaftState != raft.StateFollower || st.Lead != m.GetFrom() || st.GetTerm() != m.GetTerm() ||
		st.HardState.GetCommit() != m.GetCommit() || !g.d.cfg.Quiet(st.Lead) {
		return
	}
	g.quietAt = g.clock
	if g.quiet {
		return // a quiet leader's renewal
	}
	g.quiesce([]uint64{st.Lead})
}

// quiesce stops ticking raft until the group wakes, by a message or by the
// loss of one of peers. A peer lost before the Ticker could know whom to
// wake for it is found here, by looking again.
//
// The Ticker and the transport (netactor.Liveness) rely on the order here:
// the group publishes its peers before it asks Config.Quiet about them
// again, so a peer lost while it went quiet is either seen here or
// finds the group among the Ticker's quiet ones.
func (g *groupActor) quiesce(peers []uint64) {
	g.quiet, g.quietPeers = true, peers
	g.d.sub.quiet.Store(&peers)
	for _, id := range peers {
		if !g.d.cfg.Quiet(id) {
			g.unquiesce()
			return
		}
	}
	g.log.Debug().Uints64("peers", peers).Msg("raft group quiet")
	g.publish()
}

// unquiesce ticks raft again from the next tick on: the ticks slept through
// were counted for the Extension only (catchUp runs first), so raft's
// timers go on from where they stood. A leader stays awake for an
// election timeout of ticks, within which CheckQuorum clears the
// RecentActive of its followers that no longer answer.
func (g *groupActor) unquiesce() {
	if !g.quiet {
		return
	}
	g.quiet, g.quietPeers = false, nil
	g.quietHeldUntil = g.clock + g.electionTicks()
	g.d.sub.quiet.Store(nil)
	g.log.Debug().Msg("raft group awake")
	g.publish()
}

// wakesOnStep reports whether stepping msgs ends a quiet group's sleep.
func (g *groupActor) wakesOnStep(msgs []*pb.Message) bool {
	leader := g.rn != nil && g.rn.BasicStatus().RaftState == raft.StateLeader
	for _, m := range msgs {
		switch {
		case leader && m.GetType() == pb.MsgHeartbeatResp:
		case !leader && isQuietHeartbeat(m):
		default:
			return true
		}
	}
	return false
}

// quietWake is the tick a quiet group asks to be woken at: for its
// Extension's sake (0: every tick), or for renewQuiet.
func (g *groupActor) quietWake() uint64 {
	q := g.quiescer()
	if q == nil {
		return 0
	}
	renew := g.quietAt + g.quietRenewTicks()
	switch {
	case g.rn == nil || g.rn.BasicStatus().RaftState != raft.StateLeader:
		renew += g.quietRenewTicks()
	case !g.allAnswered():
		renew = g.quietAt + g.electionTicks()
	}
	switch t := q.QuietTicks(); {
	case t == 0:
		return 0
	case renew <= g.clock || t >= renew-g.clock:
		return renew
	default:
		return g.clock + t
	}
}

// wakeIfBusy wakes a quiet group whose Extension gave raft work (a
// produce, a retention move), or, on a leader, no longer lets it sleep (a
// replica left its ISR, a reassignment began).
func (g *groupActor) wakeIfBusy() {
	if !g.quiet || g.rn == nil {
		return
	}
	if g.rn.HasReady() {
		g.unquiesce()
		return
	}
	if q := g.quiescer(); q != nil && g.rn.BasicStatus().RaftState == raft.StateLeader && !q.CanQuiesce(g.handle) {
		g.unquiesce()
	}
}

// wakeFollowers sends a leader's followers an ordinary heartbeat as its
// raft node goes (halted, stopped, restarted): quiet followers would
// otherwise wait for a leader that no longer heartbeats, and its broker,
// alive, is not lost to their transport. Awake, they elect a new leader
// an election timeout later, as they would have without quiet groups.
func (g *groupActor) wakeFollowers(ctx actor.Context) {
	if g.rn == nil || g.d.cfg.Quiet == nil {
		return
	}
	st := g.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		return
	}
	self, term, commit := g.d.cfg.NodeID, st.GetTerm(), st.HardState.GetCommit()
	var msgs []*pb.Message
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id != self {
			msgs = append(msgs, &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(self), To: new(id), Term: new(term), Commit: new(min(pr.Match, commit))})
		}
	})
	g.send(ctx, msgs)
}
