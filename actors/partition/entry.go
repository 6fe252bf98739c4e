package partition

import (
	"encoding/binary"
	"fmt"
	"slices"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors/storage"
)

// A partition's raft entries are its own. Record batches travel as the
// leader stamped them, so the body of a batch entry is exactly what the
// segment stores. The leader proposes a batch as it is, without a type byte
// (entryRawBatch): the proposal is then the produce request's own bytes,
// and raft's copy into its log is the only one. Such an entry starts with
// the top byte of the batch's base offset, which is 0 below 2^56
// (maxRawBatchOffset); every other entry starts with a type byte that is
// not 0, then its body.
const (
	entryRawBatch byte = 0 // no type byte: the entry is the batch
	entryBatch    byte = 1 // body: one stamped record batch
	entryLogStart byte = 2 // body: 8-byte big-endian new log start offset, then optionally the boundary (logStartBody)
	entryKept     byte = 3 // body: keptRef; in the WAL only, for a batch the segment holds
	// body: 8-byte big-endian cutoff timestamp (ms); producers last seen at
	// or before it are forgotten (expireProducersEntry)
	entryExpireProducers byte = 4
)

// maxRawBatchOffset bounds the base offsets of batches proposed without a
// type byte; a batch at or above it (2^56 records, centuries of produce)
// gets the type byte, so that its first byte cannot be read as a type.
const maxRawBatchOffset = 1 << 56

// batchEntry is the entry of a batch with its type byte, in a copy.
func batchEntry(batch []byte) []byte {
	e := make([]byte, 1+len(batch))
	e[0] = entryBatch
	copy(e[1:], batch)
	return e
}

// logStartEntry moves the log start to offset. The leader adds the raft
// entry that the cold log will start just after (the boundary, see
// coldlog.go), when it knows it, for a replica that replays the move after
// a restart when the entries below the new start are gone; the others read
// it from their own log as they apply the move (learnBoundary).
func logStartEntry(offset int64, boundary entryID, ok bool) []byte {
	e := binary.BigEndian.AppendUint64([]byte{entryLogStart}, uint64(offset))
	if ok {
		e = binary.BigEndian.AppendUint64(e, boundary.Index)
		e = binary.BigEndian.AppendUint64(e, boundary.Term)
	}
	return e
}

// logStartBody decodes the body of a log start entry.
func logStartBody(b []byte) (offset int64, boundary entryID, ok bool) {
	offset = bodyOffset(b)
	if len(b) == 24 {
		boundary = entryID{Index: binary.BigEndian.Uint64(b[8:]), Term: binary.BigEndian.Uint64(b[16:])}
		ok = true
	}
	return offset, boundary, ok
}

// expireProducersEntry forgets the idempotent producers whose last batch's
// timestamp is at or before cutoffMs (ProducerState.ExpireProducers). The
// leader computes the cutoff from its clock; the entry carries it, so that
// every replica forgets the same producers at the same point of the log. A
// binary that predates the entry type refuses it (decodeEntry), which halts
// the partition rather than leaving its producer state apart.
func expireProducersEntry(cutoffMs int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{entryExpireProducers}, uint64(cutoffMs))
}

// expireProducersCutoff decodes the body of a producer expiry entry.
func expireProducersCutoff(b []byte) int64 {
	return int64(binary.BigEndian.Uint64(b))
}

// keptRef is what the WAL holds of a batch entry whose batch the partition
// keeps in its segments (Machine.Keep): enough to tell, at recovery, that
// the batch the segment holds under the entry's raft index is the one.
type keptRef struct {
	base int64
	size uint32
	crc  uint32
}

const keptEntrySize = 1 + 8 + 4 + 4

// keptIndex is a WAL entry's reference with the entry's Raft index and
// term: everything a Raft index file entry holds but the batch's position.
type keptIndex struct {
	index, term uint64
	ref         keptRef
}

// keptIndexes maps the batches among ents, the entries the WAL recovered
// for the group, by base offset: the references, and the batches the WAL
// holds whole (those a follower received with or behind a leader's
// snapshot, and those of a WAL older than the kept entries), which were
// written to the segments too and whose Raft index entries Sync leaves to
// Flush in the same way.
func keptIndexes(ents []*pb.Entry) map[int64]keptIndex {
	var kept map[int64]keptIndex
	for _, e := range ents {
		if e.GetType() != pb.EntryNormal {
			continue
		}
		r, ok := keptRefOf(e.GetData())
		if !ok {
			typ, body, err := decodeEntry(e.GetData())
			if err != nil || typ != entryBatch || len(body) < BatchHeaderSize {
				continue
			}
			r = refOf(decodeHeader(body))
		}
		if kept == nil {
			kept = make(map[int64]keptIndex)
		}
		kept[r.base] = keptIndex{index: e.GetIndex(), term: e.GetTerm(), ref: r}
	}
	return kept
}

// recoveredEntries are the entries of a group's recovered WAL state that
// vouch for its batches (MachineOptions.Recovered): those a leader's
// snapshot replaced, then the log's, so that a later entry for the same
// base offset wins. nil state: none.
func recoveredEntries(st *storage.GroupState) []*pb.Entry {
	if st == nil {
		return nil
	}
	if len(st.Replaced) == 0 {
		return st.Entries
	}
	return append(slices.Clone(st.Replaced), st.Entries...)
}

func refOf(h BatchHeader) keptRef {
	return keptRef{base: h.BaseOffset, size: uint32(h.Size()), crc: h.CRC}
}

func (r keptRef) entry() []byte {
	e := make([]byte, keptEntrySize)
	e[0] = entryKept
	binary.BigEndian.PutUint64(e[1:], uint64(r.base))
	binary.BigEndian.PutUint32(e[9:], r.size)
	binary.BigEndian.PutUint32(e[13:], r.crc)
	return e
}

// keptRefOf decodes a kept entry; ok is false for any other entry.
func keptRefOf(data []byte) (keptRef, bool) {
	if len(data) != keptEntrySize || data[0] != entryKept {
		return keptRef{}, false
	}
	return keptRef{
		base: int64(binary.BigEndian.Uint64(data[1:])),
		size: binary.BigEndian.Uint32(data[9:]),
		crc:  binary.BigEndian.Uint32(data[13:]),
	}, true
}

// decodeEntry splits an entry into its type and body. A batch without its
// type byte is returned as entryBatch, its body the whole entry.
func decodeEntry(data []byte) (byte, []byte, error) {
	if len(data) == 0 {
		return 0, nil, fmt.Errorf("empty partition entry")
	}
	switch data[0] {
	case entryRawBatch:
		return entryBatch, data, nil
	case entryBatch:
		return entryBatch, data[1:], nil
	case entryLogStart:
		if len(data) != 9 && len(data) != 25 {
			return 0, nil, fmt.Errorf("log start entry of %d bytes", len(data))
		}
		return entryLogStart, data[1:], nil
	case entryExpireProducers:
		if len(data) != 9 {
			return 0, nil, fmt.Errorf("producer expiry entry of %d bytes", len(data))
		}
		return entryExpireProducers, data[1:], nil
	}
	return 0, nil, fmt.Errorf("unknown partition entry type %d", data[0])
}

func bodyOffset(b []byte) int64 {
	var v uint64
	for i := 0; i < 8; i++ {
		v = v<<8 | uint64(b[i])
	}
	return int64(v)
}
