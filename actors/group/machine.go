package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// Settings are the coordinator's Kafka group settings.
type Settings struct {
	// MinSessionTimeout and MaxSessionTimeout bound a member's session
	// timeout (group.min/max.session.timeout.ms).
	MinSessionTimeout, MaxSessionTimeout time.Duration
	// InitialRebalanceDelay is group.initial.rebalance.delay.ms: the first
	// rebalance of an empty group waits this long (again for every member
	// that joins meanwhile, up to the rebalance timeout) so that a group
	// starting up settles in one rebalance.
	InitialRebalanceDelay time.Duration
	// OffsetsRetention is offsets.retention.minutes: how long the offsets
	// of a group that has no members are kept, and those of topics a
	// stable consumer group no longer subscribes to after their commit
	// (0: forever).
	OffsetsRetention time.Duration
}

// MachineOptions describe one offsets-topic partition replica.
type MachineOptions struct {
	Partition int32
	// Replicas are the partition's replicas, the preferred leader first:
	// coordinators spread over the brokers as the assignment does. During
	// a reassignment they are the target followed by the replicas being
	// removed; partition.SetAssignment changes them.
	Replicas []uint64
	Adding   []uint64
	Removing []uint64
	// Group is the partition's raft group id, and Controller the local
	// controller actor, told when a reassignment reached its target (nil:
	// nobody is).
	Group      uint64
	Controller *actor.PID
	Tick       time.Duration // one raft tick: the coordinator keeps time in ticks
	Settings   Settings
	// Topics tells how many partitions a topic has (0: no such topic);
	// offsets are committed only for partitions that exist.
	Topics func(name string) int32
	// Now is the leader's clock, read only at propose time (commit
	// timestamps), never at apply.
	Now func() time.Time
	// ReplicaLagTicks is replica.lag.time.max.ms in ticks: a follower
	// that has not caught up with the leader for this long leaves the
	// ISR (raftactor.InSyncTracker), as a partition's does. 0: 200.
	ReplicaLagTicks uint64
	// MaxEntryBytes is the largest entry the raft transport carries
	// (partition.RaftSettings.MaxEntryBytes; 0: no limit). A larger write
	// is refused: proposed, it would never replicate, and every later
	// write of the partition would wait behind it.
	MaxEntryBytes int
	// Announce tells this broker's board of leaderships and every peer
	// at once that this replica has begun to coordinate
	// (partition.Announcer; nil: only the manager's periodic broadcast
	// tells them), so that FindCoordinator on any broker names it.
	Announce func(ctx actor.SenderContext, infos []netactor.LeaderInfo)
	Log      zerolog.Logger
}

// Machine is the state machine of one offsets-topic partition: on every
// replica it materialises, at apply, the groups whose id hashes to the
// partition (their last stored membership and their committed offsets);
// on the leader it is also their coordinator, running the membership
// protocol in memory and writing what must survive a coordinator move.
// It is a raftactor.Extension: everything runs in the group's actor.
type Machine struct {
	o     MachineOptions
	store store

	ticks uint64
	// Leadership: ready once this leader applied an entry of its own term,
	// so its store holds everything committed before.
	term            uint64
	ready           bool
	lastAppliedTerm uint64

	groups  map[string]*group // the leader's live groups; nil elsewhere
	seq     uint64
	waiting map[uint64]*proposal
	// committing counts the commits proposed and not yet answered, by
	// group and partition: retention leaves those offsets alone, since a
	// tombstone queued behind a commit would delete what it wrote.
	committing map[string]map[TopicPartition]int
	applied    []*proposal // completed by Apply, answered by Applied

	leadership atomic.Pointer[Leadership]
	// h is the raft handle of the hook running now: every hook sets it,
	// and nothing uses it outside one.
	h *raftactor.Handle

	// The assignment, and on the leader the reconciliation of the group's
	// membership with it (partition.Membership).
	replicas, adding, removing []uint64
	members                    *partition.Membership
	// inSync keeps the leader's ISR by Kafka's time rule; confChanged
	// has it looked at again once the entries being applied are
	// (ApplyConfChange).
	inSync      raftactor.InSyncTracker
	confChanged bool

	// viewers are the ViewGroups waiting for the one view that answers
	// them all (viewNow).
	viewers []*ViewGroups
}

// viewNow has the Machine answer every ViewGroups waiting. Sent to itself
// by the first of them, it comes after those already in the mailbox: the
// requests that came while it built the last view share the next.
type viewNow struct{}

// proposal is a write of the leader waiting to be applied.
type proposal struct {
	seq      uint64
	deadline uint64
	done     func(ctx actor.Context, err error)
	err      error // what applying it could not read (nil: all of it)
}

// errNotCoordinator fails a write whose outcome this node will not learn.
var errNotCoordinator = errors.New("not the coordinator any more")

// writeTimeout bounds how long a write waits to be applied before its
// requester is told to retry (COORDINATOR_NOT_AVAILABLE, as Kafka answers a
// timed-out offsets write).
const writeTimeout = 10 * time.Second

// answerSlack is how much longer than its own deadlines a coordinator may
// take to answer: it keeps time in ticks, which run late on a busy broker,
// and answers from its mailbox.
const answerSlack = 5 * time.Second

// DefaultRebalanceTimeout is the rebalance timeout AnswerWithin is given
// for a SyncGroup whose member's JoinGroup its connection did not relay:
// the Java consumer's default (max.poll.interval.ms).
const DefaultRebalanceTimeout = 5 * time.Minute

// AnswerWithin bounds how long a running coordinator takes to answer a
// Call with req: a JoinGroup waits for its rebalance (its rebalance
// timeout) and then for one write at most, a SyncGroup for its leader's
// assignment (within rebalance, the rebalance timeout of its generation,
// which the request does not carry) and its write, anything else for one
// write at most. A Call not answered by then was lost with the replica
// actor it went to (stopped or died with it in its mailbox): the
// connection answers NOT_COORDINATOR itself, and the client looks for the
// coordinator again.
func AnswerWithin(req any, rebalance time.Duration) time.Duration {
	d := writeTimeout + answerSlack
	switch req := req.(type) {
	case *kmsg.JoinGroupRequest:
		ms := req.RebalanceTimeoutMillis
		if req.Version == 0 {
			ms = req.SessionTimeoutMillis // v0 rebalances within the session timeout
		}
		d += time.Duration(max(ms, 0)) * time.Millisecond
	case *kmsg.SyncGroupRequest:
		d += rebalance
	}
	return d
}

// NewMachine returns the state machine of an empty offsets-topic partition.
func NewMachine(o MachineOptions) *Machine {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReplicaLagTicks == 0 {
		o.ReplicaLagTicks = defaultReplicaLagTicks
	}
	m := &Machine{o: o, store: store{}, waiting: map[uint64]*proposal{}, committing: map[string]map[TopicPartition]int{}}
	m.replicas, m.adding, m.removing = o.Replicas, o.Adding, o.Removing
	m.members = partition.NewMembership(o.Group, o.Controller, o.Log)
	m.leadership.Store(&Leadership{})
	return m
}

// Leadership is whether this replica coordinates its partition's groups:
// it leads and is ready, in Term, with the replicas in ISR (those caught
// up with it within replica.lag.time.max.ms, as a partition's ISR).
type Leadership struct {
	Leader bool
	Term   uint64
	ISR    []uint64
}

// Leadership returns this replica's leadership as last published.
func (m *Machine) Leadership() Leadership { return *m.leadership.Load() }

// isrEveryTicks paces the ISR bookkeeping (250 ms at 50 ms ticks).
const isrEveryTicks = 5

// defaultReplicaLagTicks is Kafka's replica.lag.time.max.ms in ticks when
// none is configured (10 s at 50 ms ticks, the broker's default).
const defaultReplicaLagTicks = 200

// updateLeadership samples the ISR on a ready leader and republishes the
// leadership when it changed.
func (m *Machine) updateLeadership(h *raftactor.Handle) {
	l := Leadership{Leader: m.ready}
	if m.ready {
		l.Term = m.term
		l.ISR = m.inSync.Sample(h, m.ticks, m.replicas, m.o.ReplicaLagTicks)
	}
	if cur := m.leadership.Load(); cur.Leader != l.Leader || cur.Term != l.Term || !slices.Equal(cur.ISR, l.ISR) {
		m.leadership.Store(&l)
	}
}

// ticksOf converts a duration into ticks, at least one.
func (m *Machine) ticksOf(d time.Duration) uint64 {
	if d <= 0 {
		return 1
	}
	return max(1, uint64((d+m.o.Tick-1)/m.o.Tick))
}

func (m *Machine) msTicks(ms int32) uint64 { return m.ticksOf(time.Duration(ms) * time.Millisecond) }

// Apply implements raftactor.StateMachine. An entry it cannot read all of
// is applied as far as it can be and logged, never fatal: every replica
// applies the same entries with the same code, so they skip the same
// records and stay alike, and a log that a broken write got into keeps
// its partition serving (a panic here would repeat at every replay, on
// every replica, for good).
func (m *Machine) Apply(index, term uint64, data []byte) {
	m.lastAppliedTerm = term
	if len(data) == 0 {
		return // the leader's empty entry of a new term
	}
	var err error
	if len(data) < seqBytes {
		err = fmt.Errorf("%w: %d bytes, shorter than an entry's sequence", errCorrupt, len(data))
	} else {
		err = m.store.applyRecords(data[seqBytes:])
	}
	if err != nil {
		m.o.Log.Error().Err(err).Uint64("index", index).Uint64("term", term).Msg("offsets-topic entry applied only in part")
	}
	if term == m.term && len(data) >= seqBytes {
		seq := binary.BigEndian.Uint64(data)
		if p := m.waiting[seq]; p != nil {
			delete(m.waiting, seq)
			p.err = err
			m.applied = append(m.applied, p)
		}
	}
}

// Snapshot implements raftactor.StateMachine: every group as records.
func (m *Machine) Snapshot() ([]byte, error) { return m.store.snapshot() }

// Restore implements raftactor.StateMachine.
func (m *Machine) Restore(snap *pb.Snapshot) error {
	s := store{}
	if err := s.applyRecords(snap.GetData()); errors.Is(err, errCorrupt) {
		return fmt.Errorf("offsets partition %d: restore snapshot at %d: %w", m.o.Partition, snap.GetMetadata().GetIndex(), err)
	} else if err != nil {
		// As Apply: the records that decode are the state every replica
		// restoring this snapshot has.
		m.o.Log.Error().Err(err).Uint64("index", snap.GetMetadata().GetIndex()).Msg("offsets-topic snapshot restored only in part")
	}
	m.store = s
	// Not serving until this node leads again; what the live groups had
	// waiting is answered by resign when the term moves on.
	m.ready = false
	return nil
}

// Receive implements raftactor.Extension.
func (m *Machine) Receive(h *raftactor.Handle, ctx actor.Context, msg any) {
	m.h = h
	switch c := msg.(type) {
	case *Call:
		if code := m.readiness(h); code != 0 {
			ctx.Send(c.ReplyTo, &Answer{Ref: c.Ref, Resp: ErrorResponse(c.Group, c.Req, code)})
			return
		}
		m.serve(ctx, c)
	case *partition.SetAssignment:
		m.replicas, m.adding, m.removing = c.Replicas, c.Adding, c.Removing
	case *topicsDeleted:
		if m.readiness(h) == 0 {
			m.deleteTopicOffsets(ctx, c.names)
		}
	case *List:
		if code := m.readiness(h); code != 0 {
			ctx.Send(c.ReplyTo, &Listed{Ref: c.Ref, ErrorCode: code})
			return
		}
		ctx.Send(c.ReplyTo, &Listed{Ref: c.Ref, Groups: m.list()})
	case *ViewGroups:
		m.viewers = append(m.viewers, c)
		if len(m.viewers) == 1 {
			ctx.Send(ctx.Self(), &viewNow{})
		}
	case *viewNow:
		m.answerViews(h)
	}
}

// answerViews answers the ViewGroups waiting with one view, built on the
// actor (it reads the live groups) and so only when one of them is still
// awaited: a view of a large partition takes a while, which the partition's
// raft work waits for.
func (m *Machine) answerViews(h *raftactor.Handle) {
	now := time.Now()
	waiting := slices.DeleteFunc(m.viewers, func(v *ViewGroups) bool {
		return !v.Deadline.IsZero() && !now.Before(v.Deadline)
	})
	m.viewers = nil
	if len(waiting) == 0 {
		return
	}
	view := []GroupInfo{}
	if m.readiness(h) == 0 {
		view = m.view()
	}
	for _, v := range waiting {
		select {
		case v.Reply <- view:
		default: // a full channel: the asker provided too little room
		}
	}
}

// readiness is the error for requests this replica cannot serve now.
func (m *Machine) readiness(h *raftactor.Handle) int16 {
	switch {
	case !h.IsLeader():
		return kerr.NotCoordinator.Code
	case !m.ready:
		return kerr.CoordinatorLoadInProgress.Code
	}
	return 0
}

// Persisted implements raftactor.Extension: nothing answers before apply.
func (m *Machine) Persisted(*raftactor.Handle, actor.Context, []*pb.Entry) {}

var _ raftactor.ConfChangeApplier = (*Machine)(nil)

// ApplyConfChange implements raftactor.ConfChangeApplier: a replica the
// group's membership lost leaves the leader's ISR as soon as the entries
// are applied, as a partition's does (partition.Machine.Applied), before
// the controller completes its reassignment.
func (m *Machine) ApplyConfChange(uint64, uint64, *pb.ConfChangeV2, *pb.ConfState) {
	m.confChanged = true
}

// Applied implements raftactor.Extension: writes that were applied are
// answered, and a new leader becomes ready.
func (m *Machine) Applied(h *raftactor.Handle, ctx actor.Context) {
	m.h = h
	if m.confChanged {
		m.confChanged = false
		m.updateLeadership(h)
	}
	for _, p := range m.applied {
		p.done(ctx, p.err)
	}
	m.applied = m.applied[:0]
	m.checkReady(h, ctx)
}

// checkReady makes a leader the coordinator of its groups once it has
// applied an entry of its own term: its store then holds every committed
// write, and the groups are loaded from it.
func (m *Machine) checkReady(h *raftactor.Handle, ctx actor.Context) {
	if m.ready || !h.IsLeader() || h.Term() != m.term || m.lastAppliedTerm != m.term {
		return
	}
	m.ready = true
	// Its first ISR is itself and the replicas that acknowledged the
	// entry of its term, as a partition leader's.
	m.inSync.Reset()
	m.load()
	m.updateLeadership(h)
	m.o.Log.Info().Uint64("term", m.term).Int("consumer_group_count", len(m.groups)).Msg("group coordinator ready")
	if m.o.Announce != nil {
		l := m.Leadership()
		m.o.Announce(ctx, []netactor.LeaderInfo{{Group: m.o.Group, Leader: h.NodeID(), Term: l.Term, ISR: l.ISR}})
	}
}

// LeaderChanged implements raftactor.Extension: a coordinator that loses
// its leadership (or sees a new term) fails everything it had waiting —
// clients find the new coordinator and retry.
func (m *Machine) LeaderChanged(h *raftactor.Handle, ctx actor.Context) {
	m.h = h
	term := h.Term()
	if !h.IsLeader() {
		term = 0
	}
	if term == m.term {
		return
	}
	if m.term != 0 {
		m.resign(ctx)
	}
	m.term = term
	m.checkReady(h, ctx)
	m.updateLeadership(h)
}

// resign fails every waiting request and write and drops the live groups.
func (m *Machine) resign(ctx actor.Context) {
	for _, p := range m.waiting {
		p.done(ctx, errNotCoordinator)
	}
	m.waiting = map[uint64]*proposal{}
	for _, p := range m.applied {
		p.done(ctx, errNotCoordinator)
	}
	m.applied = m.applied[:0]
	for _, g := range m.groups {
		for _, mb := range g.members {
			mb.fail(ctx, kerr.NotCoordinator.Code)
		}
	}
	m.groups = nil
	m.ready = false
	m.o.Log.Info().Uint64("term", m.term).Msg("group coordinator resigned")
}

// Tick implements raftactor.Extension: session, rebalance and write
// deadlines.
func (m *Machine) Tick(h *raftactor.Handle, ctx actor.Context) {
	m.h = h
	m.ticks++
	if !m.ready {
		return
	}
	for seq, p := range m.waiting {
		if m.ticks >= p.deadline {
			delete(m.waiting, seq)
			p.done(ctx, kerr.RequestTimedOut)
		}
	}
	for _, g := range m.groups {
		m.expire(ctx, g)
	}
	if m.ticks%isrEveryTicks == 0 {
		m.updateLeadership(h)
	}
	if m.ticks%expireEveryTicks == 0 {
		m.expireOffsets(ctx)
	}
	if m.ticks%partition.PreferredLeaderEveryTicks == 0 {
		partition.PreferLeader(h, m.replicas, m.o.Log)
	}
	m.members.Tick(h, ctx, m.replicas, m.adding, m.removing)
}

// propose writes the records in w; done runs once they are applied (err
// nil) or when their outcome is unknown to this node. A writer that
// refused a record (w.err) proposes nothing: done gets its error.
func (m *Machine) propose(ctx actor.Context, w *recordWriter, done func(ctx actor.Context, err error)) {
	if w.err != nil {
		done(ctx, w.err)
		return
	}
	if m.o.MaxEntryBytes > 0 && seqBytes+len(w.b) > m.o.MaxEntryBytes {
		done(ctx, fmt.Errorf("%w: %d bytes, the raft transport carries %d", errWriteTooLarge, seqBytes+len(w.b), m.o.MaxEntryBytes))
		return
	}
	m.seq++
	if err := m.h.ProposeRaw([][]byte{entry(m.seq, w)}); err != nil {
		done(ctx, err)
		return
	}
	m.waiting[m.seq] = &proposal{seq: m.seq, deadline: m.ticks + m.ticksOf(writeTimeout), done: done}
}

// errWriteTooLarge is a write larger than the raft transport carries.
var errWriteTooLarge = errors.New("group write too large")

// proposeAll proposes w's records in as many entries as the transport
// needs: tombstones, which need not be written together. done gets the
// first error, once every entry is answered.
func (m *Machine) proposeAll(ctx actor.Context, w *recordWriter, done func(ctx actor.Context, err error)) {
	if w.err != nil {
		done(ctx, w.err)
		return
	}
	parts := w.split(m.o.MaxEntryBytes - seqBytes)
	left := len(parts)
	var first error
	for _, part := range parts {
		m.propose(ctx, part, func(ctx actor.Context, err error) {
			if first == nil {
				first = err
			}
			if left--; left == 0 {
				done(ctx, first)
			}
		})
	}
}

// writeCode is the Kafka error for a failed write (Kafka maps a failed
// offsets-topic append the same way): for most, the client looks for the
// coordinator again and retries.
func writeCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errNotCoordinator):
		return kerr.NotCoordinator.Code
	case errors.Is(err, errWriteTooLarge):
		return kerr.UnknownServerError.Code // Kafka's answer; a retry would fail again
	case errors.Is(err, errStringTooLong):
		// The request carried what no record holds; Kafka does not even
		// read such a request (see actors/kafka's decodeRequest).
		return kerr.InvalidRequest.Code
	case errors.Is(err, errUnreadable):
		// Records this leader wrote did not read back: the broker's
		// fault, not the request's.
		return kerr.UnknownServerError.Code
	}
	return kerr.CoordinatorNotAvailable.Code
}
