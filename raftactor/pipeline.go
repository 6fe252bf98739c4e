package raftactor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla/flotilla/actors/storage"
)

// ErrLeaderChanged answers proposals still waiting when the group's term
// changes: the entry may or may not be committed, so the proposer must retry
// an idempotent request or report the outcome as unknown.
var ErrLeaderChanged = errors.New("raft leader changed")

// PipelineStep names one step of the Ready pipeline, in the order they run.
type PipelineStep int

// The six steps of the Ready pipeline (DESIGN.md), in order. StepPersisted
// marks the arrival of Persisted, between StepPersist and the sending of the
// held-back messages.
const (
	StepMessages PipelineStep = iota + 1
	StepSnapshot
	StepApply
	StepPersist
	StepPersisted
	StepPersistedMessages
	StepAdvance
)

func (s PipelineStep) String() string {
	switch s {
	case StepMessages:
		return "messages"
	case StepSnapshot:
		return "snapshot"
	case StepApply:
		return "apply"
	case StepPersist:
		return "persist"
	case StepPersisted:
		return "persisted"
	case StepPersistedMessages:
		return "persisted-messages"
	case StepAdvance:
		return "advance"
	}
	return fmt.Sprintf("step(%d)", int(s))
}

// Observer sees every step of every Ready of a group; tests use it to check
// the pipeline's order. Msgs are the messages sent in that step.
type Observer interface {
	ObserveStep(node, group, ready uint64, step PipelineStep, msgs []*pb.Message)
}

// inflight is a Ready between its Persist and its Advance.
type inflight struct {
	seq         uint64
	incarnation uint64
	rd          raft.Ready
	after       []*pb.Message // held back until the Ready is durable
}

// mustWaitForPersist reports whether m acknowledges local state that is not
// durable until this Ready's Persist completes (etcd raft's raft.send rule).
func mustWaitForPersist(m *pb.Message) bool {
	switch m.GetType() {
	case pb.MsgAppResp, pb.MsgVoteResp, pb.MsgPreVoteResp:
		return true
	}
	return false
}

// processReady takes one Ready, if there is one and none is in flight, and
// runs it through the pipeline up to persistence; onPersisted finishes it.
func (g *groupActor) processReady(ctx actor.Context) {
	if g.rn == nil || g.inflight != nil || !g.rn.HasReady() {
		return
	}
	rd := g.rn.Ready()
	g.seq++
	inf := &inflight{seq: g.seq, incarnation: g.incarnation, rd: rd}

	// 1. messages that do not depend on local persistence go now.
	now := make([]*pb.Message, 0, len(rd.Messages))
	for _, m := range rd.Messages {
		if mustWaitForPersist(m) {
			inf.after = append(inf.after, m)
		} else {
			now = append(now, m)
		}
	}
	g.send(ctx, now)
	g.observe(inf.seq, StepMessages, now)

	// 2. snapshot: the state machine takes it before any committed entry.
	if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
		if err := g.d.restore(rd.Snapshot); err != nil {
			g.halt(ctx, err)
			return
		}
		md := rd.Snapshot.GetMetadata()
		g.log.Info().Uint64("index", md.GetIndex()).Uint64("term", md.GetTerm()).Msg("applied snapshot from leader")
	}
	g.observe(inf.seq, StepSnapshot, nil)

	// 3. committed entries. A follower's may include entries persisted only
	// in step 4; that is safe because nothing checkpoints past the durable
	// index and recovery replays the WAL.
	g.apply(ctx, rd.CommittedEntries)
	if g.rn == nil {
		return // halted while applying: nothing more may happen in this group
	}
	if g.ext != nil && len(rd.CommittedEntries) > 0 {
		g.ext.Applied(g.handle, ctx)
	}
	g.observe(inf.seq, StepApply, nil)

	// 4. persistence.
	hasHS := rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState)
	hasSnap := rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot)
	g.inflight = inf
	if len(rd.Entries) == 0 && !hasHS && !hasSnap {
		g.observe(inf.seq, StepPersist, nil)
		g.finish(ctx, inf)
		return
	}
	p := &storage.Persist{
		Group:       g.d.cfg.Group,
		Incarnation: g.incarnation,
		Seq:         inf.seq,
		Entries:     rd.Entries,
		// raft's MustSync ignores snapshots, but the follower acknowledges
		// one as soon as it is persisted: it must be durable by then.
		Sync:    rd.MustSync || hasSnap,
		ReplyTo: ctx.Self(),
	}
	if hasHS {
		p.HardState = rd.HardState
	}
	if hasSnap {
		p.Snapshot = rd.Snapshot
	}
	g.d.pending = inf
	ctx.Send(g.d.cfg.Storage, p)
	g.observe(inf.seq, StepPersist, nil)
}

func (g *groupActor) onPersisted(ctx actor.Context, m *storage.Persisted) {
	pending := g.d.pending
	if pending == nil || m.Incarnation != pending.incarnation || m.Seq != pending.seq {
		return // stale: an answer to a Persist this group no longer waits for
	}
	if m.Err != nil {
		g.halt(ctx, fmt.Errorf("persist: %w", m.Err))
		return
	}
	if err := g.makeDurable(pending.rd); err != nil {
		g.halt(ctx, err)
		return
	}
	g.d.pending = nil
	if m.Incarnation != g.incarnation {
		// The Ready belonged to an earlier incarnation whose RawNode is gone:
		// its state is now in the raft.Storage, so start from there.
		g.start(ctx)
		return
	}
	g.observe(pending.seq, StepPersisted, nil)
	if g.ext != nil && len(pending.rd.Entries) > 0 {
		g.ext.Persisted(g.handle, ctx, pending.rd.Entries)
	}
	g.finish(ctx, pending)
}

// makeDurable records a persisted Ready in the group's raft.Storage.
func (g *groupActor) makeDurable(rd raft.Ready) error {
	ms := g.d.ms
	if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
		if err := ms.ApplySnapshot(rd.Snapshot); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
			return fmt.Errorf("storage apply snapshot: %w", err)
		}
	}
	if err := ms.Append(rd.Entries); err != nil {
		return fmt.Errorf("storage append: %w", err)
	}
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		if err := ms.SetHardState(rd.HardState); err != nil {
			return fmt.Errorf("storage hard state: %w", err)
		}
	}
	return nil
}

// finish runs steps 5 and 6 of a durable Ready and takes the next one.
func (g *groupActor) finish(ctx actor.Context, inf *inflight) {
	// 5. the held-back acknowledgements may go now.
	g.send(ctx, inf.after)
	g.observe(inf.seq, StepPersistedMessages, inf.after)
	// 6. advance.
	g.rn.Advance(inf.rd)
	g.observe(inf.seq, StepAdvance, nil)
	g.inflight = nil

	// Term changes first: the proposals held during this Ready are stepped
	// in the new term and must not be failed as lost in the old one.
	g.noteStateChange(ctx, inf.rd)
	// A follower asleep sees no ticks to publish its commit and applied
	// index on: the Ready that moved them does.
	g.publishIfChanged()
	g.flushProposals(ctx)
	if g.campaignIfAlone && !g.rn.HasReady() {
		g.campaignIfAlone = false
		g.campaignIfSoleVoter()
	}
	if g.checkpointWanted || g.snapshotDue() {
		g.checkpoint(ctx, g.checkpointWanted)
	}
	g.processReady(ctx)
}

func (g *groupActor) send(ctx actor.Context, msgs []*pb.Message) {
	if len(msgs) > 0 {
		g.d.cfg.Transport.Send(ctx, g.d.cfg.Group, msgs)
	}
}

func (g *groupActor) observe(ready uint64, step PipelineStep, msgs []*pb.Message) {
	if o := g.d.cfg.Observer; o != nil {
		o.ObserveStep(g.d.cfg.NodeID, g.d.cfg.Group, ready, step, msgs)
	}
}

// apply hands committed entries to the state machine and conf changes to raft.
func (g *groupActor) apply(ctx actor.Context, ents []*pb.Entry) {
	sm := g.d.cfg.StateMachine
	for _, e := range ents {
		idx := e.GetIndex()
		if idx <= g.d.applied {
			continue // covered by a snapshot applied in step 2
		}
		switch e.GetType() {
		case pb.EntryNormal:
			data := e.GetData()
			if g.d.cfg.RawEntries {
				sm.Apply(idx, e.GetTerm(), data)
				break
			}
			if len(data) < 8 {
				sm.Apply(idx, e.GetTerm(), nil)
				break
			}
			key := binary.BigEndian.Uint64(data)
			sm.Apply(idx, e.GetTerm(), data[8:])
			if w, ok := g.waiters[key]; ok {
				delete(g.waiters, key)
				ctx.Send(w.replyTo, &Proposed{ID: w.id, Index: idx})
			}
		case pb.EntryConfChange, pb.EntryConfChangeV2:
			cc, err := decodeConfChange(e)
			if err != nil {
				g.halt(ctx, fmt.Errorf("decode conf change at %d: %w", idx, err))
				return
			}
			g.d.confState = g.rn.ApplyConfChange(cc)
			g.keepCold(e)
			if ca, ok := sm.(ConfChangeApplier); ok {
				ca.ApplyConfChange(idx, e.GetTerm(), cc, g.d.confState)
			}
		}
		g.d.applied = idx
		g.d.appliedBytes += uint64(len(e.GetData()))
	}
}

// decodeConfChange reads a conf change entry of either version as a V2.
func decodeConfChange(e *pb.Entry) (*pb.ConfChangeV2, error) {
	if e.GetType() == pb.EntryConfChange {
		cc := &pb.ConfChange{}
		if err := proto.Unmarshal(e.GetData(), cc); err != nil {
			return nil, err
		}
		return cc.AsV2(), nil
	}
	cc := &pb.ConfChangeV2{}
	if err := proto.Unmarshal(e.GetData(), cc); err != nil {
		return nil, err
	}
	return cc, nil
}

// keepCold gives a conf change entry, which the state machine never sees, to
// its cold log.
func (g *groupActor) keepCold(e *pb.Entry) {
	if cold, ok := g.d.cfg.StateMachine.(ColdLog); ok {
		cold.KeepEntry(e)
	}
}

// noteStateChange logs role changes and fails proposals that a new term may
// have lost.
func (g *groupActor) noteStateChange(ctx actor.Context, rd raft.Ready) {
	changed := false
	if rd.SoftState != nil && rd.SoftState.RaftState != g.lastState {
		g.lastState = rd.SoftState.RaftState
		g.log.Info().Str("role", RoleName(rd.SoftState.RaftState)).Uint64("leader", rd.SoftState.Lead).
			Uint64("term", g.rn.BasicStatus().GetTerm()).Msg("raft role changed")
		changed = true
	}
	if rd.HardState != nil && rd.HardState.GetTerm() != g.lastTerm {
		if g.lastTerm != 0 {
			g.failSteppedWaiters(ctx, ErrLeaderChanged)
		}
		g.lastTerm = rd.HardState.GetTerm()
		changed = true
	}
	if changed {
		g.publish()
		if g.ext != nil {
			g.ext.LeaderChanged(g.handle, ctx)
		}
	}
}

func (g *groupActor) campaignIfSoleVoter() {
	st := g.rn.Status()
	voters := st.Config.Voters.IDs()
	if _, self := voters[g.d.cfg.NodeID]; len(voters) == 1 && self && st.RaftState != raft.StateLeader {
		_ = g.rn.Campaign()
	}
}

// defaultCatchUpEntries is how many applied entries stay in memory after a
// snapshot unless the config says otherwise.
const defaultCatchUpEntries = 1000

func firstIndex(ms *raft.MemoryStorage) uint64 {
	i, _ := ms.FirstIndex()
	return i
}

func (g *groupActor) snapshotDue() bool {
	c, d := g.d.cfg, g.d
	return (c.SnapshotEntries > 0 && d.applied >= d.snapIndex+c.SnapshotEntries) ||
		(c.SnapshotBytes > 0 && d.appliedBytes >= c.SnapshotBytes)
}

// compactIndex is where the in-memory log is compacted to after a snapshot
// at applied: the catch-up tail behind it is kept, within its bounds.
func (g *groupActor) compactIndex() uint64 {
	d, c := g.d, g.d.cfg
	first, _ := d.ms.FirstIndex()
	lo := first
	if d.applied > c.CatchUpEntries {
		lo = max(lo, d.applied-c.CatchUpEntries)
	}
	if c.CatchUpBytes > 0 && lo < d.applied {
		// Walk back from applied while the tail fits in CatchUpBytes.
		ents, err := d.ms.Entries(lo, d.applied+1, math.MaxUint64)
		if err == nil {
			var bytes uint64
			i := len(ents)
			for i > 0 && bytes+uint64(len(ents[i-1].GetData())) <= c.CatchUpBytes {
				i--
				bytes += uint64(len(ents[i].GetData()))
			}
			lo += uint64(i)
		}
	}
	return lo
}

// checkpoint snapshots the state machine at the applied index, compacts the
// in-memory log behind it and tells the storage, which may then drop older
// WAL files. The applied index never passes the durable one here: it runs
// only between Readys.
func (g *groupActor) checkpoint(ctx actor.Context, force bool) {
	d := g.d
	if g.rn == nil {
		return
	}
	if g.inflight != nil {
		// Only between Readys is the applied index known to be durable:
		// remember the request and take it when this Ready finishes.
		g.checkpointWanted = g.checkpointWanted || force
		return
	}
	g.checkpointWanted = false
	if d.applied <= d.snapIndex {
		if force && d.snapIndex > 0 {
			snap, err := d.ms.Snapshot()
			if err == nil {
				ctx.Send(d.cfg.Storage, &storage.Checkpoint{Group: d.cfg.Group, Snapshot: snap})
			}
		}
		return
	}
	data, err := d.cfg.StateMachine.Snapshot()
	if err != nil {
		g.log.Error().Err(err).Msg("snapshot state machine")
		return
	}
	snap, err := d.ms.CreateSnapshot(d.applied, d.confState, data)
	if err != nil {
		g.log.Error().Err(err).Uint64("index", d.applied).Msg("create snapshot")
		return
	}
	d.snapIndex, d.appliedBytes = d.applied, 0
	if to, first := g.compactIndex(), firstIndex(d.ms); to > first {
		if err := d.ms.Compact(to); err != nil && !errors.Is(err, raft.ErrCompacted) {
			g.log.Error().Err(err).Msg("compact log")
		}
	}
	ctx.Send(d.cfg.Storage, &storage.Checkpoint{Group: d.cfg.Group, Snapshot: snap})
	g.log.Debug().Uint64("index", d.applied).Int("bytes", len(data)).Msg("checkpointed")
}
