package partition

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// tstate is the model of a TestCrashTorture run.
type tstate struct {
	m      model
	hw     int64 // committed end
	start  int64
	synced int // batches [0, synced) are durable (a Sync or Flush covered them)
	ckpt   uint64
}

func bruteMax(m *model, start, hw int64) (TimestampOffset, bool) {
	best, found := TimestampOffset{Timestamp: -1}, false
	for _, s := range m.batches {
		for i, ts := range s.ts {
			off := s.h.BaseOffset + int64(i)
			if off < start || off >= hw {
				continue
			}
			if !found || ts > best.Timestamp {
				best, found = TimestampOffset{ts, off}, true
			}
		}
	}
	return best, found
}

func tortureCheck(t *testing.T, l *Log, st *tstate, rng *rand.Rand, what string) {
	t.Helper()
	if l.LogStart() != st.start || l.LogEnd() != st.hw || l.WrittenEnd() != max(st.m.end(), st.start) {
		t.Fatalf("%s: start/hw/written %d/%d/%d, want %d/%d/%d", what, l.LogStart(), l.LogEnd(), l.WrittenEnd(), st.start, st.hw, st.m.end())
	}
	for _, s := range st.m.batches {
		if s.h.LastOffset() < st.start {
			continue
		}
		b, term, err := l.EntryByRaftIndex(s.raft)
		if err != nil || term != s.term || !bytes.Equal(b, s.b) {
			t.Fatalf("%s: EntryByRaftIndex(%d) = %d bytes term %d %v", what, s.raft, len(b), term, err)
		}
		if s.h.BaseOffset >= st.hw {
			continue
		}
		got, err := l.Read(max(s.h.BaseOffset, st.start), 1)
		if err != nil || !bytes.Equal(got, s.b) {
			t.Fatalf("%s: Read(%d) = %d bytes %v", what, s.h.BaseOffset, len(got), err)
		}
	}
	committed := &model{batches: st.m.batches[:st.m.committedBelow(st.hw)]}
	for range 20 {
		ts := 1_000_000 + rng.Int64N(int64(len(st.m.batches))*10+200) - 100
		got, found, err := l.OffsetForTimestamp(ts)
		if err != nil {
			t.Fatal(err)
		}
		want, wantFound := bruteOffsetForTimestamp(committed, st.start, ts)
		if got != want || found != wantFound {
			t.Fatalf("%s: OffsetForTimestamp(%d) = %+v %v, want %+v %v (start %d hw %d)", what, ts, got, found, want, wantFound, st.start, st.hw)
		}
	}
	got, found, err := l.MaxTimestamp()
	if err != nil {
		t.Fatal(err)
	}
	want, wantFound := bruteMax(&st.m, st.start, st.hw)
	if found != wantFound || (found && got != want) {
		t.Fatalf("%s: MaxTimestamp = %+v %v, want %+v %v (start %d hw %d)", what, got, found, want, wantFound, st.start, st.hw)
	}
}

// TestCrashTorture runs random sequences of appends, commits, raft
// truncations, syncs, checkpoints, log start moves, kill -9s, power cuts
// and clean restarts against a Log, and after every step checks it against
// a model: every synced batch survives, reads, raft entries, timestamp
// lookups and the maximum timestamp are what the model says.
func TestCrashTorture(t *testing.T) {
	seeds := 64
	if testing.Short() {
		seeds = 8
	}
	for seed := uint64(0); seed < uint64(seeds); seed++ {
		dir := t.TempDir()
		opts := testOptions(t, dir)
		opts.SegmentBytes = 700 + int64(seed%5)*300
		opts.IndexIntervalBytes = 100 + int(seed%3)*100
		opts.Log = opts.Log.Level(3) // errors only
		l := mustOpen(t, opts)
		d := watchSyncs(t, l)
		rng := rand.New(rand.NewPCG(seed, 1234))
		st := &tstate{}
		st.m.term = 1
		step := 0
		reopen := func(what string, power bool) {
			if power {
				d.lose(t, l)
			} else {
				crash(l)
			}
			// the WAL: refs of synced batches after the checkpoint; unsynced ones maybe
			k := map[int64]keptIndex{}
			for i, s := range st.m.batches {
				if s.raft > st.ckpt && (i < st.synced || rng.IntN(2) == 0) {
					k[s.h.BaseOffset] = keptIndex{index: s.raft, term: s.term, ref: refOf(s.h)}
				}
			}
			o := opts
			o.kept = k
			o.fsync = d.wrap((*os.File).Sync)
			var err error
			l, err = Open(o)
			if err != nil {
				t.Fatalf("seed %d %s: open: %v", seed, what, err)
			}
			l.fsync = o.fsync
			// what survived beyond the synced ones must be a prefix of what was written
			n := 0
			for n < len(st.m.batches) {
				s := st.m.batches[n]
				if s.h.LastOffset() < l.LogStart() {
					n++
					continue
				}
				b, term, err := l.EntryByRaftIndex(s.raft)
				if err != nil || term != s.term || !bytes.Equal(b, s.b) {
					break
				}
				n++
			}
			if n < st.synced {
				first := st.m.batches[n]
				if first.h.LastOffset() >= st.start {
					t.Fatalf("seed %d %s: synced batch %d (offset %d raft %d) lost; log %d..%d written %d", seed, what, n, first.h.BaseOffset, first.raft, l.LogStart(), l.LogEnd(), l.WrittenEnd())
				}
			}
			if n < len(st.m.batches) {
				end := st.m.batches[n].h.BaseOffset
				if l.WrittenEnd() != end {
					// the log holds something past the prefix: cut it as Recover would
					if err := l.TruncateTo(end); err != nil {
						t.Fatalf("seed %d %s: truncate to %d: %v (written %d)", seed, what, end, err, l.WrittenEnd())
					}
				}
				st.m.batches = st.m.batches[:n]
				if n > 0 {
					st.m.raft = st.m.batches[n-1].raft
				}
			}
			if l.WrittenEnd() != max(st.m.end(), st.start) {
				t.Fatalf("seed %d step %d %s: written end %d, model %d, start %d, hw %d, batches %d synced %d ckpt %d files %v", seed, step, what, l.WrittenEnd(), st.m.end(), st.start, st.hw, len(st.m.batches), st.synced, st.ckpt, logFiles(t, dir))
			}
			st.synced = len(st.m.batches)
			if err := l.SetHighWatermark(st.hw); err != nil {
				t.Fatalf("seed %d %s: set hw %d: %v (start %d written %d)", seed, what, st.hw, err, l.LogStart(), l.WrittenEnd())
			}
			if err := l.AdvanceLogStart(st.start); err != nil {
				t.Fatal(err)
			}
			st.m.term++
		}
		for step = 0; step < 300; step++ {
			what := ""
			switch op := rng.IntN(100); {
			case op < 40:
				what = "write"
				recs := 1 + rng.IntN(4)
				ts := make([]int64, recs)
				for i := range ts {
					ts[i] = 1_000_000 + int64(len(st.m.batches))*10 + rng.Int64N(60) - 30
				}
				gap := 0
				if rng.IntN(4) == 0 {
					gap = 1
				}
				st.m.write(t, l, mkBatch(t, spec{records: recs, ts: ts, valueSize: rng.IntN(150)}), gap, ts)
			case op < 60:
				what = "commit"
				k := st.m.committedBelow(st.hw)
				for j := 0; j < 1+rng.IntN(3) && k < st.synced; j++ {
					s := st.m.batches[k]
					if _, err := l.Commit(s.raft); err != nil {
						t.Fatalf("seed %d: commit: %v", seed, err)
					}
					st.hw = s.h.NextOffset()
					k++
				}
			case op < 67:
				what = "truncate raft"
				k := st.m.committedBelow(st.hw)
				if k < len(st.m.batches) {
					j := k + rng.IntN(len(st.m.batches)-k)
					if err := l.TruncateRaft(st.m.batches[j].raft); err != nil {
						t.Fatal(err)
					}
					st.m.batches = st.m.batches[:j]
					st.synced = min(st.synced, j)
					st.m.raft = 0
					if j > 0 {
						st.m.raft = st.m.batches[j-1].raft
					}
					st.m.term++
				}
			case op < 75:
				what = "sync"
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
				st.synced = len(st.m.batches)
			case op < 80:
				what = "checkpoint"
				if err := l.Flush(); err != nil {
					t.Fatal(err)
				}
				st.synced = len(st.m.batches)
				if k := st.m.committedBelow(st.hw); k > 0 {
					st.ckpt = st.m.batches[k-1].raft
				}
				if err := l.ReleaseSegments(st.ckpt); err != nil {
					t.Fatal(err)
				}
			case op < 88:
				what = "advance start"
				if st.hw > st.start {
					p := st.start + rng.Int64N(st.hw-st.start+1)
					if rng.IntN(3) == 0 {
						p = st.hw
					}
					if err := l.AdvanceLogStart(p); err != nil {
						t.Fatal(err)
					}
					st.start = p
				}
			case op < 93:
				what = "kill"
				reopen(what, false)
			case op < 97:
				what = "power cut"
				reopen(what, true)
			default:
				what = "close"
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				st.synced = len(st.m.batches)
				o := opts
				o.fsync = d.wrap((*os.File).Sync)
				var err error
				l, err = Open(o)
				if err != nil {
					t.Fatalf("seed %d: reopen: %v", seed, err)
				}
				l.fsync = o.fsync
				if err := l.SetHighWatermark(st.hw); err != nil {
					t.Fatal(err)
				}
				if err := l.AdvanceLogStart(st.start); err != nil {
					t.Fatal(err)
				}
			}
			tortureCheck(t, l, st, rng, fmt.Sprintf("seed %d step %d %s", seed, step, what))
		}
		l.Close()
	}
}
