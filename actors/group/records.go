package group

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The offsets topic's entries and snapshots are Kafka's own
// __consumer_offsets records: an OffsetCommitKey (version 1) with an
// OffsetCommitValue, or a GroupMetadataKey (version 2) with a
// GroupMetadataValue; a nil value is a tombstone. An entry is an 8-byte
// proposal sequence (so the leader finds the waiter of its own proposal)
// followed by records; a snapshot is records only. A record is
// uvarint(len(key)) key varint(len(value), -1 for a tombstone) value.

const (
	offsetKeyVersion = 1
	groupKeyVersion  = 2
	// offsetValueVersion 3 carries the leader epoch; groupValueVersion 3
	// the static member's instance id.
	offsetValueVersion = 3
	groupValueVersion  = 3
	seqBytes           = 8
)

// maxRecordString is the longest string a record holds: its keys and
// values are versions with int16 string lengths. kmsg writes a longer
// string's length as an int16, which wraps, and every byte after it: the
// record then fails to read back, or reads back as other fields (see
// exact).
const maxRecordString = math.MaxInt16

var (
	// errCorrupt is an entry or snapshot whose records cannot be told
	// apart.
	errCorrupt = errors.New("corrupt offsets-topic record")
	// errUnreadable is one record that does not decode.
	errUnreadable = errors.New("unreadable offsets-topic record")
	// errStringTooLong is a write with a string no record can hold.
	errStringTooLong = errors.New("string too long for an offsets-topic record")
)

// TopicPartition names a partition whose offset a group commits.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// stored is what every replica materialises of one group: its last
// persisted membership (nil when none was ever written, e.g. a group that
// only commits offsets) and its committed offsets.
type stored struct {
	meta    *kmsg.GroupMetadataValue
	offsets map[TopicPartition]kmsg.OffsetCommitValue
}

// store is the state of one offsets-topic partition: every group it holds.
type store map[string]*stored

func (s store) get(name string) *stored {
	g := s[name]
	if g == nil {
		g = &stored{offsets: map[TopicPartition]kmsg.OffsetCommitValue{}}
		s[name] = g
	}
	return g
}

// drop forgets a group whose metadata and offsets are all gone.
func (s store) drop(name string) {
	if g := s[name]; g != nil && g.meta == nil && len(g.offsets) == 0 {
		delete(s, name)
	}
}

// recordWriter appends records to an entry or snapshot. A record with a
// string longer than maxRecordString is not written; err says so, and
// the write is refused as a whole.
type recordWriter struct {
	b    []byte
	ends []int // where each record ends in b
	err  error
}

// fits reports whether every string in s fits a record, and records the
// first that does not in w.err.
func (w *recordWriter) fits(what string, s ...string) bool {
	for _, s := range s {
		if len(s) > maxRecordString {
			if w.err == nil {
				w.err = fmt.Errorf("%w: %s of %d bytes, at most %d", errStringTooLong, what, len(s), maxRecordString)
			}
			return false
		}
	}
	return true
}

// fitsPtr is fits for a nullable string.
func (w *recordWriter) fitsPtr(what string, s *string) bool {
	return s == nil || w.fits(what, *s)
}

func (w *recordWriter) add(key, value []byte, tombstone bool) {
	defer func() { w.ends = append(w.ends, len(w.b)) }()
	w.b = binary.AppendUvarint(w.b, uint64(len(key)))
	w.b = append(w.b, key...)
	if tombstone {
		w.b = binary.AppendVarint(w.b, -1)
		return
	}
	w.b = binary.AppendVarint(w.b, int64(len(value)))
	w.b = append(w.b, value...)
}

func (w *recordWriter) offset(group string, tp TopicPartition, v *kmsg.OffsetCommitValue) {
	if !w.fits("group id", group) || !w.fits("topic", tp.Topic) || v != nil && !w.fits("offset metadata", v.Metadata) {
		return
	}
	k := kmsg.OffsetCommitKey{Version: offsetKeyVersion, Group: group, Topic: tp.Topic, Partition: tp.Partition}
	if v == nil {
		w.add(k.AppendTo(nil), nil, true)
		return
	}
	v.Version = offsetValueVersion
	w.add(k.AppendTo(nil), v.AppendTo(nil), false)
}

func (w *recordWriter) group(group string, v *kmsg.GroupMetadataValue) {
	if !w.fits("group id", group) || v != nil && !w.groupFits(v) {
		return
	}
	k := kmsg.GroupMetadataKey{Version: groupKeyVersion, Group: group}
	if v == nil {
		w.add(k.AppendTo(nil), nil, true)
		return
	}
	v.Version = groupValueVersion
	w.add(k.AppendTo(nil), v.AppendTo(nil), false)
}

func (w *recordWriter) groupFits(v *kmsg.GroupMetadataValue) bool {
	if !w.fits("protocol type", v.ProtocolType) || !w.fitsPtr("protocol", v.Protocol) || !w.fitsPtr("leader", v.Leader) {
		return false
	}
	for _, m := range v.Members {
		if !w.fits("member id", m.MemberID) || !w.fitsPtr("group instance id", m.InstanceID) || !w.fits("client id", m.ClientID) || !w.fits("client host", m.ClientHost) {
			return false
		}
	}
	return true
}

// split cuts w into writers of at most max bytes each, at record
// boundaries (a record larger than max gets a writer of its own); max <= 0
// or a w within it: w alone.
func (w *recordWriter) split(max int) []*recordWriter {
	if max <= 0 || len(w.b) <= max {
		return []*recordWriter{w}
	}
	var parts []*recordWriter
	start := 0
	for i, end := range w.ends {
		next := len(w.b)
		if i+1 < len(w.ends) {
			next = w.ends[i+1]
		}
		if i+1 == len(w.ends) || next-start > max {
			parts = append(parts, &recordWriter{b: w.b[start:end]})
			start = end
		}
	}
	return parts
}

// entry returns an entry's payload: seq, then the records written so far.
func entry(seq uint64, w *recordWriter) []byte {
	out := make([]byte, seqBytes, seqBytes+len(w.b))
	binary.BigEndian.PutUint64(out, seq)
	return append(out, w.b...)
}

// applyRecords applies the records in b to s. A record this build does
// not know (another key version) is skipped, as Kafka skips unknown keys;
// so is one that does not decode (errUnreadable), and the rest still
// apply. Records that cannot be told apart (errCorrupt) end it.
func (s store) applyRecords(b []byte) error {
	var unreadable []error
	var scratch []byte // re-encodings, see exact
	for len(b) > 0 {
		klen, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < klen {
			return errors.Join(append(unreadable, fmt.Errorf("%w: key length", errCorrupt))...)
		}
		key := b[n : n+int(klen)]
		b = b[n+int(klen):]
		vlen, n := binary.Varint(b)
		if n <= 0 || vlen < -1 || int64(len(b)-n) < vlen {
			return errors.Join(append(unreadable, fmt.Errorf("%w: value length", errCorrupt))...)
		}
		b = b[n:]
		var value []byte
		if vlen >= 0 {
			value, b = b[:vlen], b[vlen:]
		}
		if err := s.applyRecord(key, value, vlen < 0, &scratch); err != nil {
			unreadable = append(unreadable, err)
		}
	}
	return errors.Join(unreadable...)
}

// record is an offsets-topic key or value: it decodes from bytes and
// encodes itself again.
type record interface {
	ReadFrom([]byte) error
	AppendTo([]byte) []byte
}

// errPartRead is a record that decodes without error from bytes it does
// not match (exact).
var errPartRead = errors.New("does not read back whole")

// readWhole decodes b into v, and fails unless v is what b says (exact).
func readWhole(b []byte, v record, scratch *[]byte) error {
	if err := v.ReadFrom(b); err != nil {
		return err
	}
	if !exact(b, v, scratch) {
		return errPartRead
	}
	return nil
}

// exact reports whether v, decoded from b, is what b says. kmsg's
// readers neither check that they used every byte nor refuse a string
// length that does not fit: a record written before the writer refused
// strings longer than int16 holds (maxRecordString) has a length that
// wrapped, and decodes without error into other fields (a 65542-byte
// group id as another group's id, topic and partition; a 40000-byte
// leader id as null, shifting every field after it). The versions this
// broker writes are canonical, so such a record re-encodes to other
// bytes. Flexible versions (which only Kafka writes) are not (tagged
// fields, varint widths): for them, that v encodes to as many bytes as b
// holds is what tells a record read whole. scratch is reused across
// calls.
func exact(b []byte, v record, scratch *[]byte) bool {
	*scratch = v.AppendTo((*scratch)[:0])
	if f, ok := v.(interface{ IsFlexible() bool }); ok && f.IsFlexible() {
		return len(*scratch) == len(b)
	}
	return bytes.Equal(*scratch, b)
}

func (s store) applyRecord(key, value []byte, tombstone bool, scratch *[]byte) error {
	if len(key) < 2 {
		return fmt.Errorf("%w: short key", errUnreadable)
	}
	switch binary.BigEndian.Uint16(key) {
	case 0, offsetKeyVersion:
		var k kmsg.OffsetCommitKey
		if err := readWhole(key, &k, scratch); err != nil {
			return fmt.Errorf("%w: offset key of %d bytes: %v", errUnreadable, len(key), err)
		}
		tp := TopicPartition{k.Topic, k.Partition}
		if tombstone {
			if g := s[k.Group]; g != nil {
				delete(g.offsets, tp)
				s.drop(k.Group)
			}
			return nil
		}
		var v kmsg.OffsetCommitValue
		if err := readWhole(value, &v, scratch); err != nil {
			return fmt.Errorf("%w: offset value v%d of %d bytes: %v", errUnreadable, v.Version, len(value), err)
		}
		s.get(k.Group).offsets[tp] = v
	case groupKeyVersion:
		var k kmsg.GroupMetadataKey
		if err := readWhole(key, &k, scratch); err != nil {
			return fmt.Errorf("%w: group key of %d bytes: %v", errUnreadable, len(key), err)
		}
		if tombstone {
			if g := s[k.Group]; g != nil {
				g.meta = nil
				s.drop(k.Group)
			}
			return nil
		}
		v := new(kmsg.GroupMetadataValue)
		if err := readWhole(value, v, scratch); err != nil {
			return fmt.Errorf("%w: group value v%d of %d bytes: %v", errUnreadable, v.Version, len(value), err)
		}
		s.get(k.Group).meta = v
	}
	return nil
}

// snapshot writes every group as records, in a stable order.
func (s store) snapshot() ([]byte, error) {
	var w recordWriter
	for _, name := range slices.Sorted(maps.Keys(s)) {
		g := s[name]
		if g.meta != nil {
			w.group(name, g.meta)
		}
		tps := slices.SortedFunc(maps.Keys(g.offsets), compareTP)
		for _, tp := range tps {
			v := g.offsets[tp]
			w.offset(name, tp, &v)
		}
	}
	return w.b, w.err
}

func compareTP(a, b TopicPartition) int {
	if c := cmp.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	return cmp.Compare(a.Partition, b.Partition)
}
