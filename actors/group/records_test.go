package group

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestPartitionForMatchesKafka(t *testing.T) {
	// Java's String.hashCode: "abc" 96354, "hello" 99162322; the famous
	// "polygenelubricants" hashes to Integer.MIN_VALUE, which Kafka's
	// Utils.abs maps to 0; "Ω" (U+03A9) is 937; "😀" is a surrogate pair
	// (0xD83D 0xDE00): 31*55357+56832 = 1772899.
	for _, tc := range []struct {
		group string
		n     int32
		want  int32
	}{
		{"", 50, 0},
		{"abc", 50, 96354 % 50},
		{"hello", 16, 99162322 % 16},
		{"polygenelubricants", 16, 0},
		{"Ω", 50, 937 % 50},
		{"😀", 50, 1772899 % 50},
	} {
		if got := PartitionFor(tc.group, tc.n); got != tc.want {
			t.Errorf("PartitionFor(%q, %d) = %d, want %d", tc.group, tc.n, got, tc.want)
		}
	}
}

func offsetValue(off int64) *kmsg.OffsetCommitValue {
	v := kmsg.NewOffsetCommitValue()
	v.Offset, v.LeaderEpoch, v.Metadata, v.CommitTimestamp = off, 3, "meta", 1700000000000
	return &v
}

func TestRecordsApplyAndSnapshot(t *testing.T) {
	meta := kmsg.NewGroupMetadataValue()
	meta.ProtocolType, meta.Generation, meta.Protocol, meta.Leader = "consumer", 4, kmsg.StringPtr("range"), kmsg.StringPtr("m1")
	meta.Members = []kmsg.GroupMetadataValueMember{{MemberID: "m1", InstanceID: kmsg.StringPtr("i1"), ClientID: "c", ClientHost: "/127.0.0.1",
		RebalanceTimeoutMillis: 60000, SessionTimeoutMillis: 45000, Subscription: []byte{1, 2}, Assignment: []byte{3}}}

	var w recordWriter
	w.group("g1", &meta)
	w.offset("g1", TopicPartition{"t", 0}, offsetValue(10))
	w.offset("g1", TopicPartition{"t", 1}, offsetValue(20))
	w.offset("g2", TopicPartition{"u", 7}, offsetValue(5))
	s := store{}
	if err := s.applyRecords(entry(42, &w)[seqBytes:]); err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 || s["g1"].meta.Generation != 4 || s["g1"].offsets[TopicPartition{"t", 1}].Offset != 20 {
		t.Fatalf("store after apply: %+v", s)
	}

	// Tombstones: one offset of g1, and all of g2, which then disappears.
	var del recordWriter
	del.offset("g1", TopicPartition{"t", 0}, nil)
	del.offset("g2", TopicPartition{"u", 7}, nil)
	if err := s.applyRecords(del.b); err != nil {
		t.Fatal(err)
	}
	if _, ok := s["g2"]; ok {
		t.Fatal("g2 kept after its last offset was deleted")
	}
	if _, ok := s["g1"].offsets[TopicPartition{"t", 0}]; ok {
		t.Fatal("g1's t/0 kept after its tombstone")
	}

	snap, err := s.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := store{}
	if err := restored.applyRecords(snap); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, restored) {
		t.Fatalf("restored %+v, want %+v", restored, s)
	}
	if again, _ := restored.snapshot(); !bytes.Equal(again, snap) {
		t.Fatal("snapshot of the restored store differs: snapshots must be deterministic")
	}

	var gone recordWriter
	gone.group("g1", nil)
	gone.offset("g1", TopicPartition{"t", 1}, nil)
	if err := s.applyRecords(gone.b); err != nil || len(s) != 0 {
		t.Fatalf("after deleting g1: %v, %d groups left", err, len(s))
	}
}

func TestRecordsRejectCorruption(t *testing.T) {
	var w recordWriter
	w.offset("g", TopicPartition{"t", 0}, offsetValue(1))
	for _, b := range [][]byte{
		w.b[:len(w.b)-1],        // value cut short
		{0x05, 0x00},            // key longer than the record
		append([]byte{0x01}, 0), // one-byte key
		{0x80},                  // unterminated varint
	} {
		if err := (store{}).applyRecords(b); !errors.Is(err, errCorrupt) {
			t.Errorf("applyRecords(%x) = %v, want a corruption error", b, err)
		}
	}
}

// TestRecordWriterSplit: tombstones too many for one raft entry are cut at
// record boundaries into parts within the bound (a record larger than the
// bound alone in its part), which together are the whole.
func TestRecordWriterSplit(t *testing.T) {
	var w recordWriter
	for p := range int32(100) {
		w.offset("g", TopicPartition{"some-topic", p}, nil)
	}
	w.group("g", nil)
	largest, prev := 0, 0
	for _, end := range w.ends {
		largest, prev = max(largest, end-prev), end
	}
	for _, limit := range []int{0, len(w.b), len(w.b) - 1, 200, 1} {
		parts := w.split(limit)
		var joined []byte
		for _, part := range parts {
			if limit > 0 && len(part.b) > max(limit, largest) {
				t.Fatalf("limit %d: a part of %d bytes", limit, len(part.b))
			}
			if err := (store{}).applyRecords(part.b); err != nil {
				t.Fatalf("limit %d: a part is not whole records: %v", limit, err)
			}
			joined = append(joined, part.b...)
		}
		if !bytes.Equal(joined, w.b) {
			t.Fatalf("limit %d: the parts do not make up the whole", limit)
		}
		if whole := limit <= 0 || limit >= len(w.b); whole != (len(parts) == 1) {
			t.Fatalf("limit %d of %d bytes: %d parts", limit, len(w.b), len(parts))
		}
	}
}

// TestRecordWriterRefusesLongStrings: the records' strings have int16
// lengths (OffsetCommit v8+ and JoinGroup v6+ carry longer ones): a
// record with a longer string is refused, not written with a length that
// wraps, which no replica could read back.
func TestRecordWriterRefusesLongStrings(t *testing.T) {
	long, longest := strings.Repeat("g", 40_000), strings.Repeat("g", maxRecordString)
	member := func(id string, instance *string, client string) *kmsg.GroupMetadataValue {
		v := kmsg.NewGroupMetadataValue()
		v.ProtocolType, v.Protocol, v.Leader = "consumer", kmsg.StringPtr("range"), kmsg.StringPtr(id)
		v.Members = []kmsg.GroupMetadataValueMember{{MemberID: id, InstanceID: instance, ClientID: client, ClientHost: "/127.0.0.1"}}
		return &v
	}
	withMeta := func(meta string) *kmsg.OffsetCommitValue {
		v := offsetValue(1)
		v.Metadata = meta
		return v
	}
	for _, tc := range []struct {
		name  string
		write func(w *recordWriter)
	}{
		{"offset of a long group id", func(w *recordWriter) { w.offset(long, TopicPartition{"t", 0}, offsetValue(1)) }},
		{"tombstone of a long group id", func(w *recordWriter) { w.offset(long, TopicPartition{"t", 0}, nil) }},
		{"offset of a long topic", func(w *recordWriter) { w.offset("g", TopicPartition{long, 0}, offsetValue(1)) }},
		{"offset with long metadata", func(w *recordWriter) { w.offset("g", TopicPartition{"t", 0}, withMeta(long)) }},
		{"membership of a long group id", func(w *recordWriter) { w.group(long, member("m", nil, "c")) }},
		{"long member id", func(w *recordWriter) { w.group("g", member(long, nil, "c")) }},
		{"long group instance id", func(w *recordWriter) { w.group("g", member("m", &long, "c")) }},
		{"long client id", func(w *recordWriter) { w.group("g", member("m", nil, long)) }},
	} {
		var w recordWriter
		w.offset("g", TopicPartition{"t", 1}, offsetValue(1))
		tc.write(&w)
		if !errors.Is(w.err, errStringTooLong) {
			t.Errorf("%s: writer error %v, want %v", tc.name, w.err, errStringTooLong)
		}
		if len(w.ends) != 1 {
			t.Errorf("%s: %d records written, want only the first", tc.name, len(w.ends))
		}
	}

	// The longest strings a record holds are written and read back.
	var w recordWriter
	w.offset(longest, TopicPartition{longest, 0}, withMeta(longest))
	w.group(longest, member(longest, &longest, longest))
	s := store{}
	if err := errors.Join(w.err, s.applyRecords(w.b)); err != nil {
		t.Fatal(err)
	}
	if g := s[longest]; g == nil || g.meta == nil || g.meta.Members[0].MemberID != longest || len(g.offsets) != 1 {
		t.Fatalf("32767-byte strings did not round-trip: %v", g != nil)
	}
}

// poisoned is a record with a 40000-byte group id as the writer wrote it
// before it checked: kmsg encodes the length as int16, so it wraps.
func poisoned(w *recordWriter) {
	k := kmsg.OffsetCommitKey{Version: offsetKeyVersion, Group: strings.Repeat("g", 40_000), Topic: "t"}
	v := offsetValue(7)
	v.Version = offsetValueVersion
	w.add(k.AppendTo(nil), v.AppendTo(nil), false)
}

// TestApplySkipsUnreadableRecord: an entry holding a record no replica can
// decode (a log written before the writer refused long strings) is
// applied without it, not panicked on at every replay: the records
// around it are applied, and so are the entries after it.
func TestApplySkipsUnreadableRecord(t *testing.T) {
	m := NewMachine(MachineOptions{Tick: time.Millisecond, Log: zerolog.Nop()})
	var w recordWriter
	w.offset("before", TopicPartition{"t", 0}, offsetValue(1))
	poisoned(&w)
	w.offset("after", TopicPartition{"t", 0}, offsetValue(2))
	m.Apply(1, 1, entry(1, &w))
	m.Apply(2, 1, []byte{1, 2, 3}) // shorter than a sequence number
	var next recordWriter
	next.offset("next", TopicPartition{"t", 0}, offsetValue(3))
	m.Apply(3, 1, entry(2, &next))
	for _, g := range []string{"before", "after", "next"} {
		if m.store[g] == nil {
			t.Errorf("group %s not applied", g)
		}
	}
	if len(m.store) != 3 {
		t.Errorf("store holds %d groups, want 3", len(m.store))
	}
	// A snapshot of it holds what was applied, and restores.
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := store{}
	if err := restored.applyRecords(snap); err != nil || !reflect.DeepEqual(restored, m.store) {
		t.Fatalf("restored %d groups, %v", len(restored), err)
	}
}

// TestLegacyRecordMisreadSkipped: a record written before the writer
// refused long strings, whose group id is longer than 65535 bytes, has
// an int16 length that wraps to a small positive number, and kmsg reads
// it without error (it does not check for bytes left over). Crafted, it
// read as a commit of another group: it must be skipped as unreadable,
// on every replay, and leave that group's commit alone.
func TestLegacyRecordMisreadSkipped(t *testing.T) {
	s := store{}
	var good recordWriter
	good.offset("victim", TopicPartition{"orders", 0}, offsetValue(100)) // an acknowledged commit
	if err := s.applyRecords(good.b); err != nil {
		t.Fatal(err)
	}

	// The group id an old broker wrote, as a client sent it (OffsetCommit v8+).
	var tail []byte
	tail = binary.BigEndian.AppendUint16(tail, uint16(len("orders")))
	tail = append(tail, "orders"...)
	tail = binary.BigEndian.AppendUint32(tail, 0)
	group := "victim" + string(tail)
	group += strings.Repeat("x", 65536+len("victim")-len(group)) // int16(len) == len("victim")
	k := kmsg.OffsetCommitKey{Version: offsetKeyVersion, Group: group, Topic: "t", Partition: 3}
	v := offsetValue(0) // the legacy commit's offset
	v.Version = offsetValueVersion
	var legacy recordWriter
	legacy.add(k.AppendTo(nil), v.AppendTo(nil), false) // as the old writer did: no check

	for replay := range 2 {
		err := s.applyRecords(legacy.b)
		got := s["victim"].offsets[TopicPartition{"orders", 0}].Offset
		if !errors.Is(err, errUnreadable) || got != 100 || len(s) != 1 {
			t.Fatalf("replay %d of a legacy record with a %d-byte group id: applyRecords error %v, victim/orders/0 now at offset %d (was 100), %d groups; want the record skipped as unreadable",
				replay, len(group), err, got, len(s))
		}
	}
}

// TestLegacyGroupValueMisreadSkipped: a nullable string of 32768 to 65535
// bytes (a leader id, as the old writer wrote it) has a negative int16
// length and reads as null, and the bytes of the string are read as the
// fields after it: crafted (zeros where the timestamp and member count
// go), the group's metadata reads as a group without members. It must be
// skipped, leaving the metadata last written whole.
func TestLegacyGroupValueMisreadSkipped(t *testing.T) {
	s := store{}
	meta := func(leader string) *kmsg.GroupMetadataValue {
		v := kmsg.NewGroupMetadataValue()
		v.ProtocolType, v.Generation, v.Protocol, v.Leader = "consumer", 1, kmsg.StringPtr("range"), &leader
		v.Members = []kmsg.GroupMetadataValueMember{{MemberID: "m1", ClientID: "c", ClientHost: "/127.0.0.1"}}
		v.Version = groupValueVersion
		return &v
	}
	var good recordWriter
	good.group("g", meta("m1"))
	if err := s.applyRecords(good.b); err != nil {
		t.Fatal(err)
	}
	leader := string(make([]byte, 12)) + strings.Repeat("x", 40_000-12)
	k := kmsg.GroupMetadataKey{Version: groupKeyVersion, Group: "g"}
	var legacy recordWriter
	legacy.add(k.AppendTo(nil), meta(leader).AppendTo(nil), false) // as the old writer did: no check
	err := s.applyRecords(legacy.b)
	if got := s["g"].meta; !errors.Is(err, errUnreadable) || got == nil || got.Leader == nil || *got.Leader != "m1" || len(got.Members) != 1 {
		t.Fatalf("legacy group value with a %d-byte leader id: applyRecords error %v, metadata now %+v; want the record skipped as unreadable", len(leader), err, got)
	}
}
