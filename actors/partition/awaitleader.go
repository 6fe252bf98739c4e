package partition

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/flotilla/flotilla/raftactor"
)

// Answering while the leadership changes hands.
//
// A replica that cannot serve a produce request answers
// NOT_LEADER_OR_FOLLOWER, and the Kafka layer adds the leader this broker
// knows (KIP-951's CurrentLeader and its epoch), which moves a client to
// it at once. While the leadership changes hands the replica has no one to
// name: its leader is handing it over (a clean stop, or the preferred
// replica taking it back), and raft drops proposals until the transferee
// has won; the old leader has stepped down and not yet heard from its
// successor; or a new leader has not yet applied an entry of its own term
// (the readiness barrier). An answer without a hint leaves a client to its
// next metadata refresh, up to kgo's MetadataMinAge (5 s) later. Kafka
// never answers so: its old leader learns the new leader and epoch from
// the metadata log in the same step that ends its leadership.
//
// So a replica in such a change holds the request, and the answers to
// what it had in flight, until it leads and is ready again (it then serves
// the request) or knows the new leader (it answers, and the hint names
// it), for an election timeout at most: raft gives up a transfer after
// one. Hinting the transferee at once would have to name an epoch that no
// one has won yet: kgo moves a partition only to a newer epoch than it
// knows, and one that the transfer then did not produce would leave the
// client expecting an epoch the real leader never reaches.

// awaiting is a produce request, or the answer to one, that waits for the
// partition's leadership to settle.
type awaiting struct {
	produce  *Produce     // served or answered once it has settled
	done     *ProduceDone // or this is sent to replyTo then
	replyTo  *actor.PID
	deadline uint64 // the tick from which it goes as it is
}

// changing reports whether this replica cannot serve a produce request now
// and will soon be able to, or to name who can: it leads and hands its
// leadership over, or has not yet applied an entry of its term; or it
// knows no leader (an election is under way, often the one its own
// hand-over started).
func (m *Machine) changing(h *raftactor.Handle) bool {
	switch {
	case !h.Running():
		return false
	case h.IsLeader():
		return !m.ready || h.Term() != m.readyTerm || h.Transferring()
	}
	return h.Leader() == 0
}

// awaitLeader holds a until the leadership settles or an election timeout
// passes.
func (m *Machine) awaitLeader(h *raftactor.Handle, a awaiting) {
	a.deadline = m.ticks + uint64(h.ElectionTicks())
	m.awaiting = append(m.awaiting, a)
}

// notLeader answers w NOT_LEADER_OR_FOLLOWER, once the new leader is
// known if the leadership is changing.
func (m *Machine) notLeader(h *raftactor.Handle, ctx actor.Context, w waiter) {
	done := &ProduceDone{Ref: w.ref, BaseOffset: -1, LogAppendTime: -1, LogStartOffset: m.log.LogStart(), Err: kerr.NotLeaderForPartition}
	if m.changing(h) {
		m.awaitLeader(h, awaiting{done: done, replyTo: w.replyTo})
		return
	}
	ctx.Send(w.replyTo, done)
}

// settleAwaiting serves or answers, in the order they came, what waits for
// the leadership once it has settled, and whatever has waited an election
// timeout as things are. Called wherever the leadership may have moved:
// LeaderChanged, Applied (a new leader gets ready), Tick (raft gave up a
// transfer; deadlines), and before a new request, which must not pass
// those held before it (an idempotent producer's sequence).
func (m *Machine) settleAwaiting(h *raftactor.Handle, ctx actor.Context) {
	if len(m.awaiting) == 0 {
		return
	}
	changing := m.changing(h)
	all := m.awaiting
	m.awaiting = nil
	for _, a := range all {
		switch {
		case changing && m.ticks < a.deadline:
			m.awaiting = append(m.awaiting, a)
		case a.produce != nil:
			m.produce(h, ctx, a.produce, false)
		default:
			ctx.Send(a.replyTo, a.done)
		}
	}
}
