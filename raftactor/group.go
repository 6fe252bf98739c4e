package raftactor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors/storage"
)

// ErrTimeout answers a proposal that was not applied within its deadline.
var ErrTimeout = errors.New("proposal timed out")

var errRawGroup = errors.New("this raft group takes no Propose messages: its state machine proposes its own entries")

// ErrNotReady answers a proposal that reached a group still recovering.
var ErrNotReady = errors.New("raft group not ready")

// Config describes one raft group hosted by this broker.
type Config struct {
	Group  uint64 // group id on the wire; 0 is the controller
	Name   string // "controller", "orders/3": actor name is raft/<Name>
	NodeID uint64
	// Bootstrap founds the group with Peers as its voters when its storage is
	// empty. A group that joins an existing cluster starts empty and waits to
	// be added by the leader.
	Bootstrap bool
	Peers     []uint64
	// Preferred is the voter meant to lead the group (a partition's
	// preferred replica, the first of its assignment; 0: none). When this
	// incarnation founds the group (Bootstrap, with nothing in storage),
	// the preferred voter campaigns as soon as raft lets it, once the
	// bootstrap conf changes are applied, instead of after an election
	// timeout, and the group starts on it: no election timeout without a
	// leader, and no transfer to it afterwards. The other founders start
	// their replicas when they apply the same controller entry, a little
	// earlier or later, and a vote request that reaches a broker before
	// the group exists there is dropped: so while it is a pre-candidate
	// it asks again every HeartbeatTicks until it has a leader or is
	// refused, and ignores the other founders' pre-votes while it founds,
	// which would split the vote (founding.go). Any
	// other start (a restart, a group recovered from disk, a replica
	// added to a running group) waits out an election timeout as raft
	// always does: the group may have a leader already.
	Preferred uint64

	ElectionTicks   int
	HeartbeatTicks  int
	MaxSizePerMsg   uint64
	MaxInflightMsgs int
	// MaxInflightBytes bounds the bytes of appends in flight to one
	// follower (raft's MaxInflightBytes; 0: only MaxInflightMsgs bounds
	// them). Without it a follower catching up is sent MaxInflightMsgs
	// appends of MaxSizePerMsg at once, more than a peer's send queue holds,
	// and the other groups' messages to that peer wait or are dropped.
	MaxInflightBytes          uint64
	MaxUncommittedBytes       uint64
	DisableProposalForwarding bool
	// SnapshotEntries and SnapshotBytes bound how many applied entries, and
	// how many bytes of them, pass between snapshots of the state machine
	// (0: no bound; with both 0, only when the storage asks).
	SnapshotEntries uint64
	SnapshotBytes   uint64
	// CatchUpEntries and CatchUpBytes bound the applied entries kept in
	// memory after a snapshot, so that a follower slightly behind is sent
	// appends rather than the snapshot (0 entries: the default, 1000; 0
	// bytes: no bound).
	CatchUpEntries uint64
	CatchUpBytes   uint64
	// ProposalTimeoutTicks bounds how long a proposer waits for its entry.
	ProposalTimeoutTicks int

	// RawEntries marks a group whose state machine is an Extension that
	// proposes its own entries: they carry no proposal key, and Propose
	// messages are refused.
	RawEntries bool

	Storage      *actor.PID
	Transport    Transport
	StateMachine StateMachine
	Recovered    *storage.GroupState // nil for a new group
	Board        *StatusBoard
	Observer     Observer // nil outside tests
	// Stopping reports whether a node announced that it is stopping (nil:
	// none is). Leadership is never handed to such a node: it would lead
	// only until it stopped, and the group would then wait out an election
	// timeout without a leader.
	Stopping func(id uint64) bool
	// Restarts returns how many times a node was seen to restart
	// (netactor.Liveness.Restarts; nil: never): its replica leaves the
	// ISR its leader keeps (InSyncTracker) until it has caught up again.
	Restarts func(id uint64) uint64
	// Reachable reports whether a frame from node id arrived lately
	// (netactor.Liveness.HeardWithin; nil: raft's RecentActive decides): a
	// reassignment removes the voters that are not first, and a reachable
	// one only while the voters left keep a reachable majority.
	Reachable func(id uint64) bool
	// Quiet reports whether node id's broker can follow a quiet group
	// (quiesce.go): it understands quiet heartbeats, and the transport
	// hears it and wakes this broker's quiet groups (Ticker.WakePeer) when
	// it no longer does (netactor.Liveness.Quiet). nil: the group never
	// goes quiet.
	Quiet func(id uint64) bool
	Log   zerolog.Logger
	// QuietStart logs the group's first start at debug: a partition's
	// manager logs the start of its replica as one event, so that a broker
	// with many partitions does not write several lines for each. A restart
	// after a panic is still logged at info.
	QuietStart bool
}

// durable is the part of a group that outlives an actor incarnation: the
// raft.Storage (which holds only persisted entries), the state machine and
// the Persists in flight. A restarted actor rebuilds its RawNode from it.
type durable struct {
	cfg          Config
	ms           *raft.MemoryStorage
	confState    *pb.ConfState
	applied      uint64
	appliedBytes uint64 // entry bytes applied since the last snapshot
	snapIndex    uint64
	incarnations uint64
	pending      []*inflight   // the Persists sent and not yet answered, oldest first
	persists     uint64        // Persists sent, ever: a rewrite is valid only if none went meanwhile
	keeper       LogKeeper     // nil unless the state machine is one
	deferred     int           // Persists in flight with deferKeep set
	sub          *subscription // the group's Ticker subscription, once a numbered Tick named it
	withheld     withholding   // the snapshots a tiered storage withheld
}

// NewProducer validates cfg, loads the recovered state into the group's
// raft.Storage and state machine, and returns the producer of the group's
// actor. Every incarnation of the actor shares that state.
func NewProducer(cfg Config) (actor.Producer, error) {
	if cfg.NodeID == 0 || cfg.Storage == nil || cfg.Transport == nil || cfg.StateMachine == nil || cfg.Board == nil {
		return nil, fmt.Errorf("raft group %s: incomplete config", cfg.Name)
	}
	if cfg.CatchUpEntries == 0 {
		cfg.CatchUpEntries = defaultCatchUpEntries
	}
	if cfg.ProposalTimeoutTicks <= 0 {
		cfg.ProposalTimeoutTicks = 10 * cfg.ElectionTicks
	}
	d := &durable{cfg: cfg, ms: raft.NewMemoryStorage(), confState: &pb.ConfState{}}
	// The state machine starts from the recovered snapshot, or from the
	// empty state when there is none: raft then replays every committed
	// entry after it. A state machine with state of its own on disk (a
	// partition's segments) goes back to that point here.
	rec := cfg.Recovered
	if rec == nil {
		rec = &storage.GroupState{}
	}
	snap := rec.Snapshot
	if snap == nil || raft.IsEmptySnap(snap) {
		snap = &pb.Snapshot{}
	}
	if err := d.restore(snap); err != nil {
		return nil, fmt.Errorf("raft group %s: %w", cfg.Name, err)
	}
	if !raft.IsEmptySnap(snap) {
		if err := d.ms.ApplySnapshot(snap); err != nil {
			return nil, fmt.Errorf("raft group %s: load snapshot: %w", cfg.Name, err)
		}
	}
	ents := rec.Entries
	if k, ok := cfg.StateMachine.(LogKeeper); ok {
		d.keeper = k
		var err error
		// The keeper logs the entries it drops.
		if ents, err = k.Recover(ents); err != nil {
			return nil, fmt.Errorf("raft group %s: recover kept entries: %w", cfg.Name, err)
		}
	}
	if err := d.ms.Append(ents); err != nil {
		return nil, fmt.Errorf("raft group %s: load entries: %w", cfg.Name, err)
	}
	if hs := rec.HardState; hs != nil {
		// Commit is written without fsync; never trust it past what is
		// durable, nor below what the snapshot already covers.
		last, _ := d.ms.LastIndex()
		commit := min(max(hs.GetCommit(), d.snapIndex), last)
		fixed := &pb.HardState{Term: new(hs.GetTerm()), Vote: new(hs.GetVote()), Commit: new(commit)}
		if err := d.ms.SetHardState(fixed); err != nil {
			return nil, fmt.Errorf("raft group %s: load hard state: %w", cfg.Name, err)
		}
	}
	ext, _ := cfg.StateMachine.(Extension)
	if cfg.RawEntries && ext == nil {
		return nil, fmt.Errorf("raft group %s: RawEntries needs a state machine that is an Extension", cfg.Name)
	}
	return func() actor.Actor {
		d.incarnations++
		g := &groupActor{d: d, incarnation: d.incarnations, log: cfg.Log, ext: ext}
		g.matched, _ = ext.(MatchObserver)
		g.handle = &Handle{g: g}
		return g
	}, nil
}

type waiter struct {
	id       uint64
	replyTo  *actor.PID
	deadline uint64 // in ticks
}

type groupActor struct {
	d           *durable
	ext         Extension     // nil unless the state machine is one
	matched     MatchObserver // nil unless ext is one
	handle      *Handle
	incarnation uint64
	rn          *raft.RawNode
	tiered      *tieredStorage // rn's storage, when the state machine is a ColdLog
	log         zerolog.Logger

	seq       uint64
	ticks     uint64
	nextKey   uint64
	waiters   map[uint64]waiter // proposal key → proposer
	batch     []*pb.Entry       // proposals held until this leader's term is durable
	batchKeys []uint64
	lastState raft.StateType
	// loggedState is the last role logged at info: follower or leader.
	loggedState raft.StateType
	lastTerm    uint64
	lastLead    uint64
	halted      bool

	// outgoing is the leader handing the group over and its term, from
	// when this replica learns of the transfer until it knows a leader
	// again or the tick outgoingUntil (outgoing.go).
	outgoing, outgoingTerm, outgoingUntil uint64

	// campaignIfAlone is set from start until the node has applied what is
	// committed, its bootstrap conf changes included: a sole voter has
	// nobody to wait for, and waiting out an election timeout would only
	// delay a single-broker cluster, or a founding preferred voter
	// (campaignFirst, founding.go).
	campaignIfAlone bool
	// foundingUntil is set on the preferred voter of a group this
	// incarnation founded, until its first election is over or that
	// tick; foundingAt is the tick of its first campaign (founding.go).
	foundingUntil, foundingAt uint64
	// checkpointWanted records a checkpoint request that arrived while a
	// snapshot from the leader was being written, or a flush was in flight.
	checkpointWanted bool
	flushing         bool // a Flusher's flush runs for a checkpoint
	// rewriteAbove is the Index of a CheckpointRequest that asked for a
	// rewrite, until the next forced checkpoint: the group's records in
	// the oldest WAL file reach it (rewrite).
	rewriteAbove uint64
	published    publishedKey
	publishedAt  uint64 // tick of the last publish

	// Sleeping through ticks (sleep.go).
	clock                    uint64 // the Ticker's count raft has been ticked up to; 0 before the first numbered Tick
	contactAt                uint64 // clock when the leader last restarted the election timer
	contactLead, contactTerm uint64 // that leader and its term
	// quiet is set while raft is not ticked (quiesce.go), and quietPeers
	// are then the peers it depends on; quietAt is the clock when it last
	// sent (a leader) or stepped (a follower) a quiet heartbeat, and
	// quietAcks, on a leader, the followers that answered since.
	quiet      bool
	quietPeers []uint64
	quietAt    uint64
	quietAcks  []uint64
	// quietHeldUntil keeps a woken leader awake until that tick
	// (unquiesce).
	quietHeldUntil uint64
}

// Receive is the group's mailbox loop.
func (g *groupActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started, *actor.Stopping, *actor.Restarting, *actor.Stopped, *actor.Terminated, *Tick:
	default:
		g.catchUp(ctx)
		if g.quiet && g.d.sub.quiet.Load() == nil {
			g.unquiesce() // the Ticker woke it: a peer it depends on was lost
		}
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		g.waiters = make(map[uint64]waiter)
		g.nextKey = rand.Uint64()
		if g.d.sub != nil {
			g.d.sub.wakeAt.Store(0) // this incarnation counts its ticks afresh
			g.d.sub.quiet.Store(nil)
		}
		if len(g.d.pending) == 0 {
			g.start(ctx)
		} else {
			g.log.Warn().Uint64("incarnation", g.incarnation).Int("persists", len(g.d.pending)).Msg("restarted with persists in flight; waiting for them")
		}
	case *actor.Stopping:
		g.d.cfg.Board.remove(g.d.cfg.Group)
		g.failWaiters(ctx, ErrNotReady)
		g.resign(ctx)
	case *actor.Restarting:
		// This incarnation's waiters and held proposals die with it.
		g.failWaiters(ctx, ErrNotReady)
		g.batch, g.batchKeys = nil, nil
		g.resign(ctx)
	case *actor.Stopped, *actor.Terminated:
		// System messages never reach the Extension.
	case *storage.Persisted:
		g.onPersisted(ctx, m)
	case *Tick:
		g.onTick(ctx, m)
	case *Step:
		if g.rn != nil {
			if g.quiet && g.wakesOnStep(m.Msgs) {
				g.unquiesce()
			}
			g.noteQuietAcks(m.Msgs)
			resp := false
			for _, msg := range m.Msgs {
				if g.foundingUntil != 0 && msg.GetType() == pb.MsgPreVote {
					continue // founding.go
				}
				g.noteTransfer(msg)
				if err := g.rn.Step(msg); err != nil {
					g.log.Debug().Err(err).Uint64("peer", msg.GetFrom()).Str("type", msg.GetType().String()).Msg("step")
					continue
				}
				resp = resp || msg.GetType() == pb.MsgAppResp
				g.noteLeaderContact(msg)
			}
			if resp && g.matched != nil {
				g.matched.Matched(g.handle, ctx)
			}
			if n := len(m.Msgs); n > 0 && isQuietHeartbeat(m.Msgs[n-1]) {
				last := m.Msgs[n-1]
				g.maybeFollowQuietly(last)
			}
		}
	case *Propose:
		g.unquiesce()
		if g.d.cfg.RawEntries {
			g.reply(ctx, m.ReplyTo, &Proposed{ID: m.ID, Err: errRawGroup})
			break
		}
		g.propose(ctx, m)
	case *ProposeConfChange:
		g.unquiesce()
		err := ErrNotReady
		if g.rn != nil && g.leaderTermDurable() {
			err = g.rn.ProposeConfChange(m.Change)
		}
		g.reply(ctx, m.ReplyTo, &Proposed{ID: m.ID, Err: err})
	case *Unreachable:
		g.unquiesce()
		if g.rn != nil {
			g.rn.ReportUnreachable(m.To)
		}
	case *SnapshotStatus:
		g.unquiesce()
		if g.rn != nil {
			st := raft.SnapshotFinish
			if m.Failed {
				st = raft.SnapshotFailure
			}
			g.rn.ReportSnapshot(m.To, st)
		}
	case *storage.CheckpointRequest:
		if m.Rewrite {
			g.rewriteAbove = m.Index
		}
		g.checkpoint(ctx, true)
	case *flushed:
		g.onFlushed(ctx, m)
	case *storage.Checkpointed:
		g.onCheckpointed(ctx, m)
	case *wake:
		// Handled above, before the Ticker's wake could be missed.
	case *Campaign:
		g.unquiesce()
		if g.rn != nil {
			_ = g.rn.Campaign()
		}
	case *TransferLeader:
		g.unquiesce()
		g.transferLeader(m.To)
	case *StepDown:
		g.unquiesce()
		g.stepDown(m.Alive)
	default:
		if g.ext != nil {
			g.ext.Receive(g.handle, ctx, m)
			g.wakeIfBusy()
		}
	}
	g.processReady(ctx)
	if _, ok := ctx.Message().(*Tick); ok {
		// A leader looks at each tick whether its group can go quiet,
		// after its heartbeats are out.
		g.maybeQuiesce(ctx)
	}
	g.sleepIfIdle()
}

func (g *groupActor) start(ctx actor.Context) {
	d, cfg := g.d, g.d.cfg
	if g.incarnation > 1 {
		// The previous incarnation died somewhere in its pipeline, perhaps
		// after applying entries that were never made durable. Take the state
		// machine back to the last snapshot and let raft replay from there:
		// no applied state may run ahead of the durable log.
		if err := g.resetToSnapshot(); err != nil {
			g.halt(ctx, err)
			return
		}
	}
	conf := func() *pb.ConfState { return d.confState }
	var st raft.Storage = &admittingStorage{MemoryStorage: d.ms, conf: conf}
	if cold, ok := cfg.StateMachine.(ColdLog); ok {
		g.tiered = &tieredStorage{MemoryStorage: d.ms, cold: cold, conf: conf, log: g.log, w: &d.withheld}
		st = g.tiered
	}
	rc := &raft.Config{
		ID:                        cfg.NodeID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   st,
		Applied:                   d.applied,
		MaxSizePerMsg:             cfg.MaxSizePerMsg,
		MaxInflightMsgs:           cfg.MaxInflightMsgs,
		MaxInflightBytes:          cfg.MaxInflightBytes,
		MaxUncommittedEntriesSize: cfg.MaxUncommittedBytes,
		CheckQuorum:               true,
		PreVote:                   true,
		DisableProposalForwarding: cfg.DisableProposalForwarding,
		AsyncStorageWrites:        true,
		Logger:                    NewLogger(g.log),
	}
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		g.halt(ctx, fmt.Errorf("new raw node: %w", err))
		return
	}
	g.rn = rn
	last, _ := d.ms.LastIndex()
	hs, _, _ := d.ms.InitialState()
	// An empty log and hard state mean no bootstrap ever became durable
	// (even if an earlier incarnation began one): found the group now.
	bootstrapped := false
	if cfg.Bootstrap && last == 0 && raft.IsEmptyHardState(hs) {
		peers := make([]raft.Peer, len(cfg.Peers))
		for i, id := range cfg.Peers {
			peers[i] = raft.Peer{ID: id}
		}
		if err := rn.Bootstrap(peers); err != nil {
			g.halt(ctx, fmt.Errorf("bootstrap: %w", err))
			return
		}
		bootstrapped = true
	}
	g.campaignIfAlone = true
	if bootstrapped {
		g.startFounding()
	}
	ev := g.log.Info()
	if cfg.QuietStart && g.incarnation == 1 {
		ev = g.log.Debug()
	}
	if bootstrapped {
		ev = ev.Uints64("voters", cfg.Peers)
	}
	ev.Bool("bootstrapped", bootstrapped).Uint64("incarnation", g.incarnation).Uint64("applied_index", d.applied).
		Uint64("last_index", last).Uint64("term", hs.GetTerm()).Uint64("vote", hs.GetVote()).Msg("raft group started")
	g.publish()
}

func (g *groupActor) resetToSnapshot() error {
	d := g.d
	snap, err := d.ms.Snapshot()
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if err := d.restore(snap); err != nil {
		return fmt.Errorf("after restart: %w", err)
	}
	g.log.Warn().Uint64("incarnation", g.incarnation).Uint64("snapshot_index", snap.GetMetadata().GetIndex()).Msg("state machine reset to last snapshot; replaying the log")
	return nil
}

// restore hands snap to the state machine and moves the applied and
// snapshot indexes to it: back to 0 for the empty snapshot, so that raft
// replays the whole log. The conf state comes from a non-empty snapshot
// only; raft replays the conf changes after it.
func (d *durable) restore(snap *pb.Snapshot) error {
	if err := d.cfg.StateMachine.Restore(snap); err != nil {
		return fmt.Errorf("restore snapshot %d: %w", snap.GetMetadata().GetIndex(), err)
	}
	md := snap.GetMetadata()
	d.applied, d.snapIndex = md.GetIndex(), md.GetIndex()
	if cs := md.GetConfState(); md.GetIndex() > 0 && cs != nil {
		d.confState = cs
	}
	return nil
}

// halt stops the group from taking part in raft: its durable state is no
// longer known, and answering anyone would risk acknowledging a lost write.
func (g *groupActor) halt(ctx actor.Context, err error) {
	g.halted = true
	g.log.Error().Err(err).Msg("raft group halted")
	g.failWaiters(ctx, ErrNotReady) // no proposal of its will be applied here
	g.resign(ctx)
	// The last status would go on showing a healthy follower or leader:
	// the debug endpoint and the metrics show the group halted instead.
	st := GroupStatus{Group: g.d.cfg.Group, Name: g.d.cfg.Name}
	if last := g.d.cfg.Board.Get(g.d.cfg.Group); last != nil {
		st = *last
	}
	st.Role, st.Leader, st.Progress, st.Halted = "halted", 0, nil, err.Error()
	st.Outgoing, st.OutgoingTerm = 0, 0
	g.d.cfg.Board.Publish(&st)
}

// resign drops the raft node of an incarnation that stops, restarts or
// halts, and tells the Extension, which no longer leads: it answers
// everything it had waiting rather than leave it waiting forever.
func (g *groupActor) resign(ctx actor.Context) {
	g.wakeFollowers(ctx)
	g.rn = nil
	if g.ext != nil {
		g.ext.LeaderChanged(g.handle, ctx)
	}
}

// propose appends data behind an 8-byte key that lets this node match the
// applied entry to its waiting proposer; other nodes ignore the key.
func (g *groupActor) propose(ctx actor.Context, m *Propose) {
	if g.rn == nil {
		g.reply(ctx, m.ReplyTo, &Proposed{ID: m.ID, Err: ErrNotReady})
		return
	}
	g.nextKey++
	key := g.nextKey
	data := make([]byte, 8+len(m.Data))
	binary.BigEndian.PutUint64(data, key)
	copy(data[8:], m.Data)
	if m.ReplyTo != nil {
		g.waiters[key] = waiter{id: m.ID, replyTo: m.ReplyTo, deadline: g.ticks + uint64(g.d.cfg.ProposalTimeoutTicks)}
	}
	g.batch = append(g.batch, &pb.Entry{Data: data})
	g.batchKeys = append(g.batchKeys, key)
	g.flushProposals(ctx)
}

// leaderTermDurable reports whether this node, if it leads, has its term
// and vote durably. Raft lets a candidate win on its peers' votes before
// its own hard state is written; a leader that replicated a proposal then
// and crashed could win the same term again after restarting and put a
// different entry at the same index and term: the logs would diverge. So a
// leader's proposals wait until its term is durable. Its empty entry of the
// new term needs no such care: every leader of a term writes the same one.
func (g *groupActor) leaderTermDurable() bool {
	st := g.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		return true
	}
	hs, _, _ := g.d.ms.InitialState() // the raft.Storage holds only what is durable
	return hs.GetTerm() >= st.HardState.GetTerm()
}

// flushProposals steps the held proposals as one MsgProp once they may go:
// at once on a leader whose term is durable, and on a follower, which
// forwards them or refuses them.
func (g *groupActor) flushProposals(ctx actor.Context) {
	if len(g.batch) == 0 || g.rn == nil || !g.leaderTermDurable() {
		return
	}
	ents, keys := g.batch, g.batchKeys
	g.batch, g.batchKeys = nil, nil
	err := g.rn.Step(&pb.Message{Type: pb.MsgProp.Enum(), From: new(g.d.cfg.NodeID), Entries: ents})
	if err == nil {
		return
	}
	for _, key := range keys {
		if w, ok := g.waiters[key]; ok {
			delete(g.waiters, key)
			ctx.Send(w.replyTo, &Proposed{ID: w.id, Err: err})
		}
	}
}

func (g *groupActor) reply(ctx actor.Context, to *actor.PID, msg *Proposed) {
	if to != nil {
		ctx.Send(to, msg)
	}
}

func (g *groupActor) expireWaiters(ctx actor.Context) {
	for key, w := range g.waiters {
		if g.ticks >= w.deadline {
			delete(g.waiters, key)
			ctx.Send(w.replyTo, &Proposed{ID: w.id, Err: ErrTimeout})
		}
	}
}

func (g *groupActor) failWaiters(ctx actor.Context, err error) {
	for key, w := range g.waiters {
		delete(g.waiters, key)
		ctx.Send(w.replyTo, &Proposed{ID: w.id, Err: err})
	}
}

func (g *groupActor) publish() {
	if g.rn == nil {
		return
	}
	st := g.rn.Status()
	out, outTerm := g.outgoingLeader(st.Lead)
	g.published = publishedKey{st.RaftState, st.Lead, st.HardState.GetTerm(), st.HardState.GetCommit(), st.Applied, out}
	g.publishedAt = g.ticks
	gs := statusOf(g.d.cfg.Group, g.d.cfg.Name, st)
	gs.Outgoing, gs.OutgoingTerm = out, outTerm
	gs.Quiet = g.quiet
	if g.tiered != nil {
		g.tiered.report(gs, st.RaftState == raft.StateLeader)
	}
	g.d.cfg.Board.Publish(gs)
}

// progressEveryTicks is how often a leader republishes its followers'
// progress when nothing else changed.
const progressEveryTicks = 10

// publishIfChanged publishes, on every tick and after every Ready, only
// what is cheap to compare: a full status allocates, and thousands of idle
// groups tick 20 times a second.
func (g *groupActor) publishIfChanged() {
	b := g.rn.BasicStatus()
	out, _ := g.outgoingLeader(b.Lead)
	k := publishedKey{b.RaftState, b.Lead, b.HardState.GetTerm(), b.HardState.GetCommit(), b.Applied, out}
	if k != g.published || (b.RaftState == raft.StateLeader && g.ticks-g.publishedAt >= progressEveryTicks) {
		g.publish()
	}
}

// publishedKey is what publishIfChanged compares.
type publishedKey struct {
	role                             raft.StateType
	lead, term, commit, ap, outgoing uint64
}
