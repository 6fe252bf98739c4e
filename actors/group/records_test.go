package group

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

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

	snap := s.snapshot()
	restored := store{}
	if err := restored.applyRecords(snap); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, restored) {
		t.Fatalf("restored %+v, want %+v", restored, s)
	}
	if !bytes.Equal(restored.snapshot(), snap) {
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
