package partition

import (
	"fmt"
	"maps"
	"slices"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The Machine is its raft group's ColdLog (raftactor.ColdLog): raft reads
// applied entries back from the partition instead of keeping them in
// memory. A batch entry is rebuilt from the segment exactly as it was
// proposed (the stored batch is the stamped one); every other applied entry
// — a leader's empty entry, a log-start move, a conf change — is kept in
// the side log, which is small (a few per term) and goes into the
// checkpoint.

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

// keepSide records an applied entry that carries no batch.
func (m *Machine) keepSide(index, term uint64, data []byte) {
	m.side[index] = &pb.Entry{Index: new(index), Term: new(term), Type: pb.EntryNormal.Enum(), Data: data}
}

// pruneSide drops side entries that no longer matter: below the log's
// first batch (retention removed what they sat between) and, after a
// restore, above the snapshot (raft replays them).
func (m *Machine) pruneSide(above uint64) {
	first := m.log.FirstRaftIndex()
	for i := range m.side {
		if (first > 0 && i < first) || (above > 0 && i > above) {
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
