package partition

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla/flotilla/raftactor"
)

// The Machine is its raft group's ColdLog (raftactor.ColdLog): raft reads
// applied entries back from the partition instead of keeping them in
// memory. A batch entry is rebuilt from the segment exactly as it was
// proposed (the stored batch is the stamped one); every other applied entry
// — a leader's empty entry, a log-start move, a conf change — is kept in
// the side log, which is small (a few per term) and goes into the
// checkpoint.
//
// The type assertion in the raft group decides whether it gets tiered
// storage at all; this one keeps it from silently failing.
var _ raftactor.ColdLog = (*Machine)(nil)

// It keeps the configurations after the boundary (BoundarySnapshot).
var _ raftactor.ConfChangeApplier = (*Machine)(nil)

// FirstIndex implements raftactor.ColdLog: from the raft index of the first
// batch the log still has (the side log holds every other entry from there
// on) down through the side entries just before it, such as the bootstrap
// conf changes and the first leader's empty entry. 0 when it serves
// nothing; raft then falls back to its memory and, below it, the snapshot.
func (m *Machine) FirstIndex() uint64 { return m.coldFirst }

// recomputeColdFirst refreshes FirstIndex after the log or the side log
// changed; raft asks for it far more often than it changes.
func (m *Machine) recomputeColdFirst() {
	f := m.log.FirstRaftIndex()
	if f == 0 {
		f = m.appliedIndex + 1 // no batch: only side entries can serve
	}
	for f > 1 {
		if _, ok := m.side[f-1]; !ok {
			break
		}
		f--
	}
	if f > m.appliedIndex {
		f = 0
	}
	m.coldFirst = f
}

// Entry implements raftactor.ColdLog.
func (m *Machine) Entry(i uint64) (*pb.Entry, error) {
	if e, ok := m.side[i]; ok {
		return e, nil
	}
	batch, term, err := m.log.EntryByRaftIndex(i)
	if err != nil {
		return nil, fmt.Errorf("raft entry %d: %w", i, err)
	}
	return &pb.Entry{Index: new(i), Term: new(term), Type: pb.EntryNormal.Enum(), Data: batchEntry(batch)}, nil
}

// KeepEntry implements raftactor.ColdLog.
func (m *Machine) KeepEntry(e *pb.Entry) {
	m.side[e.GetIndex()] = e
	m.appliedIndex = max(m.appliedIndex, e.GetIndex())
	m.recomputeColdFirst()
}

// entryID names a raft entry.
type entryID struct {
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
}

// The boundary is the entry just below FirstIndex, which retention removed
// (a batch in a deleted segment, or a side entry pruned with it). raft needs
// its term to send appends from FirstIndex on, and a replica behind it is
// sent a snapshot at it (BoundarySnapshot). The entry is gone, so its term
// is recorded when the cold log's start moves, read from where the entry
// still is just before: a log-start move takes it when it applies, from the
// side log or the segments (boundaryAfter); a restore from the checkpoint's
// side log or last batch, or the snapshot itself. Each replica takes the
// entry below its own cold log, which is the same on every replica: they
// applied the same entries, and a move leaves no side entry below the batch
// that holds the new log start. The leader also puts the boundary it sees
// when it proposes the move into the entry, for a replica that replays the
// move after a restart and no longer has the entry. Checkpoints and
// snapshots carry the boundary. A fresh log starts at index 1, whose
// boundary is the zero entry.

// Boundary implements raftactor.ColdLog. ok is false while the recorded
// boundary is not the entry below FirstIndex: while the cold log serves
// nothing (a replica that installed a snapshot and has not applied the
// entry after it), or after a restart that found the log start ahead of
// its checkpoint with the entry below it in a deleted segment, until the
// log-start move is replayed.
func (m *Machine) Boundary() (index, term uint64, ok bool) {
	if m.coldFirst == 0 || m.boundary.Index+1 != m.coldFirst {
		return 0, 0, false
	}
	return m.boundary.Index, m.boundary.Term, true
}

// boundaryAfter returns the boundary once the log starts at p, from the
// log as it is now: the entry before the batch that holds p or, if no batch
// does (p is the high watermark), the last batch, since every later entry
// is in the side log. ok is false when that entry is not in the cold log
// or the log has no batch.
func (m *Machine) boundaryAfter(p int64) (entryID, bool) {
	next := m.log.LastRaftIndex() + 1
	if _, i, ok := m.log.BatchAt(p); ok {
		next = i
	}
	if next <= 1 {
		return entryID{}, false
	}
	e, err := m.Entry(next - 1)
	if err != nil {
		return entryID{}, false
	}
	return entryID{Index: next - 1, Term: e.GetTerm()}, true
}

// learnBoundary records as the boundary the entry of known that is just
// below the cold log, unless the boundary already is that entry. While the
// cold log serves nothing, that is the applied entry: the cold log starts
// just after it with the next entry applied. Every entry of known was
// applied, here or on a leader, so its index alone tells it is the one; a
// zero term stands for an entry not known.
func (m *Machine) learnBoundary(known ...entryID) {
	want := m.appliedIndex
	if m.coldFirst > 0 {
		want = m.coldFirst - 1
	}
	if m.boundary.Index == want {
		return
	}
	if want == 0 {
		m.boundary = entryID{}
		return
	}
	for _, e := range known {
		if e.Index == want && e.Term > 0 {
			m.boundary = e
			m.pruneConfs(e.Index)
			return
		}
	}
}

// BoundarySnapshot implements raftactor.ColdLog: the checkpoint as of the
// boundary, which a replica behind the leader's log start installs before
// it takes the entries from FirstIndex on, all of which the leader still
// serves. It starts the replica's log where the leader's starts. The
// producer state and the leader-epoch cache are the leader's without the
// batches from the log start on (ProducerState.Before): the replica applies
// those batches again and ends with exactly the leader's state (it cannot
// lead before it has them: they are committed). No side entry is needed:
// the cold log starts after the boundary. cs is the group's configuration
// at the boundary; the conf changes after it are in the cold log.
//
// ok is false when the configuration at the boundary is not known (a
// checkpoint from before the partition kept it).
func (m *Machine) BoundarySnapshot() ([]byte, *pb.ConfState, bool) {
	b, _, ok := m.Boundary()
	if !ok {
		return nil, nil, false
	}
	cs, ok := m.confAt(b)
	if !ok {
		return nil, nil, false
	}
	// A log start inside a batch (DeleteRecords) cannot start the
	// replica's log: that batch's base does, the cold log's first batch,
	// and the log-start entry that follows it in the cold log moves the
	// replica's start on to the leader's once it has the batch.
	start := m.log.LogStart()
	if base, _, ok := m.log.BatchAt(start); ok {
		start = base
	}
	prod, err := m.producers.Before(start).MarshalBinary()
	if err != nil {
		m.o.Log.Error().Err(err).Msg("encode producer state for a replica behind retention")
		return nil, nil, false
	}
	epochs := m.epochs
	for len(epochs) > 0 && epochs[len(epochs)-1].StartOffset >= start {
		epochs = epochs[:len(epochs)-1]
	}
	confs, err := marshalConfs([]confPoint{{Index: b, Conf: cs}})
	if err != nil {
		m.o.Log.Error().Err(err).Msg("encode configuration for a replica behind retention")
		return nil, nil, false
	}
	data, err := json.Marshal(checkpoint{LogStart: start, LogEnd: start, Producers: prod, Epochs: epochs, Boundary: m.boundary, Confs: confs})
	if err != nil {
		m.o.Log.Error().Err(err).Msg("encode snapshot for a replica behind retention")
		return nil, nil, false
	}
	return data, cs, true
}

// The group's configuration at the boundary is what a boundary snapshot
// carries, and it cannot be worked out from the configuration now (a conf
// change sets a member's role whatever it was before), so the Machine
// keeps the configurations from the boundary on: each one the group had
// since, from the index that set it, the first one relabelled to the
// boundary once the boundary passes it.

// confPoint is the group's configuration from raft index Index on.
type confPoint struct {
	Index uint64
	Conf  *pb.ConfState
}

// ApplyConfChange implements raftactor.ConfChangeApplier: it records the
// configuration cc made, and has a leader look at its ISR again once the
// entries are applied (Applied).
func (m *Machine) ApplyConfChange(index, _ uint64, _ *pb.ConfChangeV2, cs *pb.ConfState) {
	m.dropConfsAbove(index - 1)
	m.confs = append(m.confs, confPoint{Index: index, Conf: proto.Clone(cs).(*pb.ConfState)})
	m.confChanged = true
}

// confAt returns the configuration at raft index i. ok is false when it is
// not known: i is below every recorded configuration (they start at the
// bootstrap conf changes, or at the boundary of the snapshot the replica
// started from), except for 0, where the group had no members.
func (m *Machine) confAt(i uint64) (*pb.ConfState, bool) {
	for k := len(m.confs) - 1; k >= 0; k-- {
		if m.confs[k].Index <= i {
			return m.confs[k].Conf, true
		}
	}
	return &pb.ConfState{}, i == 0
}

// seedConfs gives a Machine restored from a checkpoint without
// configurations (written before 90259c6 kept them) the one it can know:
// cs, raft's configuration at the snapshot's index. It is the group's
// from the last conf change the cold log holds up to index on, or from
// the entry below the cold log when it holds none: the cold log holds
// every entry after that one, conf changes included, so none lies
// between. Where one does, the boundary below it stays undescribed
// (BoundarySnapshot) until a log-start move passes it: a configuration
// cannot be worked out from the one after a conf change, and unknown is
// better than wrong. cs may name members added after index as learners
// (a leader's snapshot, admitMembers): that is raft's own configuration on
// this replica, and admits only learners.
func (m *Machine) seedConfs(index uint64, cs *pb.ConfState) {
	if index == 0 || cs == nil {
		return
	}
	from := index
	if m.coldFirst > 0 {
		from = m.coldFirst - 1
	}
	for i, e := range m.side {
		if e.GetType() != pb.EntryNormal && i > from && i <= index {
			from = i
		}
	}
	m.confs = []confPoint{{Index: from, Conf: proto.Clone(cs).(*pb.ConfState)}}
}

// pruneConfs forgets the configurations the boundary b has passed, but
// the one in force at b, which is relabelled to b.
func (m *Machine) pruneConfs(b uint64) {
	k := len(m.confs) - 1
	for k >= 0 && m.confs[k].Index > b {
		k--
	}
	if k < 0 {
		return
	}
	m.confs = append([]confPoint{{Index: b, Conf: m.confs[k].Conf}}, m.confs[k+1:]...)
}

// dropConfsAbove forgets the configurations set after index i, which raft
// replays after a restore.
func (m *Machine) dropConfsAbove(i uint64) {
	for len(m.confs) > 0 && m.confs[len(m.confs)-1].Index > i {
		m.confs = m.confs[:len(m.confs)-1]
	}
}

// confJSON is a confPoint in a checkpoint.
type confJSON struct {
	Index uint64 `json:"index"`
	Conf  []byte `json:"conf"` // a raftpb.ConfState
}

func marshalConfs(cs []confPoint) ([]confJSON, error) {
	out := make([]confJSON, len(cs))
	for k, c := range cs {
		b, err := proto.Marshal(c.Conf)
		if err != nil {
			return nil, fmt.Errorf("encode configuration at %d: %w", c.Index, err)
		}
		out[k] = confJSON{Index: c.Index, Conf: b}
	}
	return out, nil
}

func unmarshalConfs(cs []confJSON) ([]confPoint, error) {
	out := make([]confPoint, len(cs))
	for k, c := range cs {
		conf := &pb.ConfState{}
		if err := proto.Unmarshal(c.Conf, conf); err != nil {
			return nil, fmt.Errorf("decode configuration at %d: %w", c.Index, err)
		}
		out[k] = confPoint{Index: c.Index, Conf: conf}
	}
	return out, nil
}

// keepSide records an applied entry that carries no batch.
func (m *Machine) keepSide(index, term uint64, data []byte) {
	m.side[index] = &pb.Entry{Index: new(index), Term: new(term), Type: pb.EntryNormal.Enum(), Data: data}
}

// pruneSide drops side entries that no longer matter: below the log's
// first batch once retention removed what they sat between (belowFirst),
// and, after a restore, above the snapshot (raft replays them).
func (m *Machine) pruneSide(above uint64, belowFirst bool) {
	first := m.log.FirstRaftIndex()
	if !belowFirst {
		first = 0
	}
	for i := range m.side {
		if (first > 0 && i < first) || (above > 0 && i > above) {
			delete(m.side, i)
		}
	}
	m.recomputeColdFirst()
}

// pruneBelowBoundary drops the side entries at or below the boundary: the
// cold log starts after it, and a replica that needs them gets the
// boundary snapshot. pruneSide finds them below the log's first batch, but
// when retention has taken every batch (the log start is the high
// watermark) there is none, and they would pile up with every such move.
func (m *Machine) pruneBelowBoundary() {
	if m.boundary.Index == 0 {
		return
	}
	for i := range m.side {
		if i <= m.boundary.Index {
			delete(m.side, i)
		}
	}
	m.recomputeColdFirst()
}

func (m *Machine) marshalSide() ([][]byte, error) {
	out := make([][]byte, 0, len(m.side))
	for _, i := range slices.Sorted(maps.Keys(m.side)) {
		b, err := proto.Marshal(m.side[i])
		if err != nil {
			return nil, fmt.Errorf("encode side entry %d: %w", i, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func (m *Machine) unmarshalSide(bs [][]byte) error {
	m.side = make(map[uint64]*pb.Entry, len(bs))
	for _, b := range bs {
		e := &pb.Entry{}
		if err := proto.Unmarshal(b, e); err != nil {
			return fmt.Errorf("decode side entry: %w", err)
		}
		m.side[e.GetIndex()] = e
	}
	return nil
}
