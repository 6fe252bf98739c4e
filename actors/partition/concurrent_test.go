package partition

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentReadAppend runs readers and a flusher against the appender
// while it appends across many rolls and deletes segments by moving the log
// start. Every read must return exactly the batches appended at its offset.
// Run it with -race.
func TestConcurrentReadAppend(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	l := mustOpen(t, opts)
	defer l.Close()

	const n = 1500
	all := appendedBatches(t, n, 1, 2)
	containing := func(off int64) int { return holding(all, off) }

	var done atomic.Bool
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			reads := 0
			for !done.Load() || reads < 100 {
				reads++
				start, end := l.LogStart(), l.LogEnd()
				if end == start {
					continue
				}
				off := start + rng.Int64N(end-start)
				got, err := l.Read(off, rng.IntN(3000))
				if err != nil {
					if errors.Is(err, ErrOffsetOutOfRange) && off < l.LogStart() {
						continue // the start moved past it meanwhile
					}
					t.Errorf("Read(%d): %v", off, err)
					return
				}
				if err := readAppended(all, off, got, l.LogEnd()); err != nil {
					t.Error(err)
					return
				}
				i := containing(start + rng.Int64N(end-start))
				b, term, err := l.EntryByRaftIndex(all[i].raft)
				switch {
				case errors.Is(err, ErrRaftIndexNotInLog) && all[i].last < l.LogStart():
				case err != nil || term != 1 || !bytes.Equal(b, all[i].b):
					t.Errorf("EntryByRaftIndex(%d): %v", all[i].raft, err)
					return
				}
				if _, _, err := l.OffsetForTimestamp(int64(rng.IntN(n))); err != nil {
					t.Errorf("OffsetForTimestamp: %v", err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			if err := l.Flush(); err != nil {
				t.Errorf("Flush: %v", err)
				return
			}
		}
	}()

	var err error
	for i, w := range all {
		if err = l.Append(w.b, w.raft, 1); err != nil {
			break
		}
		if _, err = l.Commit(w.raft); err != nil {
			break
		}
		if i%300 == 299 {
			// Retire segments, and delete the ones retired before, under
			// the readers' feet.
			if err = l.AdvanceLogStart(all[i-100].base + 1); err != nil {
				break
			}
			if err = l.ReleaseSegments(all[i-200].raft); err != nil {
				break
			}
		}
	}
	done.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentSyncTruncateRaft runs readers, a syncer and a flusher
// against an appender that writes ahead of its commits, across many rolls,
// and now and then writes a conflicting suffix that it cuts again with
// TruncateRaft (sometimes back into a sealed segment). Readers must only
// ever see the committed batches, whole and never an error; at the end the
// log must hold exactly those. Run it with -race.
func TestConcurrentSyncTruncateRaft(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	l := mustOpen(t, opts)

	const n = 1200
	all := appendedBatches(t, n, 2, 10)
	containing := func(off int64) int { return holding(all, off) }

	var done atomic.Bool
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 9))
			for reads := 0; !done.Load() || reads < 100; reads++ {
				end := l.LogEnd()
				if end == 0 {
					continue
				}
				off := rng.Int64N(end)
				got, err := l.Read(off, rng.IntN(3000))
				if err != nil {
					t.Errorf("Read(%d) below the high watermark %d: %v", off, end, err)
					return
				}
				if err := readAppended(all, off, got, l.LogEnd()); err != nil {
					t.Error(err)
					return
				}
				i := containing(rng.Int64N(end))
				b, term, err := l.EntryByRaftIndex(all[i].raft)
				if err != nil || term != 2 || !bytes.Equal(b, all[i].b) {
					t.Errorf("EntryByRaftIndex(%d) of a committed batch: %v", all[i].raft, err)
					return
				}
				// Near the written end: a batch of either term, whole, or
				// none.
				if w := l.WrittenEnd(); w > 0 {
					i := containing(w - 1 - rng.Int64N(min(w, 20)))
					index := all[i].raft + uint64(rng.IntN(3))
					b, term, err := l.EntryByRaftIndex(index)
					switch {
					case errors.Is(err, ErrRaftIndexNotInLog):
					case err != nil:
						t.Errorf("EntryByRaftIndex(%d) in the tail: %v", index, err)
						return
					default:
						h, err := ParseBatch(b)
						if err != nil || uint64(h.PartitionLeaderEpoch) != term ||
							(term == 2 && (index != all[i].raft || !bytes.Equal(b, all[i].b))) {
							t.Errorf("EntryByRaftIndex(%d) in the tail: term %d, a torn or wrong batch: %v", index, term, err)
							return
						}
					}
				}
				if _, _, err := l.OffsetForTimestamp(int64(rng.IntN(n))); err != nil {
					t.Errorf("OffsetForTimestamp: %v", err)
					return
				}
				if _, _, err := l.MaxTimestamp(); err != nil {
					t.Errorf("MaxTimestamp: %v", err)
					return
				}
			}
		})
	}
	var syncs, flushes atomic.Int64
	wg.Go(func() {
		for !done.Load() {
			if err := l.Sync(); err != nil {
				t.Errorf("Sync: %v", err)
				return
			}
			syncs.Add(1)
		}
	})
	wg.Go(func() {
		for !done.Load() {
			if err := l.Flush(); err != nil {
				t.Errorf("Flush: %v", err)
				return
			}
			flushes.Add(1)
		}
	})

	rng := rand.New(rand.NewPCG(5, 5))
	truncations := 0
	err := func() error {
		committed := 0
		for i, w := range all {
			if rng.IntN(40) == 0 {
				// A suffix from an old term that a new leader overwrites:
				// its batches take the Raft indexes from w's on.
				for j := range 1 + rng.IntN(12) {
					b := mkBatch(t, spec{records: 2, valueSize: 150})
					SetBaseOffset(b, l.WrittenEnd())
					SetPartitionLeaderEpoch(b, 1)
					if err := l.Append(b, w.raft+uint64(j), 1); err != nil {
						return err
					}
				}
				if err := l.TruncateRaft(w.raft); err != nil {
					return err
				}
				truncations++
			}
			if err := l.Append(w.b, w.raft, 2); err != nil {
				return err
			}
			for ; committed < i-rng.IntN(6); committed++ {
				if _, err := l.Commit(all[committed].raft); err != nil {
					return err
				}
			}
		}
		for ; committed < n; committed++ {
			if _, err := l.Commit(all[committed].raft); err != nil {
				return err
			}
		}
		return nil
	}()
	done.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d truncations, %d syncs, %d flushes, %d segments", truncations, syncs.Load(), flushes.Load(),
		len(l.sealed)+1)
	if truncations == 0 || syncs.Load() == 0 {
		t.Fatal("nothing raced")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, opts)
	defer l.Close()
	if end := all[n-1].last + 1; l.LogEnd() != end || l.WrittenEnd() != end {
		t.Fatalf("reopened: LogEnd %d WrittenEnd %d, want %d", l.LogEnd(), l.WrittenEnd(), end)
	}
	for _, w := range all {
		b, term, err := l.EntryByRaftIndex(w.raft)
		if err != nil || term != 2 || !bytes.Equal(b, w.b) {
			t.Fatalf("reopened: EntryByRaftIndex(%d): %v", w.raft, err)
		}
	}
}

// appended is a batch a concurrency test appends, and where it lies.
type appended struct {
	b          []byte
	base, last int64
	raft       uint64
}

// appendedBatches makes n batches of 1 to 3 records, stamped with leader
// epoch term and offsets from 0 on, batch i carried by raft index
// raftStep*i+1.
func appendedBatches(t *testing.T, n int, term int32, raftStep uint64) []appended {
	t.Helper()
	all := make([]appended, n)
	var off int64
	for i := range all {
		recs := 1 + i%3
		b := mkBatch(t, spec{records: recs, valueSize: i % 97, baseTs: int64(i)})
		SetBaseOffset(b, off)
		SetPartitionLeaderEpoch(b, term)
		all[i] = appended{b: b, base: off, last: off + int64(recs) - 1, raft: raftStep*uint64(i) + 1}
		off += int64(recs)
	}
	return all
}

// holding returns the index of the batch of all that holds off.
func holding(all []appended, off int64) int {
	return sort.Search(len(all), func(i int) bool { return all[i].last >= off })
}

// readAppended checks got, what Read(off) returned: whole batches, the
// ones of all from the one holding off on, each below end.
func readAppended(all []appended, off int64, got []byte, end int64) error {
	pieces, err := SplitBatches(got)
	if err != nil || len(pieces) == 0 {
		return fmt.Errorf("Read(%d) returned %d bytes that are not batches: %v", off, len(got), err)
	}
	k := holding(all, off)
	for j, p := range pieces {
		if all[k+j].base >= end || !bytes.Equal(p, all[k+j].b) {
			return fmt.Errorf("Read(%d): batch %d is not the committed one at %d", off, j, all[k+j].base)
		}
	}
	return nil
}
