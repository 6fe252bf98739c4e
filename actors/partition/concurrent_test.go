package partition

import (
	"bytes"
	"errors"
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
	type want struct {
		b    []byte
		base int64
		last int64
		raft uint64
	}
	all := make([]want, n)
	var off int64
	for i := range all {
		recs := 1 + i%3
		b := mkBatch(t, spec{records: recs, valueSize: i % 97, baseTs: int64(i)})
		SetBaseOffset(b, off)
		SetPartitionLeaderEpoch(b, 1)
		all[i] = want{b: b, base: off, last: off + int64(recs) - 1, raft: uint64(2*i + 1)}
		off += int64(recs)
	}
	containing := func(off int64) int {
		return sort.Search(n, func(i int) bool { return all[i].last >= off })
	}

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
				pieces, err := SplitBatches(got)
				if err != nil || len(pieces) == 0 {
					t.Errorf("Read(%d) returned %d bytes that are not batches: %v", off, len(got), err)
					return
				}
				k := containing(off)
				for j, p := range pieces {
					if !bytes.Equal(p, all[k+j].b) {
						t.Errorf("Read(%d): batch %d is not the one appended at %d", off, j, all[k+j].base)
						return
					}
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
		if i%300 == 299 {
			// Delete segments under the readers' feet.
			if err = l.AdvanceLogStart(all[i-100].base + 1); err != nil {
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
