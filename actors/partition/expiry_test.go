package partition

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

// expire applies a producer expiry entry with the cutoff, as the leader of
// term proposes it, and returns its raft index.
func (r *replica) expire(term uint64, cutoffMs int64) uint64 {
	i := r.next()
	r.step(&pb.Entry{Index: new(i), Term: new(term), Type: pb.EntryNormal.Enum(), Data: expireProducersEntry(cutoffMs)})
	return i
}

// producerIDs are the producers of a replica's applied state.
func producerIDs(m *Machine) []int64 {
	return slices.Sorted(maps.Keys(m.producers.applied))
}

// replay applies to a new replica every entry r applied: a follower of r.
func (r *replica) replay(t *testing.T) *replica {
	t.Helper()
	f := newReplica(t, t.TempDir())
	f.confs = r.confs
	for _, e := range r.wal {
		f.step(e)
	}
	return f
}

// TestApplyProducerExpiry: applying an expiry entry forgets the producers
// whose last batch's timestamp is at or before its cutoff, and only those;
// the checkpoint's producer state shrinks with them; the entry is served
// from the side log like any other entry without a batch; and a follower
// that applies the same entries ends with the same checkpoint.
func TestApplyProducerExpiry(t *testing.T) {
	tests := []struct {
		name   string
		cutoff int64
		left   []int64
	}{
		{"cutoff before every producer", 999, []int64{1, 2, 3}},
		{"cutoff at a producer's last timestamp", 1000, []int64{2, 3}},
		{"cutoff between producers", 2500, []int64{3}},
		{"cutoff after every producer", 5000, []int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReplica(t, t.TempDir())
			for range 3 {
				r.confChange(1)
			}
			r.empty(1)
			// Producer p writes three batches, the last at p*1000 ms.
			for p := int64(1); p <= 3; p++ {
				for k := range int32(3) {
					r.batch(1, spec{valueSize: 20, idempotent: true, pid: p, seq: k, baseTs: p*1000 - 200 + int64(k)*100})
				}
				r.batch(1, spec{valueSize: 20}) // not idempotent: not a producer
			}
			beforeCP := mustSnapshot(t, r.m)
			before := decodeCheckpoint(t, beforeCP)
			if got := producerIDs(r.m); !slices.Equal(got, []int64{1, 2, 3}) {
				t.Fatalf("producers %v before expiry", got)
			}

			i := r.expire(1, tt.cutoff)

			if got := producerIDs(r.m); !slices.Equal(got, tt.left) {
				t.Fatalf("producers %v after expiry at %d, want %v", got, tt.cutoff, tt.left)
			}
			// The checkpoint shrinks with the producers expired, though it
			// gains the entry in its side log.
			afterCP := mustSnapshot(t, r.m)
			after := decodeCheckpoint(t, afterCP)
			expired := len(tt.left) < 3
			if shrank := len(after.Producers) < len(before.Producers); shrank != expired {
				t.Fatalf("checkpointed producer state of %d bytes, %d before expiry", len(after.Producers), len(before.Producers))
			}
			if shrank := len(afterCP) < len(beforeCP); shrank != expired {
				t.Fatalf("checkpoint of %d bytes, %d before expiry", len(afterCP), len(beforeCP))
			}
			e, err := r.m.Entry(i)
			if err != nil || !bytes.Equal(e.GetData(), expireProducersEntry(tt.cutoff)) || e.GetTerm() != 1 {
				t.Fatalf("the cold log serves entry %d as %v (%v), want the expiry entry", i, e, err)
			}
			f := r.replay(t)
			if want, got := mustSnapshot(t, r.m), mustSnapshot(t, f.m); !bytes.Equal(want, got) {
				t.Fatalf("follower's checkpoint differs from the leader's:\n%s\n%s", got, want)
			}
		})
	}
}

// TestApplyProducerExpiryWithBatchInFlight: the leader has a batch of a
// producer in flight when the expiry entry that forgets the producer is
// applied (the batch was proposed after the entry). The leader goes on
// checking the producer against its in-flight batch, and once the batch is
// applied it has exactly the follower's state: the producer with that
// batch alone.
func TestApplyProducerExpiryWithBatchInFlight(t *testing.T) {
	r := newReplica(t, t.TempDir())
	for range 3 {
		r.confChange(1)
	}
	r.empty(1)
	r.batch(1, spec{valueSize: 20, idempotent: true, pid: 1, seq: 0, baseTs: 100})
	r.batch(1, spec{valueSize: 20, idempotent: true, pid: 1, seq: 1, baseTs: 200})
	r.batch(1, spec{valueSize: 20, idempotent: true, pid: 2, seq: 0, baseTs: 100})

	// The leader's in-flight batch, stamped at the log end, where it will
	// be applied: the expiry entry carries no offset.
	b := mkBatch(t, spec{valueSize: 20, idempotent: true, pid: 1, seq: 2, baseTs: 5000})
	SetBaseOffset(b, r.m.log.LogEnd())
	SetPartitionLeaderEpoch(b, 1)
	h := decodeHeader(b)
	if err := r.m.producers.Proposed(h, h.BaseOffset); err != nil {
		t.Fatal(err)
	}

	r.expire(1, 1000)
	if got := producerIDs(r.m); len(got) != 0 {
		t.Fatalf("producers %v in the applied state after expiry, want none", got)
	}
	if v, err := r.m.producers.Check(hdr(1, 0, 3, 1)); err != nil || v.Duplicate {
		t.Fatalf("the next batch after the one in flight: %+v, %v", v, err)
	}
	if v, err := r.m.producers.Check(h); err != nil || !v.Duplicate || !v.InFlight {
		t.Fatalf("a retry of the batch in flight: %+v, %v; want an in-flight duplicate", v, err)
	}

	r.step(&pb.Entry{Index: new(r.next()), Term: new(uint64(1)), Type: pb.EntryNormal.Enum(), Data: b})
	if got := producerIDs(r.m); !slices.Equal(got, []int64{1}) || r.m.producers.InFlight() != 0 {
		t.Fatalf("producers %v, %d batches in flight after the batch applied; want [1], none", got, r.m.producers.InFlight())
	}
	f := r.replay(t)
	if want, got := mustSnapshot(t, r.m), mustSnapshot(t, f.m); !bytes.Equal(want, got) {
		t.Fatalf("follower's checkpoint differs from the leader's:\n%s\n%s", got, want)
	}
}

// TestBoundarySnapshotThenExpiry: a replica that installs the leader's
// boundary snapshot applies the expiry entries after the boundary again,
// judging each producer by the timestamp it had there, not by that of a
// later batch the snapshot leaves out (client timestamps need not grow).
func TestBoundarySnapshotThenExpiry(t *testing.T) {
	r := newReplica(t, t.TempDir())
	for range 3 {
		r.confChange(1)
	}
	r.empty(1)
	// Producer 7's last batch before the new log start is at 100 ms.
	for k := range int32(3) {
		r.batch(1, spec{valueSize: 300, idempotent: true, pid: 7, seq: k, baseTs: 100})
	}
	for range 12 {
		r.batch(1, spec{valueSize: 300})
	}
	r.retain(1, 3000)
	if r.m.log.LogStart() == 0 {
		t.Fatal("retention did not move the log start: the test shows nothing")
	}
	r.batch(1, spec{valueSize: 20, idempotent: true, pid: 8, seq: 0, baseTs: 10})
	r.expire(1, 75) // forgets 8, keeps 7 (100 > 75)
	r.batch(1, spec{valueSize: 20, idempotent: true, pid: 7, seq: 3, baseTs: 50})
	if got := producerIDs(r.m); !slices.Equal(got, []int64{7}) {
		t.Fatalf("leader's producers %v, want [7]", got)
	}

	b, term, ok := r.m.Boundary()
	data, _, sok := r.m.BoundarySnapshot()
	if !ok || !sok {
		t.Fatalf("no boundary snapshot (boundary known %v, snapshot %v)", ok, sok)
	}
	f := newReplica(t, t.TempDir())
	if err := f.m.Restore(&pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(b), Term: new(term)}}); err != nil {
		t.Fatal(err)
	}
	for i := r.m.FirstIndex(); i <= r.m.appliedIndex; i++ {
		e, err := r.m.Entry(i)
		if err != nil {
			t.Fatalf("leader's cold log, entry %d: %v", i, err)
		}
		f.step(e)
	}
	if want, got := mustSnapshot(t, r.m), mustSnapshot(t, f.m); !bytes.Equal(want, got) {
		t.Fatalf("follower's checkpoint differs from the leader's:\n%s\n%s", got, want)
	}
}
