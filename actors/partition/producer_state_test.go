package partition

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

// hdr is the header of an idempotent batch of n records.
func hdr(pid int64, epoch int16, seq int32, n int32) BatchHeader {
	return BatchHeader{
		Magic: 2, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq,
		LastOffsetDelta: n - 1, RecordCount: n, MaxTimestamp: int64(seq) * 10,
	}
}

// op is one step of a producer-state scenario.
type op struct {
	do    string // "apply", "propose", "check", "discard", "expire"
	h     BatchHeader
	base  int64 // apply, propose: the base offset; check: the duplicate's original base offset; expire: the cutoff
	want  error // check, propose: the error expected
	dup   bool  // check: a duplicate expected
	inFly bool  // check: the duplicate's original is in flight
}

func apply(h BatchHeader, base int64) op   { return op{do: "apply", h: h, base: base} }
func propose(h BatchHeader, base int64) op { return op{do: "propose", h: h, base: base} }
func ok(h BatchHeader) op                  { return op{do: "check", h: h} }
func refused(h BatchHeader, err error) op  { return op{do: "check", h: h, want: err} }
func expire(cutoffMs int64) op             { return op{do: "expire", base: cutoffMs} }
func dup(h BatchHeader, base int64, inFlight bool) op {
	return op{do: "check", h: h, base: base, dup: true, inFly: inFlight}
}

func run(t *testing.T, s *ProducerState, ops []op) {
	t.Helper()
	for i, o := range ops {
		switch o.do {
		case "apply":
			s.Applied(o.h, o.base)
		case "propose":
			err := s.Proposed(o.h, o.base)
			if (err == nil) != (o.want == nil) {
				t.Fatalf("step %d: Proposed(seq %d) = %v, want %v", i, o.h.BaseSequence, err, o.want)
			}
		case "discard":
			s.DiscardInFlight()
		case "expire":
			s.ExpireProducers(o.base)
		case "check":
			v, err := s.Check(o.h)
			if o.want != nil {
				if !errors.Is(err, o.want) {
					t.Fatalf("step %d: Check(epoch %d seq %d) = %+v, %v; want %v", i, o.h.ProducerEpoch, o.h.BaseSequence, v, err, o.want)
				}
				continue
			}
			if err != nil {
				t.Fatalf("step %d: Check(epoch %d seq %d): %v", i, o.h.ProducerEpoch, o.h.BaseSequence, err)
			}
			if v.Duplicate != o.dup || v.InFlight != o.inFly || (o.dup && v.Original.BaseOffset != o.base) {
				t.Fatalf("step %d: Check(epoch %d seq %d) = %+v, want duplicate %v of %d (in flight %v)",
					i, o.h.ProducerEpoch, o.h.BaseSequence, v, o.dup, o.base, o.inFly)
			}
		default:
			t.Fatalf("step %d: unknown op %q", i, o.do)
		}
	}
}

func TestProducerState(t *testing.T) {
	const pid = 7
	// five single-record batches at sequences 1-5 (offsets 11-15) after one
	// at sequence 0 (offset 10): the one at 0 has fallen out of the window.
	six := []op{
		apply(hdr(pid, 0, 0, 1), 10), apply(hdr(pid, 0, 1, 1), 11), apply(hdr(pid, 0, 2, 1), 12),
		apply(hdr(pid, 0, 3, 1), 13), apply(hdr(pid, 0, 4, 1), 14), apply(hdr(pid, 0, 5, 1), 15),
	}
	for _, tc := range []struct {
		name string
		ops  []op
	}{
		{"unknown producer, sequence 0", []op{ok(hdr(pid, 0, 0, 3))}},
		{"unknown producer, any sequence (KIP-360)", []op{ok(hdr(pid, 3, 57, 3))}},
		{"in sequence", []op{apply(hdr(pid, 0, 0, 5), 0), ok(hdr(pid, 0, 5, 1)), ok(hdr(pid, 0, 5, 10))}},
		{"gap", []op{apply(hdr(pid, 0, 0, 5), 0), refused(hdr(pid, 0, 6, 1), ErrOutOfOrderSequence)}},
		{"overlap that is not a duplicate", []op{
			apply(hdr(pid, 0, 0, 5), 0),
			refused(hdr(pid, 0, 4, 2), ErrOutOfOrderSequence),
			refused(hdr(pid, 0, 0, 1), ErrOutOfOrderSequence), // same first sequence, other last one
		}},
		{"duplicate of each of the last five", append(append([]op{}, six...),
			dup(hdr(pid, 0, 1, 1), 11, false), dup(hdr(pid, 0, 2, 1), 12, false), dup(hdr(pid, 0, 3, 1), 13, false),
			dup(hdr(pid, 0, 4, 1), 14, false), dup(hdr(pid, 0, 5, 1), 15, false),
		)},
		{"retry older than five is out of order, as in Kafka", append(append([]op{}, six...),
			refused(hdr(pid, 0, 0, 1), ErrOutOfOrderSequence),
		)},
		{"multi-record duplicate", []op{
			apply(hdr(pid, 0, 0, 4), 100), apply(hdr(pid, 0, 4, 3), 104),
			dup(hdr(pid, 0, 0, 4), 100, false), dup(hdr(pid, 0, 4, 3), 104, false),
		}},
		{"epoch bump starts at 0", []op{
			apply(hdr(pid, 0, 0, 5), 0),
			ok(hdr(pid, 1, 0, 1)),
			refused(hdr(pid, 1, 5, 1), ErrOutOfOrderSequence),
			apply(hdr(pid, 1, 0, 2), 5),
			ok(hdr(pid, 1, 2, 1)),
			dup(hdr(pid, 1, 0, 2), 5, false),
		}},
		{"stale epoch", []op{
			apply(hdr(pid, 0, 0, 5), 0), apply(hdr(pid, 2, 0, 1), 5),
			refused(hdr(pid, 1, 1, 1), ErrInvalidProducerEpoch),
			refused(hdr(pid, 0, 5, 1), ErrInvalidProducerEpoch),
			refused(hdr(pid, 0, 0, 5), ErrInvalidProducerEpoch), // a retry from the fenced epoch
		}},
		{"wrap-around", []op{
			apply(hdr(pid, 0, math.MaxInt32-2, 3), 0), // last sequence MaxInt32
			ok(hdr(pid, 0, 0, 1)),
			refused(hdr(pid, 0, 1, 1), ErrOutOfOrderSequence),
			apply(hdr(pid, 0, 0, 1), 3),
			ok(hdr(pid, 0, 1, 1)),
		}},
		{"batch across the wrap", []op{
			apply(hdr(pid, 0, math.MaxInt32-1, 4), 0), // sequences MaxInt32-1 .. 1
			ok(hdr(pid, 0, 2, 1)),
			dup(hdr(pid, 0, math.MaxInt32-1, 4), 0, false),
		}},
		{"in flight", []op{
			apply(hdr(pid, 0, 0, 1), 0),
			propose(hdr(pid, 0, 1, 1), 1), propose(hdr(pid, 0, 2, 1), 2),
			ok(hdr(pid, 0, 3, 1)),
			refused(hdr(pid, 0, 2, 2), ErrOutOfOrderSequence),
			dup(hdr(pid, 0, 1, 1), 1, true), dup(hdr(pid, 0, 0, 1), 0, false),
			apply(hdr(pid, 0, 1, 1), 1),
			dup(hdr(pid, 0, 1, 1), 1, false), dup(hdr(pid, 0, 2, 1), 2, true),
			ok(hdr(pid, 0, 3, 1)),
		}},
		{"in-flight overlay discarded", []op{
			apply(hdr(pid, 0, 0, 1), 0),
			propose(hdr(pid, 0, 1, 1), 1), propose(hdr(pid, 0, 2, 1), 2),
			{do: "discard"},
			refused(hdr(pid, 0, 3, 1), ErrOutOfOrderSequence),
			ok(hdr(pid, 0, 1, 1)), // the lost proposal is retried as new
		}},
		{"in-flight epoch bump", []op{
			apply(hdr(pid, 0, 0, 3), 0),
			propose(hdr(pid, 1, 0, 1), 3),
			refused(hdr(pid, 0, 3, 1), ErrInvalidProducerEpoch),
			ok(hdr(pid, 1, 1, 1)),
			apply(hdr(pid, 1, 0, 1), 3),
			ok(hdr(pid, 1, 1, 1)),
		}},
		{"stale overlay dropped when the log went another way", []op{
			apply(hdr(pid, 0, 0, 1), 0),
			propose(hdr(pid, 0, 1, 1), 1),
			apply(hdr(pid, 0, 1, 2), 1), // another leader's batch won
			ok(hdr(pid, 0, 3, 1)),
		}},
		{"proposing what Check refuses is an error", []op{
			apply(hdr(pid, 0, 0, 1), 0),
			{do: "propose", h: hdr(pid, 0, 5, 1), base: 1, want: ErrOutOfOrderSequence},
			{do: "propose", h: hdr(pid, 0, 0, 1), base: 1, want: errors.New("duplicate")},
			ok(hdr(pid, 0, 1, 1)),
		}},
		{"producers are independent", []op{
			apply(hdr(1, 0, 0, 5), 0), apply(hdr(2, 3, 40, 1), 5),
			ok(hdr(1, 0, 5, 1)), ok(hdr(2, 3, 41, 1)),
			refused(hdr(2, 0, 5, 1), ErrInvalidProducerEpoch),
		}},
		{"expired producer is unknown", []op{
			apply(hdr(pid, 0, 0, 5), 0), // timestamp 0
			expire(0),                   // at exactly its timestamp
			ok(hdr(pid, 0, 57, 1)),      // any sequence, as a new producer
			ok(hdr(pid, 0, 0, 5)),       // no longer a duplicate
			ok(hdr(pid, 0, 1, 1)),       // any epoch
		}},
		{"producer newer than the cutoff stays", []op{
			apply(hdr(pid, 0, 10, 1), 0), // timestamp 100
			expire(99),
			refused(hdr(pid, 0, 57, 1), ErrOutOfOrderSequence),
			dup(hdr(pid, 0, 10, 1), 0, false),
		}},
		{"the last batch's timestamp counts", []op{
			apply(hdr(pid, 0, 10, 1), 0), apply(hdr(pid, 0, 11, 1), 1), // timestamps 100, 110
			expire(105),
			dup(hdr(pid, 0, 10, 1), 0, false),
		}},
		{"expired while in flight", []op{
			apply(hdr(pid, 0, 0, 1), 0),   // timestamp 0
			propose(hdr(pid, 0, 1, 1), 1), // timestamp 10
			expire(5),                     // the applied state goes; the leader's overlay stays
			dup(hdr(pid, 0, 1, 1), 1, true), dup(hdr(pid, 0, 0, 1), 0, false),
			refused(hdr(pid, 0, 3, 1), ErrOutOfOrderSequence),
			ok(hdr(pid, 0, 2, 1)),
			apply(hdr(pid, 0, 1, 1), 1), // re-creates the producer from this batch alone
			ok(hdr(pid, 0, 2, 1)),
			refused(hdr(pid, 0, 3, 1), ErrOutOfOrderSequence),
			dup(hdr(pid, 0, 1, 1), 1, false),
			refused(hdr(pid, 0, 0, 1), ErrOutOfOrderSequence), // forgotten with the applied state
		}},
		{"not idempotent", []op{
			apply(hdr(-1, -1, -1, 3), 0),
			ok(hdr(-1, -1, -1, 3)), ok(hdr(-1, -1, -1, 3)),
		}},
		{"invalid records", []op{
			refused(hdr(pid, 0, -1, 1), ErrInvalidRecord),
			refused(func() BatchHeader { h := hdr(pid, 0, 0, 1); h.Attributes = controlBit; return h }(), ErrInvalidRecord),
			refused(func() BatchHeader { h := hdr(pid, 0, 0, 3); h.RecordCount = 2; return h }(), ErrInvalidRecord),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s ProducerState
			run(t, &s, tc.ops)
		})
	}
}

func TestProducerStateBookkeeping(t *testing.T) {
	var s ProducerState
	s.Applied(hdr(-1, -1, -1, 3), 0)
	if s.Len() != 0 {
		t.Fatal("a non-idempotent batch created a producer")
	}
	if err := s.Proposed(hdr(1, 0, 0, 1), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Proposed(hdr(1, 0, 1, 1), 1); err != nil {
		t.Fatal(err)
	}
	if s.InFlight() != 2 || s.Len() != 0 {
		t.Fatalf("in flight %d, producers %d", s.InFlight(), s.Len())
	}
	s.Applied(hdr(1, 0, 0, 1), 0)
	s.Applied(hdr(1, 0, 1, 1), 1)
	if s.InFlight() != 0 || s.Len() != 1 {
		t.Fatalf("after apply: in flight %d, producers %d", s.InFlight(), s.Len())
	}

	// Expiration by the last batch's timestamp (hdr uses seq*10).
	s.Applied(hdr(2, 0, 100, 1), 2) // timestamp 1000
	if err := s.Proposed(hdr(3, 0, 0, 1), 3); err != nil {
		t.Fatal(err)
	}
	s.Applied(hdr(3, 0, 0, 1), 3)
	if err := s.Proposed(hdr(3, 0, 1, 1), 4); err != nil { // producer 3 has one in flight
		t.Fatal(err)
	}
	// Producers 1 (timestamp 10, exactly at the cutoff) and 3 (timestamp
	// 0, its in-flight batch notwithstanding) go; 2 stays.
	if !s.anyExpired(10) || s.anyExpired(-1) {
		t.Fatalf("anyExpired(10) = %v, anyExpired(-1) = %v", s.anyExpired(10), s.anyExpired(-1))
	}
	if n := s.ExpireProducers(10); n != 2 {
		t.Fatalf("expired %d", n)
	}
	if s.Len() != 1 || s.InFlight() != 1 {
		t.Fatalf("%d producers left, %d batches in flight", s.Len(), s.InFlight())
	}
	if v, err := s.Check(hdr(1, 0, 57, 1)); err != nil || v.Duplicate {
		t.Fatalf("an expired producer is unknown: %+v %v", v, err)
	}
	s.Applied(hdr(3, 0, 1, 1), 4)
	if s.Len() != 2 || s.InFlight() != 0 {
		t.Fatalf("after the in-flight batch is applied: %d producers, %d batches in flight", s.Len(), s.InFlight())
	}
}

// TestExpiryIgnoresInFlight: a leader with a batch in flight for a producer
// and a follower without it end in the same applied state when both expire
// the producer and then apply the batch, because expiry reads only the
// applied state.
func TestExpiryIgnoresInFlight(t *testing.T) {
	var leader, follower ProducerState
	for _, s := range []*ProducerState{&leader, &follower} {
		s.Applied(hdr(1, 0, 0, 1), 0) // timestamp 0
		s.Applied(hdr(1, 0, 1, 1), 1) // timestamp 10
		s.Applied(hdr(2, 0, 9, 1), 2) // timestamp 90
	}
	if err := leader.Proposed(hdr(1, 0, 2, 1), 3); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*ProducerState{&leader, &follower} {
		if n := s.ExpireProducers(50); n != 1 {
			t.Fatalf("expired %d producers, want 1", n)
		}
		s.Applied(hdr(1, 0, 2, 1), 3)
	}
	l, err := leader.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	f, err := follower.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l, f) {
		t.Fatalf("leader's producer state differs from the follower's:\n%x\n%x", l, f)
	}
	if v, err := leader.Check(hdr(1, 0, 0, 1)); err == nil {
		t.Fatalf("a batch of the expired state is still known: %+v", v)
	}
}

func TestProducerStateMarshal(t *testing.T) {
	var s ProducerState
	for pid := int64(0); pid < 20; pid++ {
		for i := range int32(pid % 8) {
			s.Applied(hdr(pid, int16(pid%3), i*2, 2), pid*100+int64(i)*2)
		}
	}
	s.Applied(hdr(99, 1, math.MaxInt32, 1), 5000)
	if err := s.Proposed(hdr(99, 1, 0, 1), 5001); err != nil { // not marshalled
		t.Fatal(err)
	}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var r ProducerState
	if err := r.Proposed(hdr(5, 0, 0, 1), 1); err != nil { // dropped by Unmarshal
		t.Fatal(err)
	}
	if err := r.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if r.InFlight() != 0 || r.Len() != s.Len() {
		t.Fatalf("decoded: %d producers, %d in flight", r.Len(), r.InFlight())
	}
	again, _ := r.MarshalBinary()
	if !bytes.Equal(again, b) {
		t.Fatal("re-encoding differs")
	}
	s.DiscardInFlight()
	for pid := int64(0); pid < 100; pid++ {
		for _, h := range []BatchHeader{hdr(pid, 0, 0, 2), hdr(pid, 1, 2, 2), hdr(pid, 2, 6, 2), hdr(pid, 1, 0, 1), hdr(pid, 2, 14, 1)} {
			v1, e1 := s.Check(h)
			v2, e2 := r.Check(h)
			if v1 != v2 || (e1 == nil) != (e2 == nil) || (e1 != nil && e1.Error() != e2.Error()) {
				t.Fatalf("producer %d: original says %+v %v, decoded %+v %v", pid, v1, e1, v2, e2)
			}
		}
	}

	// Every truncation and a trailing byte are refused, leaving the state
	// as it was.
	for n := range len(b) {
		if err := r.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("decoded %d of %d bytes", n, len(b))
		}
	}
	if err := r.UnmarshalBinary(append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("decoded a trailing byte")
	}
	if again, _ := r.MarshalBinary(); !bytes.Equal(again, b) {
		t.Fatal("a failed decode changed the state")
	}
	var empty ProducerState
	eb, _ := empty.MarshalBinary()
	if err := r.UnmarshalBinary(eb); err != nil || r.Len() != 0 {
		t.Fatalf("empty state: %v, %d producers", err, r.Len())
	}
}
