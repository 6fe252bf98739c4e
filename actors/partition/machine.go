package partition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors/storage"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// Settings are a partition's effective topic configs.
type Settings struct {
	RetentionMs     int64 // -1: forever
	RetentionBytes  int64 // -1: no limit
	SegmentBytes    int64
	MaxMessageBytes int
	LogAppendTime   bool
	// MinInsyncReplicas is the ISR size an acks=all produce needs.
	MinInsyncReplicas int
	// TimestampBeforeMaxMs and TimestampAfterMaxMs are
	// message.timestamp.before.max.ms and message.timestamp.after.max.ms:
	// how far before and after the leader's clock a CreateTime topic
	// accepts a record's timestamp.
	TimestampBeforeMaxMs int64
	TimestampAfterMaxMs  int64
}

// defaultReplicaLagTicks is Kafka's replica.lag.time.max.ms in ticks when
// MachineOptions leaves it zero: 10 s at 50 ms ticks (Kafka's default is 30
// s; a Raft follower streams continuously, so a shorter bound still only
// drops a replica that is really gone).
const defaultReplicaLagTicks = 200

// defaultProducerExpirationMs is Kafka's default producer.id.expiration.ms
// (1 day), for a MachineOptions that leaves it zero.
const defaultProducerExpirationMs = 24 * 60 * 60 * 1000

// defaultProducerExpiryTicks is how often a leader looks for expired
// producers when MachineOptions leaves it zero: 10 min at 50 ms ticks
// (Kafka's producer.id.expiration.check.interval.ms).
const defaultProducerExpiryTicks = 12000

// MachineOptions describe one partition replica.
type MachineOptions struct {
	Topic     string
	Partition int32
	Dir       string // the partition's own directory
	Settings  Settings
	// Replicas are the broker ids of the partition's replicas, the
	// preferred leader first; during a reassignment the target followed
	// by the replicas being removed, Adding and Removing being Kafka's
	// differences (controller.Partition). SetAssignment changes them.
	Replicas []uint64
	Adding   []uint64
	Removing []uint64
	// Group is the partition's raft group id, and Controller the local
	// controller actor, told (ReassignmentReached) when the group's
	// voters have become the target of a reassignment (nil: nobody is).
	Group      uint64
	Controller *actor.PID
	// ReplicaLagTicks is replica.lag.time.max.ms in ticks: a follower that
	// has not caught up with the leader's log end for longer leaves the ISR.
	ReplicaLagTicks uint64
	// ProducerExpirationMs is producer.id.expiration.ms: the leader has
	// every replica forget the idempotent producers whose last batch's
	// timestamp is older than its clock by this much (0: 1 day).
	// ProducerExpiryTicks is how often it looks for them (0: 12000, 10
	// minutes of 50 ms ticks).
	ProducerExpirationMs int64
	ProducerExpiryTicks  uint64
	Log                  zerolog.Logger
	// Now is the leader's clock: used only at propose time (LogAppendTime,
	// retention and producer expiry decisions), never at apply.
	Now func() time.Time
	// Metrics records how long produced batches take (nil: nothing).
	Metrics *Metrics
	// Space refuses produce requests while the disk is nearly full (nil:
	// never), so that a Keep does not fail half way for want of space.
	Space *storage.Space
	// MaxEntryBytes is RaftSettings.MaxEntryBytes: batches above it are
	// refused (0: no limit).
	MaxEntryBytes int
	// Recovered are the entries the WAL recovered for the group
	// (recoveredEntries): their references let Open rebuild
	// the Raft index entries a crash took (see Log.Sync).
	Recovered []*pb.Entry
	// Announce tells this broker's board of leaderships and every peer
	// at once that this replica has begun to serve as leader (Announcer;
	// nil: only the manager's periodic broadcast tells them).
	Announce func(ctx actor.SenderContext, infos []netactor.LeaderInfo)
}

// EpochStart is one entry of the leader-epoch cache: the first offset
// written in that epoch (raft term).
type EpochStart struct {
	Epoch       int32 `json:"epoch"`
	StartOffset int64 `json:"start_offset"`
}

// View is what Fetch, ListOffsets and Metadata read of a partition without
// messaging it. A published View is immutable; Log is safe for concurrent
// reads.
type View struct {
	Leader        bool   // this node leads and has applied an entry of its own term
	LeaderID      uint64 // as this node knows it; 0 if none
	Epoch         int32  // the current leader epoch (raft term)
	HighWatermark int64
	// LogEnd is the leader's log end: the high watermark plus what it has
	// stamped and not yet committed (acks=1 producers know those offsets).
	LogEnd   int64
	LogStart int64
	Epochs   []EpochStart
	// ISR is, on the leader, the replicas that caught up with its log end
	// within replica.lag.time.max.ms (Kafka's time rule), itself included;
	// nil elsewhere.
	ISR []uint64
	// Producers is how many idempotent producers the applied state
	// remembers (ProducerState.Len).
	Producers int
	Log       *Log
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch: for epoch e, the largest
// epoch <= e the log has and the start offset of the first epoch after it
// (or the high watermark when it is the latest). An epoch older than every
// epoch the log has ends where the log's first epoch starts, as Kafka
// answers: e itself with that offset, which a client reads as "nothing of
// yours was cut" rather than as a truncation to reset from. ok is false
// when the log has no epoch at all.
//
// On the leader the current epoch counts even before it has a record: a
// Kafka leader adds its epoch to its cache when elected, so the current
// epoch ends at the log end, and an epoch above it is unknown (-1, -1).
func (v *View) EndOffsetForEpoch(e int32) (epoch int32, end int64, ok bool) {
	if e < 0 {
		return -1, -1, false // no epoch asked (UNDEFINED_EPOCH)
	}
	if v.Leader && e >= v.Epoch {
		if e > v.Epoch {
			return -1, -1, false
		}
		return e, v.HighWatermark, true
	}
	epochs := v.liveEpochs()
	for i := len(epochs) - 1; i >= 0; i-- {
		if epochs[i].Epoch <= e {
			if i == len(epochs)-1 {
				return epochs[i].Epoch, v.HighWatermark, true
			}
			return epochs[i].Epoch, epochs[i+1].StartOffset, true
		}
	}
	switch {
	case len(epochs) > 0:
		return e, epochs[0].StartOffset, true
	case v.Leader:
		// No record yet: the current epoch starts at the log end.
		return e, v.HighWatermark, true
	}
	return -1, -1, false
}

// liveEpochs are the epochs of the records from the log start on: those
// wholly below it dropped and the first moved up to it, as Kafka trims its
// leader epoch cache when the log start moves (the epoch cache here keeps
// them: an older checkpoint may still need them).
func (v *View) liveEpochs() []EpochStart {
	f := 0
	for f+1 < len(v.Epochs) && v.Epochs[f+1].StartOffset <= v.LogStart {
		f++
	}
	epochs := v.Epochs[f:]
	if len(epochs) > 0 && epochs[0].StartOffset < v.LogStart {
		epochs = append([]EpochStart{{Epoch: epochs[0].Epoch, StartOffset: v.LogStart}}, epochs[1:]...)
	}
	return epochs
}

// EpochAt is the leader epoch of the batch holding offset: the latest epoch
// that starts at or before it, or -1 when the log has none (ListOffsets'
// leader epoch, as Kafka's leader epoch cache answers epochForOffset).
func (v *View) EpochAt(offset int64) int32 {
	for i := len(v.Epochs) - 1; i >= 0; i-- {
		if v.Epochs[i].StartOffset <= offset {
			return v.Epochs[i].Epoch
		}
	}
	return -1
}

// Machine is a partition replica's state machine: it applies committed
// record batches to the partition log and, on the leader, stamps and
// proposes produced batches. It lives in its raft group's actor.
type Machine struct {
	o         MachineOptions
	log       *Log
	producers *ProducerState
	epochs    []EpochStart
	view      atomic.Pointer[View]

	lastAppliedTerm uint64
	lastBatch       entryID // the raft entry of the last applied batch
	discarded       bool    // Discard ran: the next Restore is a leader's snapshot
	ticks           uint64
	side            map[uint64]*pb.Entry // applied entries without a batch (coldlog.go)
	appliedIndex    uint64
	coldFirst       uint64
	boundary        entryID     // the entry just below the cold log, if it is coldFirst-1 (coldlog.go)
	confs           []confPoint // the group's configurations from the boundary on (coldlog.go)
	confChanged     bool        // a configuration was applied since the last Applied
	// releaseDue: segments were retired (a log-start move, or a restored
	// checkpoint whose log start is above them) and the next Tick asks
	// for a checkpoint, whose durability lets Release delete their files.
	// The storage asks for checkpoints only as the WAL grows, so a broker
	// that has stopped writing would otherwise keep them forever.
	releaseDue bool

	// Leader state, valid while ready.
	ready      bool
	readyTerm  uint64
	nextOffset int64
	inflight   map[batchKey]*inflight
	completed  []*inflight
	caughtUp   raftactor.InSyncTracker
	isr        []uint64
	// sizes is what the partition health metrics compare a leader's ISR
	// with (Health); written by the actor, read at scrape time.
	sizes    atomic.Pointer[replicaSizes]
	watchers []*watcher

	// matchQuorum is min.insync.replicas when it is above a majority of
	// the replicas, else 0: acks=all batches then wait after apply in held
	// (raft index order) until that many replicas match them (insync.go).
	matchQuorum int
	held        []*inflight
	// awaiting holds what waits for the leadership to settle
	// (awaitleader.go), in the order it came.
	awaiting []awaiting
	// deletes are the DeleteRecords waiting for their log-start move
	// (deleterecords.go).
	deletes  []deleteWaiter
	matches  []uint64                            // scratch for matchedIndex
	addMatch func(id, match uint64, active bool) // collects into matches, built once

	// The assignment (reassign.go) and, on the leader, the reconciliation
	// of the group's membership with it.
	replicas, adding, removing []uint64
	members                    *Membership
}

type batchKey struct {
	term uint64
	base int64
}

// inflight is a batch this leader proposed and has not yet applied.
type inflight struct {
	key       batchKey
	acks      int16
	persisted bool
	index     uint64 // raft index, once applied
	appendTs  int64
	waiters   []waiter
	proposed  time.Time // for Metrics only: apply never reads the clock
}

type waiter struct {
	ref      uint64
	replyTo  *actor.PID
	deadline uint64
}

type watcher struct {
	ref      uint64
	index    [2]int
	offset   int64
	deadline uint64
	replyTo  *actor.PID
}

// NewMachine opens the partition's log in o.Dir.
func NewMachine(o MachineOptions) (*Machine, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReplicaLagTicks == 0 {
		o.ReplicaLagTicks = defaultReplicaLagTicks
	}
	if o.ProducerExpirationMs == 0 {
		o.ProducerExpirationMs = defaultProducerExpirationMs
	}
	if o.ProducerExpiryTicks == 0 {
		o.ProducerExpiryTicks = defaultProducerExpiryTicks
	}
	l, err := Open(Options{Dir: o.Dir, SegmentBytes: o.Settings.SegmentBytes, Log: o.Log, writeErrors: o.Metrics.writeErrors(), kept: keptIndexes(o.Recovered)})
	if err != nil {
		return nil, fmt.Errorf("partition %s/%d: %w", o.Topic, o.Partition, err)
	}
	m := &Machine{o: o, log: l, producers: &ProducerState{}, inflight: map[batchKey]*inflight{}, side: map[uint64]*pb.Entry{}}
	m.addMatch = func(_, match uint64, _ bool) { m.matches = append(m.matches, match) }
	m.replicas, m.adding, m.removing = o.Replicas, o.Adding, o.Removing
	m.noteSizes()
	m.members = NewMembership(o.Group, o.Controller, o.Log)
	m.setMatchQuorum(len(o.Replicas) - len(o.Adding))
	m.publish(nil)
	return m, nil
}

// View returns the latest published view.
func (m *Machine) View() *View { return m.view.Load() }

// Close closes the log.
func (m *Machine) Close() error { return m.log.Close() }

func (m *Machine) publish(h *raftactor.Handle) {
	v := &View{
		Leader:        m.ready,
		HighWatermark: m.log.LogEnd(),
		LogEnd:        m.log.LogEnd(),
		LogStart:      m.log.LogStart(),
		Epochs:        m.epochs,
		Producers:     m.producers.Len(),
		Log:           m.log,
	}
	if m.ready {
		v.ISR = m.isr
	}
	if h != nil && h.Running() {
		v.LeaderID, v.Epoch = h.Leader(), int32(h.Term())
	}
	if m.ready {
		v.LogEnd = m.nextOffset
	}
	m.view.Store(v)
}

// Apply implements raftactor.StateMachine. It never fails: a batch that
// does not fit the log end means this replica's state is broken, and the
// partition halts loudly (the panic restarts its actor, which resets to the
// checkpoint; if it happens again the supervisor stops it).
func (m *Machine) Apply(index, term uint64, data []byte) {
	m.lastAppliedTerm = term
	m.appliedIndex = index
	defer m.recomputeColdFirst()
	if len(data) == 0 {
		m.keepSide(index, term, nil) // the leader's empty entry of a new term
		return
	}
	typ, body, err := decodeEntry(data)
	if err != nil {
		panic(fmt.Sprintf("partition %s/%d: entry %d: %v", m.o.Topic, m.o.Partition, index, err))
	}
	switch typ {
	case entryBatch:
		// Keep wrote (and verified) the batch when raft persisted it:
		// applying it makes it visible.
		if len(body) < BatchHeaderSize {
			panic(fmt.Sprintf("partition %s/%d: entry %d: %d-byte batch", m.o.Topic, m.o.Partition, index, len(body)))
		}
		h := decodeHeader(body)
		if h.BaseOffset != m.log.LogEnd() {
			panic(fmt.Sprintf("partition %s/%d: entry %d: batch at offset %d, log ends at %d", m.o.Topic, m.o.Partition, index, h.BaseOffset, m.log.LogEnd()))
		}
		if _, err := m.log.Commit(index); err != nil {
			panic(fmt.Sprintf("partition %s/%d: commit entry %d: %v", m.o.Topic, m.o.Partition, index, err))
		}
		m.lastBatch = entryID{Index: index, Term: term}
		key := batchKey{term, h.BaseOffset}
		in, mine := m.inflight[key]
		m.producers.Applied(h, h.BaseOffset)
		if epoch := h.PartitionLeaderEpoch; len(m.epochs) == 0 || epoch > m.epochs[len(m.epochs)-1].Epoch {
			m.epochs = append(append([]EpochStart(nil), m.epochs...), EpochStart{Epoch: epoch, StartOffset: h.BaseOffset})
		}
		if mine {
			delete(m.inflight, key)
			in.index = index
			m.completed = append(m.completed, in)
		}
	case entryLogStart:
		m.keepSide(index, term, data)
		start, proposed, _ := logStartBody(body)
		// The move drops the entry that becomes the boundary: its term is
		// read first. The leader's proposed boundary may be an earlier
		// entry: a move to its high watermark (DeleteRecords(-1),
		// retention of everything) with batches in flight there starts
		// the log at the first of them, applied since, and the side entry
		// before it. It serves when the entry is already gone (a replay
		// after a restart that found the log start ahead).
		now, _ := m.boundaryAfter(max(start, m.log.LogStart()))
		retired := m.log.RetiredSegments()
		if err := m.log.AdvanceLogStart(start); err != nil {
			panic(fmt.Sprintf("partition %s/%d: entry %d: advance log start: %v", m.o.Topic, m.o.Partition, index, err))
		}
		if m.log.RetiredSegments() > retired {
			m.releaseDue = true
		}
		m.pruneSide(0, true)
		m.learnBoundary(now, proposed)
		if _, _, ok := m.Boundary(); ok {
			m.pruneBelowBoundary()
		}
	case entryExpireProducers:
		m.keepSide(index, term, data)
		cutoff := expireProducersCutoff(body)
		n := m.producers.ExpireProducers(cutoff)
		if m.ready {
			m.o.Log.Info().Int("expired", n).Int("producers", m.producers.Len()).Int64("cutoff_ms", cutoff).
				Msg("partition forgot idle producers")
		}
	}
}

// checkpoint is the partition's snapshot: metadata only. The data is in the
// segments, flushed before the checkpoint is taken.
type checkpoint struct {
	LogStart  int64        `json:"log_start"`
	LogEnd    int64        `json:"log_end"`
	Producers []byte       `json:"producers"`
	Epochs    []EpochStart `json:"epochs"`
	Side      [][]byte     `json:"side,omitempty"`  // raft entries without a batch, from the log's first batch on
	Boundary  entryID      `json:"boundary"`        // the raft entry just below the cold log (coldlog.go)
	Confs     []confJSON   `json:"confs,omitempty"` // the group's configurations from the boundary on (coldlog.go)
	// LastBatch is the raft entry of the batch that ends at LogEnd
	// (zero when none does); nil in checkpoints from before it was kept.
	LastBatch *entryID `json:"last_batch,omitempty"`
}

// Snapshot implements raftactor.StateMachine: it describes the segments up
// to the applied end, which Flush makes durable.
func (m *Machine) Snapshot() ([]byte, error) {
	prod, err := m.producers.MarshalBinary()
	if err != nil {
		return nil, err
	}
	side, err := m.marshalSide()
	if err != nil {
		return nil, err
	}
	confs, err := marshalConfs(m.confs)
	if err != nil {
		return nil, err
	}
	last := m.lastBatch
	return json.Marshal(checkpoint{LogStart: m.log.LogStart(), LogEnd: m.log.LogEnd(), Producers: prod, Epochs: m.epochs, Side: side, Boundary: m.boundary, Confs: confs, LastBatch: &last})
}

// Flush implements raftactor.Flusher: it makes the segments durable up to
// where they end now. The group calls it on a goroutine of its own; the Log
// allows that while the actor appends.
func (m *Machine) Flush() error {
	if err := m.log.Flush(); err != nil {
		return fmt.Errorf("flush partition log: %w", err)
	}
	return nil
}

// Restore implements raftactor.StateMachine: the log goes back to the
// checkpoint's end (raft replays what follows from the WAL).
func (m *Machine) Restore(snap *pb.Snapshot) error {
	var cp checkpoint
	if len(snap.GetData()) > 0 {
		if err := json.Unmarshal(snap.GetData(), &cp); err != nil {
			return fmt.Errorf("decode partition checkpoint: %w", err)
		}
	} else {
		// The empty snapshot: the whole log replays, log-start moves
		// included, so the start goes back to the first segment on disk
		// (nothing is released before a checkpoint is durable).
		if err := m.log.RewindLogStart(0); err != nil {
			return err
		}
		cp.LogStart, cp.LogEnd = m.log.LogStart(), m.log.LogStart()
	}
	leaders := m.discarded
	m.discarded = false
	index := snap.GetMetadata().GetIndex()
	if !leaders {
		// An actor restart may restore a checkpoint older than a log-start
		// move it applied: the segments from the checkpoint on come back,
		// and the replay retires them again.
		if err := m.log.RewindLogStart(cp.LogStart); err != nil {
			return err
		}
	}
	switch {
	case m.log.WrittenEnd() < cp.LogEnd:
		// A snapshot from the leader for a replica behind its retention;
		// at local recovery this would mean flushed segments were lost.
		m.o.Log.Warn().Int64("log_end", m.log.WrittenEnd()).Int64("snapshot_log_end", cp.LogEnd).
			Uint64("snapshot_index", snap.GetMetadata().GetIndex()).Msg("partition log restarts at the snapshot's end")
		if err := m.log.Reset(cp.LogEnd); err != nil {
			return err
		}
	case leaders:
		// Discard left only what was applied, which agrees with the
		// leader's log up to the snapshot's end.
		if err := m.log.TruncateTo(cp.LogEnd); err != nil {
			return err
		}
	default:
		// Usually the local checkpoint: what follows it in the segments is
		// the raft log after it, which raft replays (Recover sorts out what
		// a crash left). But it may be a leader's snapshot that became
		// durable just before a crash, before Discard: the segments then
		// hold this follower's own, perhaps conflicting, entries.
		switch m.segmentsAgree(cp, index) {
		case agreeAll:
			if err := m.log.SetHighWatermark(cp.LogEnd); err != nil {
				return err
			}
		case agreeBelow:
			m.o.Log.Warn().Int64("offset", cp.LogEnd).Uint64("snapshot_index", index).
				Msg("partition log holds entries the snapshot replaced; truncating them")
			if err := m.log.TruncateTo(cp.LogEnd); err != nil {
				return err
			}
		default:
			m.o.Log.Warn().Int64("offset", cp.LogEnd).Uint64("snapshot_index", index).
				Msg("partition log disagrees with the snapshot; it restarts at the snapshot's end")
			if err := m.log.Reset(cp.LogEnd); err != nil {
				return err
			}
		}
	}
	m.lastBatch = entryID{}
	if cp.LastBatch != nil {
		m.lastBatch = *cp.LastBatch
	} else if _, i, t, ok := m.log.BatchInfo(m.log.LogEnd() - 1); ok {
		// A checkpoint from before LastBatch was kept: the next one names
		// it, from the segments that agree with this one.
		m.lastBatch = entryID{Index: i, Term: t}
	}
	if cp.LogStart > m.log.LogStart() {
		if err := m.log.AdvanceLogStart(cp.LogStart); err != nil {
			return err
		}
	}
	m.producers = &ProducerState{}
	if len(cp.Producers) > 0 {
		if err := m.producers.UnmarshalBinary(cp.Producers); err != nil {
			return err
		}
	}
	m.epochs = cp.Epochs
	if err := m.unmarshalSide(cp.Side); err != nil {
		return err
	}
	m.boundary = cp.Boundary
	confs, err := unmarshalConfs(cp.Confs)
	if err != nil {
		return err
	}
	m.confs = confs
	m.appliedIndex = snap.GetMetadata().GetIndex()
	m.dropConfsAbove(m.appliedIndex)
	// The side entries are the checkpoint's cold log's (with those of a log
	// that still starts at offset 0, the bootstrap conf changes before its
	// first batch: a replica added later starts empty and takes the whole
	// log from index 1 as appends). Those below the log's first batch sat
	// between batches that are gone when the log start is ahead of the
	// checkpoint's (segments released after a later move). The boundary
	// is then the entry below that batch, read before it is dropped, and
	// when the log holds nothing (a leader's snapshot), the checkpoint's
	// last batch or the snapshot's own entry.
	below, _ := m.boundaryAfter(m.log.LogStart())
	m.pruneSide(snap.GetMetadata().GetIndex(), m.log.LogStart() > cp.LogStart)
	m.learnBoundary(below, m.lastBatch, entryID{Index: snap.GetMetadata().GetIndex(), Term: snap.GetMetadata().GetTerm()})
	if m.log.LogStart() > 0 {
		m.pruneBelowBoundary()
	}
	if len(m.confs) == 0 {
		m.seedConfs(snap.GetMetadata().GetIndex(), snap.GetMetadata().GetConfState())
	}
	// Segments retired before a restart, or again by this restore, are
	// released by a checkpoint like those of a log-start move.
	m.releaseDue = m.log.RetiredSegments() > 0
	m.publish(nil)
	return nil
}

// Keep implements raftactor.LogKeeper: the segments are the partition's
// raft log. Each batch entry's batch is written into the log's tail now,
// when raft persists it, and the WAL gets a reference; Apply then only
// moves the high watermark. A batch this leader produced in this term was
// verified then; any other is verified here.
func (m *Machine) Keep(ents []*pb.Entry) ([]*pb.Entry, error) {
	start := time.Now()
	// A new leader's entries replace this follower's conflicting ones.
	if err := m.log.TruncateRaft(ents[0].GetIndex()); err != nil {
		return nil, fmt.Errorf("partition %s/%d: %w", m.o.Topic, m.o.Partition, err)
	}
	out := ents
	for i, e := range ents {
		body, err := m.batchOf(e)
		if err != nil {
			return nil, err
		}
		if body == nil {
			continue
		}
		h := decodeHeader(body)
		if _, mine := m.inflight[batchKey{e.GetTerm(), h.BaseOffset}]; mine {
			err = m.log.AppendVerified(body, h, e.GetIndex(), e.GetTerm())
		} else {
			h, err = ParseBatch(body)
			if err == nil {
				err = m.log.AppendVerified(body, h, e.GetIndex(), e.GetTerm())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("partition %s/%d: keep entry %d: %w", m.o.Topic, m.o.Partition, e.GetIndex(), err)
		}
		if &out[0] == &ents[0] {
			out = slices.Clone(ents)
		}
		out[i] = &pb.Entry{Index: e.Index, Term: e.Term, Type: e.Type, Data: refOf(h).entry()}
	}
	if &out[0] != &ents[0] {
		m.o.Metrics.kept(start)
	}
	return out, nil
}

// References implements raftactor.LogKeeper: each batch entry, whose batch
// Keep wrote, becomes the reference Keep returned for it; the other entries
// stay as they are, as in Keep.
func (m *Machine) References(ents []*pb.Entry) ([]*pb.Entry, error) {
	out := slices.Clone(ents)
	for i, e := range ents {
		body, err := m.batchOf(e)
		if err != nil {
			return nil, err
		}
		if body != nil {
			out[i] = &pb.Entry{Index: e.Index, Term: e.Term, Type: e.Type, Data: refOf(decodeHeader(body)).entry()}
		}
	}
	return out, nil
}

// batchOf returns the record batch a raft entry carries, at least a
// header long, or nil for an entry of another kind (empty, a conf change,
// a side entry, a reference).
func (m *Machine) batchOf(e *pb.Entry) ([]byte, error) {
	if e.GetType() != pb.EntryNormal || len(e.GetData()) == 0 {
		return nil, nil
	}
	typ, body, err := decodeEntry(e.GetData())
	if err != nil {
		return nil, fmt.Errorf("partition %s/%d: entry %d: %w", m.o.Topic, m.o.Partition, e.GetIndex(), err)
	}
	if typ != entryBatch {
		return nil, nil
	}
	if len(body) < BatchHeaderSize {
		return nil, fmt.Errorf("partition %s/%d: entry %d: %d-byte batch", m.o.Topic, m.o.Partition, e.GetIndex(), len(body))
	}
	return body, nil
}

// Sync implements raftactor.LogKeeper: the storage actor calls it in its
// group commit (never with fsync off).
func (m *Machine) Sync() error {
	began := time.Now()
	if err := m.log.Sync(); err != nil {
		return fmt.Errorf("sync partition log: %w", err)
	}
	m.o.Metrics.synced(began)
	return nil
}

// Release implements raftactor.LogKeeper: the segments that log-start moves
// retired go once a durable checkpoint covers every batch in them.
func (m *Machine) Release(index uint64) error {
	return m.log.ReleaseSegments(index)
}

// Discard implements raftactor.LogKeeper: the log's tail goes, and the
// next Restore, the leader's snapshot, starts from what was applied.
func (m *Machine) Discard() error {
	m.discarded = true
	return m.log.TruncateTo(m.log.LogEnd())
}

// Recover implements raftactor.LogKeeper. Each batch entry the WAL gave back
// must find its batch in the segments under its raft index and term: a
// reference is replaced by the batch, and a whole batch (a WAL written
// before the segments were the raft log) is written there if it is missing.
// The first reference without its batch ends the entries that count; the
// segments' tail after the last entry that counts is cut.
func (m *Machine) Recover(ents []*pb.Entry) ([]*pb.Entry, error) {
	wrote := false
	n := 0
	for ; n < len(ents); n++ {
		e := ents[n]
		if e.GetType() != pb.EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		if r, ok := keptRefOf(e.GetData()); ok {
			batch, term, err := m.log.EntryByRaftIndex(e.GetIndex())
			if err != nil && !errors.Is(err, ErrRaftIndexNotInLog) {
				return nil, fmt.Errorf("partition %s/%d: entry %d: %w", m.o.Topic, m.o.Partition, e.GetIndex(), err)
			}
			if err != nil || term != e.GetTerm() || len(batch) < BatchHeaderSize || refOf(decodeHeader(batch)) != r {
				m.o.Log.Warn().Uint64("index", e.GetIndex()).Int64("offset", r.base).Int("entries_dropped", len(ents)-n).
					Msg("the segments lack a persisted entry's batch (a crash before its sync); dropping it and the entries after it")
				break
			}
			ents[n] = &pb.Entry{Index: e.Index, Term: e.Term, Type: e.Type, Data: batchEntry(batch)}
			continue
		}
		typ, body, err := decodeEntry(e.GetData())
		if err != nil || typ != entryBatch {
			continue // a side entry, all in the WAL; Apply judges it
		}
		have, term, err := m.log.EntryByRaftIndex(e.GetIndex())
		if err == nil && term == e.GetTerm() && bytes.Equal(have, body) {
			continue
		}
		if err := m.log.TruncateRaft(e.GetIndex()); err != nil {
			return nil, fmt.Errorf("partition %s/%d: %w", m.o.Topic, m.o.Partition, err)
		}
		if err := m.log.Append(body, e.GetIndex(), e.GetTerm()); err != nil {
			return nil, fmt.Errorf("partition %s/%d: rewrite entry %d: %w", m.o.Topic, m.o.Partition, e.GetIndex(), err)
		}
		wrote = true
	}
	ents = ents[:n]
	last := m.appliedIndex
	if n > 0 {
		last = ents[n-1].GetIndex()
	}
	if err := m.log.TruncateRaft(last + 1); err != nil {
		return nil, fmt.Errorf("partition %s/%d: %w", m.o.Topic, m.o.Partition, err)
	}
	if wrote {
		if err := m.Sync(); err != nil {
			return nil, err
		}
	}
	return ents, nil
}

// How a log agrees with a checkpoint (segmentsAgree).
const (
	agreeAll   = iota // the checkpoint's batches, then entries after it
	agreeBelow        // the checkpoint's batches, then entries it replaced
	agreeNone         // other batches
)

// segmentsAgree checks the log against the checkpoint cp at raft index
// index. Below cp.LogEnd the log must end with the checkpoint's last batch
// (raft's log matching then vouches for everything before it); from
// cp.LogEnd on, a batch must start there and come from an entry after
// index.
func (m *Machine) segmentsAgree(cp checkpoint, index uint64) int {
	if last := cp.LastBatch; last != nil && last.Index > 0 {
		if _, i, t, ok := m.log.BatchInfo(cp.LogEnd - 1); ok && (i != last.Index || t != last.Term) {
			return agreeNone
		}
	}
	if base, i, _, ok := m.log.BatchInfo(cp.LogEnd); ok {
		if base != cp.LogEnd {
			return agreeNone
		}
		if i <= index {
			return agreeBelow
		}
	}
	return agreeAll
}

// Receive implements raftactor.Extension.
func (m *Machine) Receive(h *raftactor.Handle, ctx actor.Context, msg any) {
	switch r := msg.(type) {
	case *Produce:
		m.settleAwaiting(h, ctx)
		if len(m.awaiting) > 0 {
			m.awaitLeader(h, awaiting{produce: r}) // behind those held before it
			return
		}
		m.produce(h, ctx, r, true)
	case *SetAssignment:
		m.setAssignment(h, r)
	case *SetSettings:
		m.setSettings(h, r.Settings)
	case *DeleteRecords:
		m.deleteRecords(h, ctx, r)
	case *WatchFetch:
		if !m.ready || m.log.LogEnd() > r.Offset {
			ctx.Send(r.ReplyTo, &FetchReady{Ref: r.Ref, Index: r.Index})
			return
		}
		m.watchers = append(m.watchers, &watcher{ref: r.Ref, index: r.Index, offset: r.Offset, deadline: m.ticks + r.TimeoutTicks, replyTo: r.ReplyTo})
	}
}

func (m *Machine) produceErr(ctx actor.Context, r *Produce, err error) {
	if r.ReplyTo != nil {
		done := &ProduceDone{Ref: r.Ref, BaseOffset: -1, LogAppendTime: -1, LogStartOffset: m.log.LogStart(), Err: err}
		if re := (*RecordsError)(nil); errors.As(err, &re) {
			done.RecordErrors = re.Records
		}
		ctx.Send(r.ReplyTo, done)
	}
}

// produce validates, checks producer sequences against applied state plus
// what is in flight, stamps offsets and the leader epoch, and proposes. A
// request that may wait is held while the leadership changes hands
// (awaitleader.go).
func (m *Machine) produce(h *raftactor.Handle, ctx actor.Context, r *Produce, mayWait bool) {
	// A leader handing its leadership over serves nothing either: raft
	// drops proposals while the transfer runs. The request waits as the
	// client sent it, since the stamping below changes its bytes, which a
	// request served again must not carry.
	if !m.ready || !h.IsLeader() || h.Term() != m.readyTerm || h.Transferring() {
		if mayWait && m.changing(h) {
			m.awaitLeader(h, awaiting{produce: r})
			return
		}
		m.produceErr(ctx, r, kerr.NotLeaderForPartition)
		return
	}
	if r.Acks == -1 && len(m.isr) < m.o.Settings.MinInsyncReplicas {
		m.produceErr(ctx, r, fmt.Errorf("%w: %d replicas in sync, min.insync.replicas is %d", kerr.NotEnoughReplicas, len(m.isr), m.o.Settings.MinInsyncReplicas))
		return
	}
	if err := m.o.Space.Check(); err != nil {
		// Retriable: the client retries until its delivery timeout, and
		// gets in as soon as space comes back.
		m.produceErr(ctx, r, fmt.Errorf("%w: %v", kerr.KafkaStorageError, err))
		return
	}
	b, hd, maxTs, err := m.validate(r.Records, r.Count)
	if err != nil {
		// A client's mistake, answered to it: at debug, as a client
		// that keeps sending bad batches must not flood the log.
		m.o.Log.Debug().Err(err).Msg("produce refused")
		m.produceErr(ctx, r, err)
		return
	}
	if hd.IsIdempotent() {
		v, err := m.producers.Check(hd)
		switch {
		case errors.Is(err, ErrOutOfOrderSequence):
			m.produceErr(ctx, r, fmt.Errorf("%w: %v", kerr.OutOfOrderSequenceNumber, err))
			return
		case errors.Is(err, ErrInvalidProducerEpoch):
			m.produceErr(ctx, r, fmt.Errorf("%w: %v", kerr.InvalidProducerEpoch, err))
			return
		case err != nil:
			m.produceErr(ctx, r, fmt.Errorf("%w: %v", kerr.InvalidRecord, err))
			return
		case v.Duplicate:
			m.answerDuplicate(ctx, r, v)
			return
		}
	}

	term := h.Term()
	appendTs := int64(-1)
	if m.o.Settings.LogAppendTime {
		appendTs = m.o.Now().UnixMilli()
	}
	// The batch is stamped in place: the request's bytes are the
	// proposal, and raft copies them into its log.
	offset := m.nextOffset
	SetBaseOffset(b, offset)
	SetPartitionLeaderEpoch(b, int32(term))
	if appendTs >= 0 {
		setLogAppendTime(b, appendTs)
	} else {
		setCreateTime(b, maxTs)
	}
	payload := b
	if offset >= maxRawBatchOffset {
		payload = batchEntry(b)
	}
	key := batchKey{term, offset}
	proposed := time.Now()
	if err := h.ProposeRaw([][]byte{payload}); err != nil {
		m.produceErr(ctx, r, fmt.Errorf("%w: %v", kerr.NotLeaderForPartition, err))
		return
	}
	m.nextOffset = offset + int64(hd.LastOffsetDelta) + 1
	if hd.IsIdempotent() {
		stamped := decodeHeader(b) // the proposed header (the MaxTimestamp stamped above), verified above
		if err := m.producers.Proposed(stamped, offset); err != nil {
			m.o.Log.Error().Err(err).Msg("recording a proposed batch")
		}
	}
	in := &inflight{key: key, acks: r.Acks, appendTs: appendTs, proposed: proposed}
	m.inflight[key] = in
	if r.ReplyTo != nil && r.Acks != 0 {
		in.waiters = append(in.waiters, waiter{ref: r.Ref, replyTo: r.ReplyTo, deadline: m.ticks + r.TimeoutTicks})
	}
	m.publish(h)
	if r.Acks == 0 {
		m.proposedNoAcks(ctx, r, offset)
	}
}

// validate checks the records of one partition of a produce request, as
// Kafka's ProduceRequest.validateRecords, UnifiedLog and LogValidator
// check a client's records, and returns its one batch, the batch's header
// and the maxTimestamp a CreateTime topic stores it with. An error wraps
// the kerr.Error to answer, and a *RecordsError if the batch is refused
// for some of its records. count is CountRecords' verdict on records; with
// none the count is checked here.
func (m *Machine) validate(records []byte, count CountCheck) (b []byte, h BatchHeader, maxTs int64, err error) {
	batches, err := SplitBatches(records)
	switch {
	case err != nil:
		return nil, h, 0, fmt.Errorf("%w: %v", kerr.CorruptMessage, err)
	case len(batches) != 1:
		// Produce v3 and later carry exactly one batch per partition.
		return nil, h, 0, fmt.Errorf("%w: %d record batches, a produce request carries one per partition", kerr.InvalidRecord, len(batches))
	}
	b = batches[0]
	h, err = parseBatchHeader(b)
	if err == nil {
		err = validateClient(h)
	}
	switch {
	case errors.Is(err, ErrUnsupportedMagic) && (h.Magic == 0 || h.Magic == 1):
		// The message formats before 0.11: Kafka refuses them in
		// produce v3+ (ProduceRequest.validateRecords).
		return nil, h, 0, fmt.Errorf("%w: %v", kerr.InvalidRecord, err)
	case errors.Is(err, ErrInvalidRecord):
		return nil, h, 0, fmt.Errorf("%w: %v", kerr.InvalidRecord, err)
	case errors.Is(err, ErrUnknownCompression):
		return nil, h, 0, fmt.Errorf("%w: %v", kerr.UnknownServerError, err)
	case err != nil:
		// A bad CRC or framing, or a magic no Kafka has.
		return nil, h, 0, fmt.Errorf("%w: %v", kerr.CorruptMessage, err)
	case len(b) > m.o.Settings.MaxMessageBytes:
		return nil, h, 0, fmt.Errorf("%w: batch of %d bytes, max.message.bytes is %d", kerr.MessageTooLarge, len(b), m.o.Settings.MaxMessageBytes)
	case m.o.MaxEntryBytes > 0 && len(b) > m.o.MaxEntryBytes:
		return nil, h, 0, fmt.Errorf("%w: batch of %d bytes, the replication transport carries at most %d (raft.max_frame_bytes)", kerr.MessageTooLarge, len(b), m.o.MaxEntryBytes)
	case h.IsTransactional():
		return nil, h, 0, fmt.Errorf("%w: transactions are not supported", kerr.InvalidRecord)
	}
	if !count.done {
		count.err = countCompressed(b, h)
	}
	if count.err != nil {
		return nil, h, 0, fmt.Errorf("%w: %v", kerr.InvalidRecord, count.err)
	}
	maxTs, err = validateRecords(b, h, timestampRuleOf(m.o.Settings, m.o.Now().UnixMilli()))
	switch {
	case errors.Is(err, ErrInvalidTimestamp):
		return nil, h, 0, fmt.Errorf("%w: %w", kerr.InvalidTimestamp, err)
	case err != nil:
		return nil, h, 0, fmt.Errorf("%w: %v", kerr.InvalidRecord, err)
	}
	return b, h, maxTs, nil
}

// proposedNoAcks answers an acks=0 Produce that was proposed (or was a
// duplicate of a batch that was): its connection only needs to know that
// it was not refused.
func (m *Machine) proposedNoAcks(ctx actor.Context, r *Produce, base int64) {
	if r.ReplyTo != nil {
		ctx.Send(r.ReplyTo, &ProduceDone{Ref: r.Ref, BaseOffset: base, LogAppendTime: -1, LogStartOffset: m.log.LogStart()})
	}
}

// answerDuplicate answers a retried batch as its original was answered: at
// once if the original is applied (and, for acks=all, not held), else when
// it is. An applied original that is not held is on every replica of the
// ISR: a replica joins the ISR only by matching the leader's log end, and a
// new leader's ISR is the replicas that matched the entry of its term.
func (m *Machine) answerDuplicate(ctx actor.Context, r *Produce, v Verdict) {
	if r.Acks == 0 {
		m.proposedNoAcks(ctx, r, v.Original.BaseOffset)
		return
	}
	if r.ReplyTo == nil {
		return
	}
	w := waiter{ref: r.Ref, replyTo: r.ReplyTo, deadline: m.ticks + r.TimeoutTicks}
	if v.InFlight {
		for key, in := range m.inflight {
			if key.base == v.Original.BaseOffset {
				in.waiters = append(in.waiters, w)
				return
			}
		}
	}
	if r.Acks == -1 && m.holdDuplicate(v.Original.BaseOffset, w) {
		return
	}
	ts := int64(-1)
	if m.o.Settings.LogAppendTime {
		ts = v.Original.MaxTimestamp
	}
	ctx.Send(r.ReplyTo, &ProduceDone{Ref: r.Ref, BaseOffset: v.Original.BaseOffset, LogAppendTime: ts, LogStartOffset: m.log.LogStart()})
}

// setLogAppendTime stamps the broker's time into a batch of a
// LogAppendTime topic: the timestamp-type bit and maxTimestamp, both inside
// the CRC, which is recomputed.
func setLogAppendTime(b []byte, ts int64) {
	const attrs, maxTs, crcAt = 21, 35, 17
	b[attrs+1] |= 0x08
	for i := 0; i < 8; i++ {
		b[maxTs+i] = byte(uint64(ts) >> (56 - 8*i))
	}
	crc := crc32.Checksum(b[attrs:], crc32.MakeTable(crc32.Castagnoli))
	b[crcAt], b[crcAt+1], b[crcAt+2], b[crcAt+3] = byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc)
}

func (m *Machine) answer(ctx actor.Context, in *inflight, w waiter) {
	ctx.Send(w.replyTo, &ProduceDone{Ref: w.ref, BaseOffset: in.key.base, LogAppendTime: in.appendTs, LogStartOffset: m.log.LogStart()})
}

// Persisted implements raftactor.Extension: acks=1 answers once the leader
// has the batch durably.
func (m *Machine) Persisted(h *raftactor.Handle, ctx actor.Context, entries []*pb.Entry) {
	for _, e := range entries {
		typ, body, err := decodeEntry(e.GetData())
		if err != nil || typ != entryBatch || len(body) < 8 {
			continue
		}
		key := batchKey{e.GetTerm(), int64(bodyOffset(body))}
		in, ok := m.inflight[key]
		if !ok || in.persisted {
			continue
		}
		in.persisted = true
		m.o.Metrics.durable(in.proposed)
		if in.acks == 1 {
			for _, w := range in.waiters {
				m.answer(ctx, in, w)
			}
			in.waiters = nil
		}
	}
}

// Applied implements raftactor.Extension: acks=all answers, the readiness
// barrier, fetch wake-ups, the new view.
func (m *Machine) Applied(h *raftactor.Handle, ctx actor.Context) {
	if m.confChanged {
		// A replica the group's membership lost leaves the leader's ISR
		// now, not at the next look: it is out of the group before the
		// controller completes its reassignment, so the ISR broadcast
		// and answered then holds only replicas that remain, as Kafka's
		// completing record takes the removed ones out of the ISR
		// (PartitionReassignmentReplicas.maybeCompleteReassignment).
		m.confChanged = false
		if m.ready {
			m.updateISR(h)
		}
	}
	// The new high watermark is visible before anyone hears of it: a
	// client that has its acks=all answer must find its record below
	// the end ListOffsets and OffsetForLeaderEpoch read from the view,
	// as Kafka acknowledges once the high watermark covers the batch.
	m.publish(h)
	for _, in := range m.completed {
		m.o.Metrics.applied(in.proposed)
		if m.matchQuorum > 0 && in.acks == -1 {
			m.held = append(m.held, in)
			continue
		}
		for _, w := range in.waiters {
			m.answer(ctx, in, w)
		}
	}
	m.completed = m.completed[:0]
	m.settleHeld(h, ctx)
	m.checkReady(h, ctx)
	m.settleAwaiting(h, ctx)
	m.settleDeletes(ctx, false)
	m.wake(ctx, false)
	m.publish(h)
}

// checkReady opens the partition for produce once this leader has applied
// an entry of its own term: everything before it is then in the log, so the
// applied log end is where its own offsets start. It tells every broker
// at once (Announce): Metadata on a broker that hosts no replica names the
// new leader from then on, and CreateTopics answers there once its new
// partitions' leaders have all said so.
func (m *Machine) checkReady(h *raftactor.Handle, ctx actor.Context) {
	if m.ready || !h.IsLeader() || m.lastAppliedTerm != h.Term() {
		return
	}
	m.ready, m.readyTerm, m.nextOffset = true, h.Term(), m.log.LogEnd()
	// A new leader's ISR is itself and the replicas that have just shown
	// they are caught up: a majority acknowledged the entry of its term.
	// The others join at the next look (updateISR) once they match its
	// log end. Kafka's new leader inherits the controller's ISR, which has
	// already lost the replicas that lagged or died; starting from every
	// replica instead would count a long-dead one in sync for
	// replica.lag.time.max.ms and let min.insync.replicas be passed.
	// Its first ISR is no change: this node never knew the previous
	// leader's, so the ready line carries it instead.
	m.caughtUp.Reset()
	m.setMatchQuorum(len(h.ConfState().GetVoters()))
	m.isr = m.inSync(h)
	m.publish(h)
	// At debug: the raft group logged the role change at info.
	m.o.Log.Debug().Uint64("term", m.readyTerm).Int64("log_end", m.nextOffset).Uints64("isr", m.isr).Msg("partition leader ready")
	if m.o.Announce != nil {
		m.o.Announce(ctx, []netactor.LeaderInfo{{Group: m.o.Group, Leader: h.NodeID(), Term: m.readyTerm, ISR: m.isr}})
	}
}

// LeaderChanged implements raftactor.Extension: whatever this node had in
// flight as leader may or may not commit, so its waiters learn that the
// outcome is unknown and retry (an idempotent producer's retry is then
// recognised as a duplicate), once the new leader is known
// (awaitleader.go).
func (m *Machine) LeaderChanged(h *raftactor.Handle, ctx actor.Context) {
	if m.ready && (!h.IsLeader() || h.Term() != m.readyTerm) {
		m.ready = false
		for _, in := range m.inflight {
			for _, w := range in.waiters {
				m.notLeader(h, ctx, w)
			}
		}
		m.inflight = map[batchKey]*inflight{}
		for _, in := range m.held {
			for _, w := range in.waiters {
				m.notLeader(h, ctx, w)
			}
		}
		clear(m.held)
		m.held = m.held[:0]
		m.producers.DiscardInFlight()
		m.settleDeletes(ctx, true)
	}
	m.checkReady(h, ctx)
	m.settleAwaiting(h, ctx)
	m.wake(ctx, true)
	m.publish(h)
}

// TicksCanWait implements raftactor.TickSleeper: a partition that does not
// lead has no producer waiting, no fetch watching and no periodic duty, so
// Tick only counts; unless it holds requests for a leadership to settle.
func (m *Machine) TicksCanWait() bool {
	return !m.ready && len(m.inflight) == 0 && len(m.watchers) == 0 && !m.releaseDue && len(m.awaiting) == 0 && len(m.deletes) == 0
}

var _ raftactor.Quiescer = (*Machine)(nil)

// CanQuiesce implements raftactor.Quiescer: the leader's group may stop
// ticking raft while nothing waits on it (a produce, a batch held for
// min.insync.replicas, a DeleteRecords, a checkpoint), its membership is
// the assignment, every replica is in its ISR, and it is the preferred
// leader (PreferLeader would otherwise hand the leadership over). The ISR
// is sampled first: a replica whose broker restarted leaves it at once.
func (m *Machine) CanQuiesce(h *raftactor.Handle) bool {
	if !m.ready || len(m.inflight) > 0 || len(m.held) > 0 || len(m.awaiting) > 0 || len(m.deletes) > 0 || m.releaseDue ||
		len(m.adding) > 0 || len(m.removing) > 0 || !raftactor.InConf(h.ConfState(), m.replicas) {
		return false
	}
	if len(m.replicas) > 0 && m.replicas[0] != h.NodeID() && !h.Stopping(m.replicas[0]) {
		return false
	}
	m.updateISR(h)
	return len(m.isr) == len(m.replicas)
}

// QuietTicks implements raftactor.Quiescer: while its raft sleeps, a
// partition with a fetch or a request waiting is ticked every tick (their
// timeouts are in ticks); an idle follower not at all; an idle leader at
// its next retention check or producer expiry, each of which wakes raft
// if it proposes.
func (m *Machine) QuietTicks() uint64 {
	if len(m.inflight) > 0 || len(m.watchers) > 0 || len(m.held) > 0 || len(m.awaiting) > 0 || len(m.deletes) > 0 || m.releaseDue {
		return 0
	}
	if !m.ready {
		return math.MaxUint64
	}
	return min(retentionEveryTicks-m.ticks%retentionEveryTicks, m.o.ProducerExpiryTicks-m.ticks%m.o.ProducerExpiryTicks)
}

// Tick implements raftactor.Extension: the checkpoint that releases
// retired segments, waiter timeouts, retention, producer expiry, the
// preferred leader, the ISR and the batches held for min.insync.replicas.
func (m *Machine) Tick(h *raftactor.Handle, ctx actor.Context) {
	m.ticks++
	if m.releaseDue {
		// Once per log-start move that retired segments: the checkpoint
		// covers every batch in them (they lie below an applied entry).
		m.releaseDue = false
		h.Checkpoint(ctx)
	}
	for _, in := range m.inflight {
		m.expireWaiters(ctx, in)
	}
	m.wake(ctx, false)
	if m.ready && m.ticks%retentionEveryTicks == 0 {
		m.enforceRetention(h)
	}
	if m.ready && m.ticks%m.o.ProducerExpiryTicks == 0 {
		m.expireProducers(h)
	}
	if m.ready && m.ticks%PreferredLeaderEveryTicks == 0 {
		PreferLeader(h, m.replicas, m.o.Log)
	}
	if m.ready {
		m.members.Tick(h, ctx, m.replicas, m.adding, m.removing)
		m.setMatchQuorum(len(h.ConfState().GetVoters()))
	}
	if m.ready && m.ticks%isrEveryTicks == 0 {
		m.updateISR(h)
	}
	m.settleHeld(h, ctx)
	m.expireHeld(ctx)
	m.settleAwaiting(h, ctx)
	m.settleDeletes(ctx, false)
}

// isrEveryTicks paces the ISR bookkeeping (5 ticks: 250 ms at 50 ms).
const isrEveryTicks = 5

// updateISR applies Kafka's time rule on the leader (inSync) and
// republishes the view when the set changes.
func (m *Machine) updateISR(h *raftactor.Handle) {
	isr := m.inSync(h)
	if !slices.Equal(isr, m.isr) {
		m.o.Log.Info().Uints64("isr", isr).Uints64("was", m.isr).Msg("partition ISR changed")
		m.isr = isr
		m.publish(h)
	}
}

// inSync returns the leader's ISR by Kafka's time rule, sorted: a replica
// is in sync while it has caught up with the leader within
// replica.lag.time.max.ms (raftactor.InSyncTracker).
func (m *Machine) inSync(h *raftactor.Handle) []uint64 {
	return m.caughtUp.Sample(h, m.ticks, m.replicas, m.o.ReplicaLagTicks)
}

// retentionEveryTicks paces retention checks (100 ticks: 5 s at 50 ms).
const retentionEveryTicks = 100

// enforceRetention proposes a new log start when retention would drop
// segments: moving the log start is a proposal so all replicas agree.
func (m *Machine) enforceRetention(h *raftactor.Handle) {
	p := m.log.RetentionPoint(m.o.Now().UnixMilli(), m.o.Settings.RetentionMs, m.o.Settings.RetentionBytes)
	if p <= m.log.LogStart() {
		return
	}
	boundary, ok := m.boundaryAfter(p)
	if err := h.ProposeRaw([][]byte{logStartEntry(p, boundary, ok)}); err != nil {
		m.o.Log.Debug().Err(err).Msg("propose retention")
	}
}

// expireProducers proposes that the replicas forget the producers idle for
// longer than producer.id.expiration.ms, if the applied state has any: the
// producer state is replicated, so the leader's clock decides once, in the
// entry, and every replica applies the same cutoff.
func (m *Machine) expireProducers(h *raftactor.Handle) {
	cutoff := m.o.Now().UnixMilli() - m.o.ProducerExpirationMs
	if !m.producers.anyExpired(cutoff) {
		return
	}
	if err := h.ProposeRaw([][]byte{expireProducersEntry(cutoff)}); err != nil {
		m.o.Log.Debug().Err(err).Msg("propose producer expiry")
	}
}

// wake answers fetch watchers whose data arrived, whose deadline passed, or
// all of them (leadership changed).
func (m *Machine) wake(ctx actor.Context, all bool) {
	if len(m.watchers) == 0 {
		return
	}
	end := m.log.LogEnd()
	kept := m.watchers[:0]
	for _, w := range m.watchers {
		if all || end > w.offset || m.ticks >= w.deadline {
			ctx.Send(w.replyTo, &FetchReady{Ref: w.ref, Index: w.index})
		} else {
			kept = append(kept, w)
		}
	}
	m.watchers = kept
}
