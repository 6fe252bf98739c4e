package partition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla/flotilla/actors/storage"
)

// batchEntryAt is the entry at raft index of a batch stamped, as a leader of
// term would, at offset; it returns the offset after it too.
func batchEntryAt(t *testing.T, offset int64, index, term uint64, s spec) (*pb.Entry, int64) {
	t.Helper()
	b := mkBatch(t, s)
	SetBaseOffset(b, offset)
	SetPartitionLeaderEpoch(b, int32(term))
	h, err := ParseBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	return &pb.Entry{Index: new(index), Term: new(term), Type: pb.EntryNormal.Enum(), Data: b}, h.NextOffset()
}

// keptEntries makes n batch entries from the replica's written end on.
func keptEntries(t *testing.T, r *replica, from uint64, term uint64, n, valueSize int) []*pb.Entry {
	t.Helper()
	off := r.m.log.WrittenEnd()
	var ents []*pb.Entry
	for i := range n {
		var e *pb.Entry
		e, off = batchEntryAt(t, off, from+uint64(i), term, spec{records: 2, valueSize: valueSize})
		ents = append(ents, e)
	}
	return ents
}

func mustKeep(t *testing.T, m *Machine, ents []*pb.Entry) []*pb.Entry {
	t.Helper()
	wal, err := m.Keep(ents)
	if err != nil {
		t.Fatal(err)
	}
	if len(wal) != len(ents) {
		t.Fatalf("Keep returned %d entries for %d", len(wal), len(ents))
	}
	return wal
}

func readAll(t *testing.T, l *Log) []byte {
	t.Helper()
	var out []byte
	for off := l.LogStart(); off < l.LogEnd(); {
		b, err := l.Read(off, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for rest := b; len(rest) > 0; {
			h := decodeHeader(rest)
			off = h.NextOffset()
			rest = rest[h.Size():]
		}
		out = append(out, b...)
	}
	return out
}

func bootstrapped(t *testing.T, dir string) *replica {
	t.Helper()
	r := newReplica(t, dir)
	for range 3 {
		r.confChange(1)
	}
	r.empty(1)
	return r
}

// TestKeepWritesApplyPublishes: Keep writes the batches into the segments
// and gives the WAL references; nothing is visible until Apply, which
// publishes each batch in turn.
func TestKeepWritesApplyPublishes(t *testing.T) {
	r := bootstrapped(t, t.TempDir())
	base := r.m.log.LogEnd()
	ents := keptEntries(t, r, r.next(), 1, 3, 50)
	wal := mustKeep(t, r.m, ents)
	for i, e := range wal {
		ref, ok := keptRefOf(e.GetData())
		if !ok || e.GetIndex() != ents[i].GetIndex() || e.GetTerm() != ents[i].GetTerm() {
			t.Fatalf("WAL entry %d is %x, want a reference to entry %d", i, e.GetData(), ents[i].GetIndex())
		}
		if h := decodeHeader(ents[i].GetData()); ref != refOf(h) {
			t.Fatalf("reference %+v, want %+v", ref, refOf(h))
		}
	}
	if err := r.m.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := r.m.log.LogEnd(); got != base || r.m.View().HighWatermark != base {
		t.Fatalf("kept, not applied: high watermark %d (view %d), want %d", got, r.m.View().HighWatermark, base)
	}
	var want []byte
	for _, e := range ents {
		r.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
		want = append(want, e.GetData()...)
		h := decodeHeader(e.GetData())
		if got := r.m.log.LogEnd(); got != h.NextOffset() {
			t.Fatalf("applied entry %d: high watermark %d, want %d", e.GetIndex(), got, h.NextOffset())
		}
	}
	if got := readAll(t, r.m.log)[len(readAll(t, r.m.log))-len(want):]; !bytes.Equal(got, want) {
		t.Fatal("the log does not hold the applied batches as kept")
	}
}

// TestKeepReplacesConflictingSuffix: entries a new leader sends from index i
// replace what the follower kept at i and above; what was applied stays.
func TestKeepReplacesConflictingSuffix(t *testing.T) {
	r := bootstrapped(t, t.TempDir())
	first := r.next()
	old := keptEntries(t, r, first, 1, 3, 50)
	mustKeep(t, r.m, old)
	r.m.Apply(old[0].GetIndex(), old[0].GetTerm(), old[0].GetData())

	// The new leader of term 2 has other entries from first+1 on, stamped
	// after the entry both logs share.
	at := decodeHeader(old[0].GetData()).NextOffset()
	var newer []*pb.Entry
	for i := range 2 {
		var e *pb.Entry
		e, at = batchEntryAt(t, at, first+1+uint64(i), 2, spec{records: 3, valueSize: 80})
		newer = append(newer, e)
	}
	mustKeep(t, r.m, newer)
	for _, e := range newer {
		r.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
	}
	if got := r.m.log.LogEnd(); got != at {
		t.Fatalf("high watermark %d after the new leader's entries, want %d", got, at)
	}
	for _, e := range newer {
		b, term, err := r.m.log.EntryByRaftIndex(e.GetIndex())
		if err != nil || term != 2 || !bytes.Equal(b, e.GetData()) {
			t.Fatalf("entry %d: term %d err %v; want the new leader's batch", e.GetIndex(), term, err)
		}
	}
	// Applied entries are never replaced.
	if _, err := r.m.Keep([]*pb.Entry{newer[0]}); err == nil {
		t.Fatal("Keep replaced an applied entry")
	}
}

// TestRecoverResolvesReferences: after a restart the WAL's references get
// their batches back from the segments; the first one whose batch is not
// there (lost before its sync) ends what counts, and the segments' tail
// after it is cut.
func TestRecoverResolvesReferences(t *testing.T) {
	dir := t.TempDir()
	r := bootstrapped(t, dir)
	applied := keptEntries(t, r, r.next(), 1, 2, 50)
	mustKeep(t, r.m, applied)
	for _, e := range applied {
		r.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
	}
	cp, index := mustSnapshot(t, r.m), r.m.appliedIndex
	if err := r.m.Flush(); err != nil {
		t.Fatal(err)
	}
	tail := keptEntries(t, r, index+1, 1, 4, 60)
	wal := mustKeep(t, r.m, tail)
	if err := r.m.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		wal  func() []*pb.Entry
		want int // entries that count
	}{
		{"all there", func() []*pb.Entry { return cloneEntries(wal) }, 4},
		{"last reference beyond the segments", func() []*pb.Entry {
			lost := &pb.Entry{Index: new(index + 5), Term: new(uint64(1)), Type: pb.EntryNormal.Enum(),
				Data: keptRef{base: decodeHeader(tail[3].GetData()).NextOffset(), size: 100, crc: 1}.entry()}
			return append(cloneEntries(wal), lost)
		}, 4},
		{"a reference to another term's batch", func() []*pb.Entry {
			w := cloneEntries(wal)
			w[2] = &pb.Entry{Index: w[2].Index, Term: new(uint64(2)), Type: w[2].Type, Data: w[2].GetData()}
			return w
		}, 2},
		{"a reference that disagrees with the batch", func() []*pb.Entry {
			w := cloneEntries(wal)
			ref, _ := keptRefOf(w[1].GetData())
			ref.crc++
			w[1] = &pb.Entry{Index: w[1].Index, Term: w[1].Term, Type: w[1].Type, Data: ref.entry()}
			return w
		}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := t.TempDir()
			copyDir(t, dir, d)
			again := newReplica(t, d)
			if err := again.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}}); err != nil {
				t.Fatal(err)
			}
			got, err := again.m.Recover(c.wal())
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.want {
				t.Fatalf("Recover kept %d entries, want %d", len(got), c.want)
			}
			end := decodeHeader(applied[1].GetData()).NextOffset()
			for i, e := range got {
				typ, body, err := decodeEntry(e.GetData())
				if err != nil || typ != entryBatch || !bytes.Equal(body, tail[i].GetData()) {
					t.Fatalf("recovered entry %d is not the kept batch (type %d, err %v)", e.GetIndex(), typ, err)
				}
				end = decodeHeader(body).NextOffset()
			}
			if w := again.m.log.WrittenEnd(); w != end {
				t.Fatalf("written end %d after Recover, want %d: the tail after the last entry that counts stays", w, end)
			}
			for _, e := range got {
				again.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
			}
			if hw := again.m.log.LogEnd(); hw != end {
				t.Fatalf("high watermark %d after replay, want %d", hw, end)
			}
		})
	}
}

// TestRecoverRewritesWholeBatches: a WAL written before the segments were
// the raft log holds whole batches; those the segments lack are written.
func TestRecoverRewritesWholeBatches(t *testing.T) {
	dir := t.TempDir()
	r := bootstrapped(t, dir)
	cp, index := mustSnapshot(t, r.m), r.m.appliedIndex
	if err := r.m.Flush(); err != nil {
		t.Fatal(err)
	}
	ents := keptEntries(t, r, index+1, 1, 3, 40)
	mustKeep(t, r.m, ents[:1]) // the segments have only the first
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}
	again := newReplica(t, dir)
	if err := again.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}}); err != nil {
		t.Fatal(err)
	}
	got, err := again.m.Recover(cloneEntries(ents))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("Recover kept %d whole batches, want 3", len(got))
	}
	for _, e := range got {
		again.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
	}
	for _, e := range ents {
		b, _, err := again.m.log.EntryByRaftIndex(e.GetIndex())
		if err != nil || !bytes.Equal(b, e.GetData()) {
			t.Fatalf("entry %d not in the segments after Recover: %v", e.GetIndex(), err)
		}
	}
	if _, _, err := again.m.log.EntryByRaftIndex(index + 4); !errors.Is(err, ErrRaftIndexNotInLog) {
		t.Fatalf("entry after the WAL's last: %v", err)
	}
}

func cloneEntries(ents []*pb.Entry) []*pb.Entry {
	return append([]*pb.Entry(nil), ents...)
}

// copyDir copies the files of a partition directory.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	des, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(from, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, de.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// walForm is what the WAL holds of entries Keep took: references for the
// batches, the other entries whole.
func walForm(t *testing.T, ents []*pb.Entry) []*pb.Entry {
	t.Helper()
	out := make([]*pb.Entry, len(ents))
	for i, e := range ents {
		out[i] = e
		if e.GetType() != pb.EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		if typ, body, err := decodeEntry(e.GetData()); err == nil && typ == entryBatch {
			out[i] = &pb.Entry{Index: e.Index, Term: e.Term, Type: e.Type, Data: refOf(decodeHeader(body)).entry()}
		}
	}
	return out
}

// TestRestartAfterRetentionPastTheCheckpoint: retention that moves the log
// start past the last durable checkpoint's end keeps the segments it retires
// until a durable checkpoint covers them, so that a restart from the older
// checkpoint still finds every batch the WAL refers to, and replays to the
// same state.
func TestRestartAfterRetentionPastTheCheckpoint(t *testing.T) {
	dir := t.TempDir()
	r := bootstrapped(t, dir)
	seqs, epochs := map[int64]int32{}, map[int64]int16{}
	r.write(1, seqs, epochs, 3, -1)
	cp, index := mustSnapshot(t, r.m), r.m.appliedIndex
	if err := r.m.Flush(); err != nil {
		t.Fatal(err)
	}
	after := len(r.wal)
	r.write(1, seqs, epochs, 10, -1)
	r.retain(1, 1000)
	if r.m.log.LogStart() <= decodeCheckpoint(t, cp).LogEnd {
		t.Fatalf("log start %d: retention did not pass the checkpoint's end; the test shows nothing", r.m.log.LogStart())
	}
	r.write(1, seqs, epochs, 2, -1)
	if err := r.m.Flush(); err != nil { // a checkpoint that never became durable
		t.Fatal(err)
	}
	want := mustSnapshot(t, r.m)
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}

	again := newReplica(t, dir)
	if err := again.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}}); err != nil {
		t.Fatalf("restore the durable checkpoint: %v", err)
	}
	wal := walForm(t, r.wal[after:])
	got, err := again.m.Recover(wal)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(wal) {
		t.Fatalf("Recover kept %d of %d entries: committed batches are gone", len(got), len(wal))
	}
	for _, e := range got {
		again.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
	}
	if got := mustSnapshot(t, again.m); !bytes.Equal(got, want) {
		t.Fatalf("replayed state differs:\n%s\nwant\n%s", got, want)
	}

	// Once a checkpoint covering them is durable, the retired segments go.
	before := countSegments(t, dir)
	if err := again.m.Release(again.m.appliedIndex); err != nil {
		t.Fatal(err)
	}
	if n := countSegments(t, dir); n >= before {
		t.Fatalf("%d segments before Release, %d after", before, n)
	}
}

func decodeCheckpoint(t *testing.T, data []byte) checkpoint {
	t.Helper()
	var cp checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		t.Fatal(err)
	}
	return cp
}

func countSegments(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// TestRestartWithUninstalledLeaderSnapshot: a leader's snapshot that became
// durable just before a crash, before it was installed, is restored at
// startup over segments that still hold the follower's own entries. Those
// must not become committed data; the log restarts at the snapshot's end.
func TestRestartWithUninstalledLeaderSnapshot(t *testing.T) {
	for _, c := range []struct {
		name    string
		records int // of each of the leader's two batches
	}{
		{"snapshot ends on a batch boundary of the stale tail", 2},
		{"snapshot ends inside a batch of the stale tail", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			f := bootstrapped(t, dir)
			stale := keptEntries(t, f, f.next(), 1, 2, 30) // term 1, never committed
			mustKeep(t, f.m, stale)
			if err := f.m.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := f.m.Close(); err != nil {
				t.Fatal(err)
			}

			l := bootstrapped(t, t.TempDir())
			off := l.m.log.WrittenEnd()
			for range 2 {
				var e *pb.Entry
				e, off = batchEntryAt(t, off, l.next(), 2, spec{records: c.records, valueSize: 40})
				l.step(e)
			}
			cp, index := mustSnapshot(t, l.m), l.m.appliedIndex

			again := newReplica(t, dir)
			if err := again.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(2))}}); err != nil {
				t.Fatalf("restart over the stale tail: %v", err)
			}
			end := decodeCheckpoint(t, cp).LogEnd
			if got := again.m.log.LogEnd(); got != end {
				t.Fatalf("high watermark %d, want the snapshot's end %d", got, end)
			}
			if got := again.m.log.WrittenEnd(); got != end {
				t.Fatalf("written end %d: stale entries survived past the snapshot's end %d", got, end)
			}
			for o := again.m.log.LogStart(); o < end; o++ {
				if b, err := again.m.log.Read(o, 1<<20); err == nil && len(b) > 0 {
					t.Fatalf("offset %d serves a batch the leader does not have", o)
				}
			}
		})
	}
}

// TestActorRestartAfterRetentionPastSnapshot: the group's actor restarts
// and restores its last in-memory snapshot, older than a log-start move it
// applied; the retired segments come back, and the replay ends in the same
// state.
func TestActorRestartAfterRetentionPastSnapshot(t *testing.T) {
	r := bootstrapped(t, t.TempDir())
	seqs, epochs := map[int64]int32{}, map[int64]int16{}
	r.write(1, seqs, epochs, 3, -1)
	cp, index := mustSnapshot(t, r.m), r.m.appliedIndex
	after := len(r.wal)
	r.write(1, seqs, epochs, 10, -1)
	r.retain(1, 1000)
	if r.m.log.LogStart() <= decodeCheckpoint(t, cp).LogEnd {
		t.Fatal("retention did not pass the snapshot's end; the test shows nothing")
	}
	r.write(1, seqs, epochs, 2, -1)
	want := mustSnapshot(t, r.m)

	if err := r.m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}}); err != nil {
		t.Fatalf("restore the older snapshot: %v", err)
	}
	for _, e := range r.wal[after:] {
		r.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
	}
	if got := mustSnapshot(t, r.m); !bytes.Equal(got, want) {
		t.Fatalf("replayed state differs:\n%s\nwant\n%s", got, want)
	}
}

// TestActorRestartToTheEmptySnapshot: an actor restart before the first
// snapshot restores the empty one and replays the whole log, even after a
// log-start move (DeleteRecords may put it inside a batch): nothing is
// deleted, and the replay ends in the same state.
func TestActorRestartToTheEmptySnapshot(t *testing.T) {
	for _, inside := range []bool{false, true} {
		t.Run(fmt.Sprintf("start inside a batch %v", inside), func(t *testing.T) {
			r := bootstrapped(t, t.TempDir())
			seqs, epochs := map[int64]int32{}, map[int64]int16{}
			r.write(1, seqs, epochs, 10, -1)
			p := r.m.log.RetentionPoint(0, -1, 1000)
			if inside {
				p++
			}
			boundary, ok := r.m.boundaryAfter(p)
			r.step(&pb.Entry{Index: new(r.next()), Term: new(uint64(1)), Type: pb.EntryNormal.Enum(), Data: logStartEntry(p, boundary, ok)})
			written, want := r.m.log.WrittenEnd(), mustSnapshot(t, r.m)

			if err := r.m.Restore(&pb.Snapshot{}); err != nil {
				t.Fatalf("restore the empty snapshot: %v", err)
			}
			if got := r.m.log.WrittenEnd(); got != written {
				t.Fatalf("written end %d after the restore, was %d: the log lost batches", got, written)
			}
			for _, e := range r.wal {
				if e.GetType() != pb.EntryNormal {
					r.m.KeepEntry(e)
					r.m.ApplyConfChange(e.GetIndex(), e.GetTerm(), nil, r.confs[e.GetIndex()])
					continue
				}
				r.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
			}
			if got := mustSnapshot(t, r.m); !bytes.Equal(got, want) {
				t.Fatalf("replayed state differs:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestPowerCutBeforeTheRaftIndexIsSynced: Sync leaves the Raft index files
// to Flush, so after a power cut NewMachine must give Open the WAL's
// entries after the checkpoint to rebuild the lost index entries from:
// references, and the batches the WAL holds whole (a follower's entries
// with or behind a leader's snapshot, a WAL older than references), which
// Keep wrote to the segments too. Every acknowledged entry comes back.
func TestPowerCutBeforeTheRaftIndexIsSynced(t *testing.T) {
	for _, tc := range []struct {
		name  string
		whole int // entries the WAL holds whole, before the references
	}{
		{"references", 0},
		{"whole batches, then references", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := bootstrapped(t, dir)
			cp, index := mustSnapshot(t, r.m), r.m.appliedIndex
			if err := r.m.Flush(); err != nil {
				t.Fatal(err)
			}
			d := watchSyncs(t, r.m.log)
			var wal []*pb.Entry
			if tc.whole > 0 {
				whole := keptEntries(t, r, index+1, 1, tc.whole, 40)
				mustKeep(t, r.m, whole)
				wal = cloneEntries(whole)
			}
			refs := mustKeep(t, r.m, keptEntries(t, r, index+1+uint64(tc.whole), 1, 3, 40))
			wal = append(wal, refs...)
			if err := r.m.Sync(); err != nil { // the group commit: acknowledged
				t.Fatal(err)
			}
			d.lose(t, r.m.log) // power cut: only what was fsynced survives

			m := openMachine(t, dir, wal)
			if err := m.Restore(&pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}}); err != nil {
				t.Fatal(err)
			}
			got, err := m.Recover(cloneEntries(wal))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(wal) {
				t.Fatalf("Recover kept %d of the %d acknowledged entries", len(got), len(wal))
			}
			for _, e := range wal {
				if _, term, err := m.log.EntryByRaftIndex(e.GetIndex()); err != nil || term != e.GetTerm() {
					t.Fatalf("entry %d: term %d, %v; want term %d", e.GetIndex(), term, err, e.GetTerm())
				}
			}
		})
	}
}

// TestKeepIsTimed: a Keep that wrote batches is timed; one that wrote none
// is not, so the mean is the time a write holds up the raft actor.
func TestKeepIsTimed(t *testing.T) {
	r := bootstrapped(t, t.TempDir())
	r.m.o.Metrics = NewMetrics(nil)
	count := func() uint64 {
		t.Helper()
		var d dto.Metric
		if err := r.m.o.Metrics.KeepSeconds.Write(&d); err != nil {
			t.Fatal(err)
		}
		return d.GetHistogram().GetSampleCount()
	}
	mustKeep(t, r.m, keptEntries(t, r, r.next(), 1, 3, 50))
	if n := count(); n != 1 {
		t.Fatalf("%d Keeps timed after one that wrote batches, want 1", n)
	}
	if _, err := r.m.Keep([]*pb.Entry{{Index: new(r.next() + 3), Term: new(uint64(1))}}); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d Keeps timed after one that wrote none, want 1", n)
	}
}

// TestLeaderSnapshotKeepsWhatItReplaced: a follower that holds every batch
// a leader's snapshot covers installs it. The WAL's record of the snapshot
// replaces the group's entries, references included, while the follower's
// Raft index entries of the batches since its last Flush are not durable
// yet. After a power cut the WAL gives back the references the snapshot
// replaced, and Open keeps those batches rather than cut the log there,
// which made Restore reset the whole log to the snapshot's end.
func TestLeaderSnapshotKeepsWhatItReplaced(t *testing.T) {
	dir := t.TempDir()
	r := bootstrapped(t, dir)
	if err := r.m.Flush(); err != nil {
		t.Fatal(err)
	}
	d := watchSyncs(t, r.m.log)
	ents := keptEntries(t, r, r.next(), 1, 3, 40)
	refs := mustKeep(t, r.m, cloneEntries(ents))
	for _, e := range ents {
		r.m.Apply(e.GetIndex(), e.GetTerm(), e.GetData())
	}
	if err := r.m.Sync(); err != nil { // their group commit
		t.Fatal(err)
	}
	start, end := r.m.log.LogStart(), r.m.log.WrittenEnd()
	cp, index := mustSnapshot(t, r.m), r.m.appliedIndex // the leader's, ending where this log ends
	snap := &pb.Snapshot{Data: cp, Metadata: &pb.SnapshotMetadata{Index: new(index + 5), Term: new(uint64(2))}}

	// The WAL: the references, then the leader's snapshot.
	walDir := filepath.Join(t.TempDir(), "wal")
	w, _, err := storage.Open(walDir, storage.Options{Fsync: true, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AppendUpdate(1, refs, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.AppendUpdate(1, nil, &pb.HardState{Term: new(uint64(2)), Commit: new(index + 5)}, snap); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	d.lose(t, r.m.log) // power cut: the Raft index entries since the Flush are gone

	_, states, err := storage.Open(walDir, storage.Options{Fsync: true, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	m := openMachine(t, dir, recoveredEntries(states[1]))
	if err := m.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if m.log.LogStart() != start || m.log.WrittenEnd() != end {
		t.Fatalf("after the power cut the log holds %d to %d, want %d to %d", m.log.LogStart(), m.log.WrittenEnd(), start, end)
	}
}

// TestReferencesAreWhatKeepReturned: References gives the WAL's form of
// entries already kept, exactly as Keep gave it (a group rewrites them to
// the WAL with it), and writes nothing.
func TestReferencesAreWhatKeepReturned(t *testing.T) {
	r := bootstrapped(t, t.TempDir())
	ents := keptEntries(t, r, r.next(), 1, 3, 50)
	side := &pb.Entry{Index: new(ents[2].GetIndex() + 1), Term: new(uint64(1)), Type: pb.EntryNormal.Enum(), Data: logStartEntry(0, entryID{}, false)}
	empty := &pb.Entry{Index: new(side.GetIndex() + 1), Term: new(uint64(1)), Type: pb.EntryNormal.Enum()}
	ents = append(ents, side, empty)
	wal := mustKeep(t, r.m, ents)
	written := r.m.log.WrittenEnd()
	got, err := r.m.References(ents)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(wal) {
		t.Fatalf("References returned %d entries, Keep %d", len(got), len(wal))
	}
	for i := range wal {
		if !proto.Equal(got[i], wal[i]) {
			t.Fatalf("entry %d: References gave %v, Keep %v", i, got[i], wal[i])
		}
	}
	if r.m.log.WrittenEnd() != written {
		t.Fatalf("References wrote to the log: written end %d, was %d", r.m.log.WrittenEnd(), written)
	}
}
