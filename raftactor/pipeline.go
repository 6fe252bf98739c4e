package raftactor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

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

// The steps of the Ready pipeline (DESIGN.md, with raft's asynchronous
// storage writes). StepMessages and StepApply run when a Ready is taken;
// StepPersist is observed only when a Persist is sent. StepPersisted marks
// the arrival of its Persisted, StepSnapshot then the installation of the
// leader's snapshot it carried, if any, and StepPersistedMessages the
// delivery of the messages that waited for it, which for a Ready that
// wrote nothing ride on the Persist before it.
const (
	StepMessages PipelineStep = iota + 1
	StepSnapshot
	StepApply
	StepPersist
	StepPersisted
	StepPersistedMessages
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
	}
	return fmt.Sprintf("step(%d)", int(s))
}

// Observer sees every step of every Ready of a group; tests use it to check
// the pipeline's order. Msgs are the messages sent in that step.
type Observer interface {
	ObserveStep(node, group, ready uint64, step PipelineStep, msgs []*pb.Message)
}

// inflight is a Persist between its sending and its Persisted: what it
// writes, which goes into the raft.Storage once it is durable, and the
// messages raft attached to it, which may leave only then.
type inflight struct {
	seq         uint64
	incarnation uint64
	entries     []*pb.Entry
	hardState   *pb.HardState // nil when unchanged
	snapshot    *pb.Snapshot  // nil when none
	responses   []*pb.Message
	// deferKeep marks a Persist sent while a leader's snapshot waited to
	// be durable: its entries went to the WAL whole, and a LogKeeper keeps
	// them only once the snapshot is installed.
	deferKeep bool
}

// processReady takes every Ready raft has. Raft runs with asynchronous
// storage writes, so a Ready need not wait for the one before it to be
// durable: a leader goes on proposing and sending appends, and a follower
// accepting them, while the storage actor syncs. A Ready's local write comes
// as a MsgStorageAppend whose responses (the acknowledgements raft.send
// holds back: MsgAppResp, MsgVoteResp, MsgPreVoteResp, and the node's own)
// are delivered only once its Persist, and so every Persist before it, is
// answered; its committed entries come as a MsgStorageApply, and raft hands
// out only entries this node has durably. Proposals held until this leader's
// term became durable (leaderTermDurable) go first.
func (g *groupActor) processReady(ctx actor.Context) {
	g.flushProposals(ctx)
	for g.rn != nil && g.rn.HasReady() {
		g.processOneReady(ctx)
	}
}

func (g *groupActor) processOneReady(ctx actor.Context) {
	rd := g.rn.Ready()
	g.seq++
	seq := g.seq
	var appendMsg, applyMsg *pb.Message

	// 1. messages that do not depend on local persistence go now.
	now := make([]*pb.Message, 0, len(rd.Messages))
	for _, m := range rd.Messages {
		switch m.GetTo() {
		case raft.LocalAppendThread:
			appendMsg = m
		case raft.LocalApplyThread:
			applyMsg = m
		default:
			now = append(now, m)
		}
	}
	g.send(ctx, now)
	g.observe(seq, StepMessages, now)

	// 2. a leader's snapshot is persisted first and installed in the state
	// machine once durable (installDeferred): a state machine that keeps
	// the raft log in its own files must not drop that log before the
	// snapshot replacing it can be recovered. Raft hands out no committed
	// entry until then.
	snap := appendMsg.GetSnapshot()
	if snap != nil && raft.IsEmptySnap(snap) {
		snap = nil
	}

	// 3. committed entries, all of them durable here already.
	if applyMsg != nil {
		g.apply(ctx, applyMsg.GetEntries())
		if g.rn == nil {
			return // halted while applying: nothing more may happen in this group
		}
		if g.ext != nil && len(applyMsg.GetEntries()) > 0 {
			g.ext.Applied(g.handle, ctx)
		}
		g.deliver(ctx, applyMsg.GetResponses())
	}
	g.observe(seq, StepApply, nil)
	// Term changes after the entries committed in the old term are
	// answered, before anything is proposed in the new one.
	g.noteStateChange(ctx, rd)

	// 4. persistence.
	if appendMsg != nil {
		g.persist(ctx, seq, rd, appendMsg, snap)
		if g.rn == nil {
			return // halted: the keeper could not write the entries
		}
	}

	g.publishIfChanged()
	if g.campaignIfAlone && !g.rn.HasReady() && len(g.d.pending) == 0 {
		// Raft refuses to campaign while a conf change is committed and
		// not applied, as the bootstrap ones are until their Persist is
		// answered and the next Ready applies them.
		if st := g.rn.BasicStatus(); st.Applied >= st.HardState.GetCommit() {
			g.campaignIfAlone = false
			g.campaignFirst()
		}
	}
	if g.checkpointWanted || g.snapshotDue() {
		g.checkpoint(ctx, g.checkpointWanted)
	}
}

// persist sends what a MsgStorageAppend asks to write to the storage actor.
// One that writes nothing carries only responses: they wait for the
// Persists before it, or go now when there are none.
func (g *groupActor) persist(ctx actor.Context, seq uint64, rd raft.Ready, m *pb.Message, snap *pb.Snapshot) {
	var hs *pb.HardState // set when it changed, as raft then writes it into m too
	if !raft.IsEmptyHardState(rd.HardState) {
		hs = rd.HardState
	}
	inf := &inflight{seq: seq, incarnation: g.incarnation, entries: m.GetEntries(), hardState: hs, snapshot: snap, responses: m.GetResponses()}
	if len(inf.entries) == 0 && hs == nil && snap == nil {
		if n := len(g.d.pending); n > 0 {
			last := g.d.pending[n-1]
			last.responses = append(last.responses, inf.responses...)
			return
		}
		g.durableDone(ctx, inf)
		return
	}
	walEntries, kept := inf.entries, int64(0)
	var also storage.Syncer
	if snap != nil || g.d.deferred > 0 {
		inf.deferKeep = true
		g.d.deferred++
	} else if k := g.d.keeper; k != nil && len(walEntries) > 0 {
		var err error
		if walEntries, err = k.Keep(walEntries); err != nil {
			g.halt(ctx, fmt.Errorf("keep entries: %w", err))
			return
		}
		if kept = keptBytes(inf.entries, walEntries); kept > 0 {
			also = k
		}
	}
	p := &storage.Persist{
		Group:       g.d.cfg.Group,
		Incarnation: g.incarnation,
		Seq:         seq,
		Entries:     walEntries,
		HardState:   hs,
		Snapshot:    snap,
		KeptBytes:   kept,
		Also:        also,
		// raft's MustSync ignores snapshots, but the follower acknowledges
		// one as soon as it is persisted: it must be durable by then.
		Sync:    rd.MustSync || snap != nil,
		ReplyTo: ctx.Self(),
	}
	g.d.pending = append(g.d.pending, inf)
	g.d.persists++
	g.observe(seq, StepPersist, nil) // before the storage can answer it
	ctx.Send(g.d.cfg.Storage, p)
}

// onPersisted takes the answer to the oldest Persist in flight: the storage
// actor answers a group's Persists in the order they were sent.
func (g *groupActor) onPersisted(ctx actor.Context, m *storage.Persisted) {
	if g.halted || len(g.d.pending) == 0 {
		return
	}
	inf := g.d.pending[0]
	if m.Incarnation != inf.incarnation || m.Seq != inf.seq {
		return // stale: an answer to a Persist this group no longer waits for
	}
	if m.Err != nil {
		g.halt(ctx, fmt.Errorf("persist: %w", m.Err))
		return
	}
	if err := g.installDeferred(inf); err != nil {
		g.halt(ctx, err)
		return
	}
	if err := g.makeDurable(inf); err != nil {
		g.halt(ctx, err)
		return
	}
	g.d.pending[0] = nil
	g.d.pending = g.d.pending[1:]
	if m.Incarnation != g.incarnation {
		// The Persist belonged to an earlier incarnation whose RawNode is
		// gone: its state is now in the raft.Storage. Once the last one is
		// back, start from there.
		if len(g.d.pending) == 0 && !g.halted {
			g.start(ctx)
		}
		return
	}
	g.observe(inf.seq, StepPersisted, nil)
	g.durableDone(ctx, inf)
}

// keptBytes is the size of the bodies a LogKeeper kept: those of the
// entries it replaced in the WAL's list.
func keptBytes(ents, wal []*pb.Entry) int64 {
	var n int64
	for i, e := range ents {
		if wal[i] != e {
			n += int64(len(e.GetData()))
		}
	}
	return n
}

// installDeferred installs the leader's snapshot a durable Persist carried
// and gives a LogKeeper the entries it deferred: first the keeper drops
// what it kept past the applied state, then the state machine takes the
// snapshot, then the keeper writes the entries that came after it (the WAL
// has them whole, so they need no Sync).
func (g *groupActor) installDeferred(inf *inflight) error {
	if !inf.deferKeep {
		return nil
	}
	g.d.deferred--
	k := g.d.keeper
	if snap := inf.snapshot; snap != nil {
		if k != nil {
			if err := k.Discard(); err != nil {
				return fmt.Errorf("discard kept entries: %w", err)
			}
		}
		if err := g.d.restore(snap); err != nil {
			return err
		}
		md := snap.GetMetadata()
		g.log.Info().Uint64("index", md.GetIndex()).Uint64("term", md.GetTerm()).Msg("installed snapshot from leader")
		g.observe(inf.seq, StepSnapshot, nil)
	}
	if k != nil && len(inf.entries) > 0 {
		if _, err := k.Keep(inf.entries); err != nil {
			return fmt.Errorf("keep entries: %w", err)
		}
	}
	return nil
}

// durableDone tells the Extension what became durable and delivers the
// messages that waited for it.
func (g *groupActor) durableDone(ctx actor.Context, inf *inflight) {
	if g.ext != nil && len(inf.entries) > 0 {
		g.ext.Persisted(g.handle, ctx, inf.entries)
	}
	sent := g.deliver(ctx, inf.responses)
	g.observe(inf.seq, StepPersistedMessages, sent)
	if g.checkpointWanted {
		g.checkpoint(ctx, true)
	}
}

// deliver steps the responses addressed to this node, sends the others and
// returns those.
func (g *groupActor) deliver(ctx actor.Context, msgs []*pb.Message) []*pb.Message {
	self := g.d.cfg.NodeID
	var out []*pb.Message
	for _, m := range msgs {
		if m.GetTo() != self {
			out = append(out, m)
			continue
		}
		if g.rn == nil {
			continue
		}
		if err := g.rn.Step(m); err != nil {
			g.log.Debug().Err(err).Str("type", m.GetType().String()).Msg("step local response")
		}
	}
	g.send(ctx, out)
	return out
}

// makeDurable records a persisted write in the group's raft.Storage.
func (g *groupActor) makeDurable(inf *inflight) error {
	ms := g.d.ms
	if inf.snapshot != nil {
		if err := ms.ApplySnapshot(inf.snapshot); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
			return fmt.Errorf("storage apply snapshot: %w", err)
		}
	}
	if err := ms.Append(inf.entries); err != nil {
		return fmt.Errorf("storage append: %w", err)
	}
	if inf.hardState != nil {
		if err := ms.SetHardState(inf.hardState); err != nil {
			return fmt.Errorf("storage hard state: %w", err)
		}
	}
	return nil
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
			continue // covered by a snapshot installed since
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

// noteStateChange logs role changes, fails proposals that a new term may
// have lost, and tells the Extension of any change of role, term or known
// leader.
func (g *groupActor) noteStateChange(ctx actor.Context, rd raft.Ready) {
	changed := false
	if rd.SoftState != nil && rd.SoftState.RaftState != g.lastState {
		g.lastState = rd.SoftState.RaftState
		// An election's steps are debug; info is for a change between
		// follower and leader, so that a failover costs each group at most
		// one line on each broker (a follower that campaigned and lost
		// writes none).
		ev := g.log.Debug()
		if st := g.lastState; st != raft.StatePreCandidate && st != raft.StateCandidate && st != g.loggedState {
			g.loggedState = st
			ev = g.log.Info()
		}
		ev.Str("role", RoleName(g.lastState)).Uint64("leader", rd.SoftState.Lead).
			Uint64("term", g.rn.BasicStatus().GetTerm()).Msg("raft role changed")
		changed = true
	}
	if rd.SoftState != nil && rd.SoftState.Lead != g.lastLead {
		// A follower that learns its new leader: the old leader of a
		// hand-over knows whom to send its clients to.
		g.lastLead = rd.SoftState.Lead
		changed = true
	}
	if rd.HardState != nil && rd.HardState.GetTerm() != g.lastTerm {
		if g.lastTerm != 0 {
			g.failWaiters(ctx, ErrLeaderChanged)
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
// Compacting to an index keeps the entries after it, so the result is never
// above applied: an entry larger than CatchUpBytes on its own leaves no
// tail, not a compaction past the entries raft has yet to apply (or past
// the log's end, where MemoryStorage.Compact panics).
func (g *groupActor) compactIndex() uint64 {
	d, c := g.d, g.d.cfg
	first, _ := d.ms.FirstIndex()
	lo := first
	if d.applied > c.CatchUpEntries {
		lo = max(lo, d.applied-c.CatchUpEntries)
	}
	if c.CatchUpBytes > 0 && lo < d.applied {
		// Walk back from applied while the tail (lo, applied] fits in
		// CatchUpBytes.
		ents, err := d.ms.Entries(lo+1, d.applied+1, math.MaxUint64)
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
	return min(lo, d.applied)
}

// checkpoint snapshots the state machine at the applied index, if it moved,
// compacts the in-memory log behind it and tells the storage, which may then
// drop older WAL files. Raft applies only entries this node has durably, and
// a leader's snapshot is installed only once durable, so the applied index
// is durable. The snapshot of a Flusher counts for the storage only once
// flushed, and only when the storage asked for it (force): otherwise it just
// bounds the in-memory log.
func (g *groupActor) checkpoint(ctx actor.Context, force bool) {
	d := g.d
	if g.rn == nil {
		// Restarting, waiting for an earlier incarnation's Persists: the
		// storage does not ask twice, so remember it.
		g.checkpointWanted = g.checkpointWanted || force
		return
	}
	flusher, flushes := d.cfg.StateMachine.(Flusher)
	if force && g.flushing {
		// The checkpoint waits for the flush in flight; a snapshot that
		// is due is taken now, so the in-memory log stays bounded.
		g.checkpointWanted = true
		if !g.snapshotDue() {
			return
		}
		force = false
	} else {
		g.checkpointWanted = false
	}
	taken := false
	if d.applied > d.snapIndex {
		data, err := d.cfg.StateMachine.Snapshot()
		if err != nil {
			g.log.Error().Err(err).Msg("snapshot state machine")
			return
		}
		if _, err := d.ms.CreateSnapshot(d.applied, d.confState, data); err != nil {
			g.log.Error().Err(err).Uint64("index", d.applied).Msg("create snapshot")
			return
		}
		d.snapIndex, d.appliedBytes = d.applied, 0
		if to, first := g.compactIndex(), firstIndex(d.ms); to > first {
			if err := d.ms.Compact(to); err != nil && !errors.Is(err, raft.ErrCompacted) {
				g.log.Error().Err(err).Msg("compact log")
			}
		}
		taken = true
		g.log.Debug().Uint64("index", d.applied).Int("bytes", len(data)).Msg("snapshotted")
	}
	if d.snapIndex == 0 || !force && (flushes || !taken) {
		return
	}
	snap, err := d.ms.Snapshot()
	if err != nil {
		g.log.Error().Err(err).Msg("read snapshot")
		return
	}
	// A rewrite goes only when the checkpoint cannot cover what the
	// storage holds, and never while a flush runs (see above): the next
	// Checkpoint after it then comes from a flush that began after it.
	rewrite := false
	if force {
		rewrite = g.rewriteAbove > d.snapIndex && len(d.pending) == 0
		g.rewriteAbove = 0
	}
	if !flushes {
		if rewrite && d.keeper == nil {
			// Without a keeper the WAL holds the entries whole: nothing
			// else needs to be durable first.
			g.rewrite(ctx, d.snapIndex)
		}
		ctx.Send(d.cfg.Storage, &storage.Checkpoint{Group: d.cfg.Group, Snapshot: snap, ReplyTo: g.checkpointReply(ctx)})
		return
	}
	g.flushing = true
	self, root, incarnation := ctx.Self(), ctx.ActorSystem().Root, g.incarnation
	fl := &flushed{incarnation: incarnation, snap: snap, rewrite: rewrite, persists: d.persists}
	go func() {
		fl.err = flusher.Flush()
		root.Send(self, fl)
	}()
}

// rewrite writes the group's log after index again to the WAL, as the WAL
// holds it (a LogKeeper's references), so that the older WAL files that
// hold those entries no longer need a checkpoint past them: a group whose
// entries cannot commit (a follower whose group lost quorum) would
// otherwise keep every WAL file from then on. The storage counts it once
// the Checkpoint that follows it is durable. It needs no Persist in
// flight: the rewrite must hold the group's whole log after index as the
// storage has it; and a LogKeeper's bodies durable, which the flush of that
// checkpoint, begun with nothing persisted since, has made them. Raft's
// log is unchanged: replay takes the same entries in place of themselves.
func (g *groupActor) rewrite(ctx actor.Context, index uint64) {
	d := g.d
	last, _ := d.ms.LastIndex()
	if last <= index {
		return
	}
	ents, err := d.ms.Entries(index+1, last+1, math.MaxUint64)
	if err != nil {
		// Compacted by a snapshot taken meanwhile: the storage asks again.
		g.log.Warn().Err(err).Uint64("from_index", index+1).Uint64("to_index", last).Msg("read entries to rewrite")
		return
	}
	ents = slices.Clone(ents) // the raft.Storage's slice, which it may write over
	if k := d.keeper; k != nil {
		if ents, err = k.References(ents); err != nil {
			g.log.Error().Err(err).Uint64("from_index", index+1).Uint64("to_index", last).Msg("references of entries to rewrite")
			return
		}
	}
	ctx.Send(d.cfg.Storage, &storage.Rewrite{Group: d.cfg.Group, Entries: ents})
	g.log.Info().Uint64("from_index", index+1).Uint64("to_index", last).
		Msg("rewrote entries the group cannot checkpoint past, so that older WAL files can go")
}

// checkpointReply is where the storage tells this group that a checkpoint
// is durable: only a LogKeeper needs to hear it.
func (g *groupActor) checkpointReply(ctx actor.Context) *actor.PID {
	if g.d.keeper == nil {
		return nil
	}
	return ctx.Self()
}

// onCheckpointed lets a LogKeeper drop what it keeps for entries a durable
// checkpoint covers.
func (g *groupActor) onCheckpointed(ctx actor.Context, m *storage.Checkpointed) {
	if g.d.keeper == nil || g.halted {
		return
	}
	if err := g.d.keeper.Release(m.Index); err != nil {
		g.halt(ctx, fmt.Errorf("release kept entries through %d: %w", m.Index, err))
	}
}

// flushed is what the goroutine flushing a Flusher sends its group when
// the flush is done: snap is then durable.
type flushed struct {
	incarnation uint64
	snap        *pb.Snapshot
	err         error
	// rewrite asks for a rewrite before the Checkpoint, valid if no
	// Persist went after the flush began: persists is their count then.
	rewrite  bool
	persists uint64
}

// onFlushed hands the storage the checkpoint a flush made durable.
func (g *groupActor) onFlushed(ctx actor.Context, m *flushed) {
	if m.incarnation != g.incarnation {
		// The flush of an incarnation that is gone: the checkpoint it was
		// for is still owed to the storage.
		g.checkpointWanted = true
		return
	}
	if g.rn == nil {
		return // stopping or halted
	}
	g.flushing = false
	if m.err != nil {
		// The state machine's files may have lost pages the OS had
		// accepted: nothing applied since the last checkpoint is safe to
		// build on.
		g.halt(ctx, fmt.Errorf("flush state machine: %w", m.err))
		return
	}
	if m.rewrite && m.persists == g.d.persists && len(g.d.pending) == 0 {
		// Nothing was kept since the flush began, which made every body
		// the rewrite's references stand for durable.
		g.rewrite(ctx, m.snap.GetMetadata().GetIndex())
	}
	ctx.Send(g.d.cfg.Storage, &storage.Checkpoint{Group: g.d.cfg.Group, Snapshot: m.snap, ReplyTo: g.checkpointReply(ctx)})
	g.log.Debug().Uint64("index", m.snap.GetMetadata().GetIndex()).Msg("checkpointed")
	if g.checkpointWanted {
		g.checkpoint(ctx, true)
	}
}
