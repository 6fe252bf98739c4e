package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The record format. Every record on disk is
//
//	length  uint32, big endian: the number of payload bytes
//	crc     uint32, big endian: CRC-32C (Castagnoli) of the payload
//	payload
//
// and every payload is
//
//	type    byte: recordUpdate or recordCheckpoint
//	group   uvarint
//	count   uvarint: the number of entries (always 0 in a checkpoint)
//	entries count × (uvarint length, proto-marshalled raftpb.Entry)
//	flags   byte: flagHardState | flagSnapshot
//	[uvarint length, proto-marshalled raftpb.HardState] if flagHardState
//	[uvarint length, proto-marshalled raftpb.Snapshot]  if flagSnapshot
//
// An update record holds one Persist, so that a Persist is durable entirely
// or not at all. A checkpoint record always has a snapshot, and carries the
// group's latest hard state (when it has one) so that every earlier record of
// the group can be dropped.
const (
	recordUpdate     byte = 1
	recordCheckpoint byte = 2
	recordForget     byte = 3 // a tombstone: the group is gone for good

	flagHardState byte = 1 << 0
	flagSnapshot  byte = 1 << 1

	headerSize = 8

	// maxRecordBytes bounds one payload. Writes above it are refused, and a
	// length above it on disk is corruption, so a damaged length field never
	// turns into a giant allocation during recovery.
	maxRecordBytes = 1 << 30
)

// castagnoli is the CRC-32C table; it is computed once and only read.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errRecordTooLarge is returned when one Persist does not fit in a record.
var errRecordTooLarge = errors.New("record larger than 1 GiB")

// record is one decoded WAL record.
type record struct {
	typ       byte
	group     uint64
	entries   []*pb.Entry
	hardState *pb.HardState
	snapshot  *pb.Snapshot
}

// lastIndex is the highest raft index the record mentions: its last entry or
// its snapshot. It is what retention must wait for a checkpoint to cover.
func (r *record) lastIndex() uint64 {
	var hi uint64
	if n := len(r.entries); n > 0 {
		hi = r.entries[n-1].GetIndex()
	}
	return max(hi, r.snapshot.GetMetadata().GetIndex())
}

// appendRecord appends the framed record (header and payload) to dst. On
// error dst is returned unchanged in length.
func appendRecord(dst []byte, typ byte, group uint64, entries []*pb.Entry, hs *pb.HardState, snap *pb.Snapshot) ([]byte, error) {
	dst, _, err := encodeRecord(dst, nil, math.MaxInt, typ, group, entries, hs, snap)
	return dst, err
}

// A splice is bytes of a record that encodeRecord left out of its buffer:
// they belong at position at of it.
type splice struct {
	at   int
	data []byte
}

// encodeRecord is appendRecord without the copy of large entries: the data
// of every entry with at least large bytes of it is left out of dst and
// appended to splices instead, so that the record is dst from its start
// with each splice's data inserted at its position, in order. The header's
// length and CRC cover the whole record. The WAL writes those data slices
// as they are: a record batch goes from raft's log to the file without
// passing through a buffer.
func encodeRecord(dst []byte, splices []splice, large int, typ byte, group uint64, entries []*pb.Entry, hs *pb.HardState, snap *pb.Snapshot) ([]byte, []splice, error) {
	start, spliced := len(dst), len(splices)
	fail := func(err error) ([]byte, []splice, error) { return dst[:start], splices[:spliced], err }
	dst = append(dst, make([]byte, headerSize)...)
	dst = append(dst, typ)
	dst = binary.AppendUvarint(dst, group)
	dst = binary.AppendUvarint(dst, uint64(len(entries)))
	var err error
	for _, e := range entries {
		if data := e.GetData(); len(data) >= large {
			if head, ok := entryHead(e); ok {
				dst = binary.AppendUvarint(dst, uint64(len(head)+len(data)))
				dst = append(dst, head...)
				splices = append(splices, splice{at: len(dst), data: data})
				continue
			}
		}
		if dst, err = appendMessage(dst, e); err != nil {
			return fail(fmt.Errorf("encode entry %d: %w", e.GetIndex(), err))
		}
	}
	var flags byte
	if hs != nil {
		flags |= flagHardState
	}
	if snap != nil {
		flags |= flagSnapshot
	}
	dst = append(dst, flags)
	if hs != nil {
		if dst, err = appendMessage(dst, hs); err != nil {
			return fail(fmt.Errorf("encode hard state: %w", err))
		}
	}
	if snap != nil {
		if dst, err = appendMessage(dst, snap); err != nil {
			return fail(fmt.Errorf("encode snapshot: %w", err))
		}
	}
	n := len(dst) - start - headerSize
	var crc uint32
	from := start + headerSize
	for _, s := range splices[spliced:] {
		n += len(s.data)
		crc = crc32.Update(crc, castagnoli, dst[from:s.at])
		crc = crc32.Update(crc, castagnoli, s.data)
		from = s.at
	}
	crc = crc32.Update(crc, castagnoli, dst[from:])
	if n > maxRecordBytes {
		return fail(errRecordTooLarge)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	binary.BigEndian.PutUint32(dst[start+4:], crc)
	return dst, splices, nil
}

// entryDataTag is the protobuf key of raftpb.Entry's Data: field 4, length
// delimited.
const entryDataTag = 4<<3 | 2

// entryHead returns the encoding of e up to its data: e without its data,
// then the data's key and length. Encoded fields may come in any order, so
// the head followed by the data is an encoding of e. It reports false if e
// holds anything else that the head would lose (a field added to Entry,
// unknown fields): the sizes would not add up.
func entryHead(e *pb.Entry) ([]byte, bool) {
	head, err := proto.Marshal(&pb.Entry{Term: e.Term, Index: e.Index, Type: e.Type})
	if err != nil {
		return nil, false
	}
	head = append(head, entryDataTag)
	head = binary.AppendUvarint(head, uint64(len(e.GetData())))
	return head, len(head)+len(e.GetData()) == proto.Size(e)
}

// appendMessage appends m's length as a uvarint, then m.
func appendMessage(dst []byte, m proto.Message) ([]byte, error) {
	size := proto.Size(m)
	dst = binary.AppendUvarint(dst, uint64(size))
	before := len(dst)
	// Size has just filled the size caches, so marshalling need not walk
	// the message twice. Messages handed to the storage actor are
	// immutable, which is what makes the cache safe to trust; the length
	// check below catches a sender that broke that rule.
	dst, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(dst, m)
	if err != nil {
		return dst, err
	}
	if len(dst)-before != size {
		return dst, fmt.Errorf("message changed while being encoded (size %d, wrote %d)", size, len(dst)-before)
	}
	return dst, nil
}

// decodeRecord parses a payload whose CRC has already been verified. Every
// error means the payload is not a record this package wrote.
func decodeRecord(payload []byte) (record, error) {
	var r record
	if len(payload) == 0 {
		return r, errors.New("empty payload")
	}
	r.typ, payload = payload[0], payload[1:]
	if r.typ != recordUpdate && r.typ != recordCheckpoint && r.typ != recordForget {
		return r, fmt.Errorf("unknown record type %d", r.typ)
	}
	var err error
	if r.group, payload, err = readUvarint(payload); err != nil {
		return r, fmt.Errorf("group: %w", err)
	}
	count, payload, err := readUvarint(payload)
	if err != nil {
		return r, fmt.Errorf("entry count: %w", err)
	}
	// Each entry takes at least its one-byte length, which bounds count by
	// what is left and keeps a forged count from allocating.
	if count > uint64(len(payload)) {
		return r, fmt.Errorf("entry count %d exceeds payload", count)
	}
	if r.typ != recordUpdate && count != 0 {
		return r, fmt.Errorf("record type %d with %d entries", r.typ, count)
	}
	if count > 0 {
		r.entries = make([]*pb.Entry, count)
	}
	for i := range r.entries {
		var b []byte
		if b, payload, err = readBytes(payload); err != nil {
			return r, fmt.Errorf("entry %d: %w", i, err)
		}
		e := new(pb.Entry)
		if err := proto.Unmarshal(b, e); err != nil {
			return r, fmt.Errorf("entry %d: %w", i, err)
		}
		if i > 0 && e.GetIndex() != r.entries[i-1].GetIndex()+1 {
			return r, fmt.Errorf("entry %d: index %d does not follow %d", i, e.GetIndex(), r.entries[i-1].GetIndex())
		}
		r.entries[i] = e
	}
	if len(payload) == 0 {
		return r, errors.New("missing flags")
	}
	flags := payload[0]
	payload = payload[1:]
	if flags&^(flagHardState|flagSnapshot) != 0 {
		return r, fmt.Errorf("unknown flags %#x", flags)
	}
	if r.typ == recordCheckpoint && flags&flagSnapshot == 0 {
		return r, errors.New("checkpoint without snapshot")
	}
	if r.typ == recordForget && flags != 0 {
		return r, errors.New("tombstone with a hard state or snapshot")
	}
	if flags&flagHardState != 0 {
		var b []byte
		if b, payload, err = readBytes(payload); err != nil {
			return r, fmt.Errorf("hard state: %w", err)
		}
		r.hardState = new(pb.HardState)
		if err := proto.Unmarshal(b, r.hardState); err != nil {
			return r, fmt.Errorf("hard state: %w", err)
		}
	}
	if flags&flagSnapshot != 0 {
		var b []byte
		if b, payload, err = readBytes(payload); err != nil {
			return r, fmt.Errorf("snapshot: %w", err)
		}
		r.snapshot = new(pb.Snapshot)
		if err := proto.Unmarshal(b, r.snapshot); err != nil {
			return r, fmt.Errorf("snapshot: %w", err)
		}
	}
	if len(payload) != 0 {
		return r, fmt.Errorf("%d trailing bytes", len(payload))
	}
	return r, nil
}

func readUvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, b, errors.New("bad uvarint")
	}
	return v, b[n:], nil
}

func readBytes(b []byte) ([]byte, []byte, error) {
	n, rest, err := readUvarint(b)
	if err != nil {
		return nil, b, err
	}
	if n > uint64(len(rest)) {
		return nil, b, fmt.Errorf("length %d exceeds the %d bytes left", n, len(rest))
	}
	return rest[:n], rest[n:], nil
}
