package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
)

// Retention: the WAL deletes its oldest files, in order and never the one
// being written, once checkpoints make them useless. A file is useless when,
// for every group with a record in it, a durable checkpoint of that group in
// a later file has a snapshot index at or above the highest index the
// group's records in the file mention: replay then reaches the same state
// without the file, since the checkpoint supersedes the snapshot and entries
// and carries the group's latest hard state.

// covered reports whether seg can be deleted as far as checkpoints go.
func (w *WAL) covered(seg *segment) bool {
	for group, hi := range seg.groups {
		if w.holds(seg, group, hi) {
			return false
		}
	}
	return true
}

// holds reports whether group, whose records in seg reach index hi, still
// needs seg.
func (w *WAL) holds(seg *segment, group, hi uint64) bool {
	if f, ok := w.forgotten[group]; ok && f > seg.seq {
		return false
	}
	m, ok := w.checkpoints[group]
	return !ok || m.seq <= seg.seq || m.index < hi
}

// deleteCovered removes the oldest files while they are covered and returns
// how many it removed.
func (w *WAL) deleteCovered() (int, error) {
	if w.err != nil {
		return 0, nil
	}
	n := 0
	var err error
	for len(w.segs) > 1 && w.covered(w.segs[0]) {
		seg := w.segs[0]
		name := segmentName(seg.seq)
		if rerr := os.Remove(w.path(seg.seq)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("delete segment %s: %w", name, rerr)
			break
		}
		w.segs = w.segs[1:]
		w.total -= seg.size
		n++
		w.metrics.fileDeleted()
		w.log.Info().Str("file", name).Int64("bytes", seg.size).Int("groups", len(seg.groups)).
			Msg("deleted WAL file covered by checkpoints")
	}
	if n > 0 {
		w.metrics.setFiles(len(w.segs), w.total)
		// Without this a crash could bring a deleted file back; harmless
		// for correctness, but the fsync is cheap and rare.
		if w.opts.Fsync {
			if serr := w.syncDir(); serr != nil && err == nil {
				err = serr
			}
		}
	}
	return n, err
}

// holdingBack returns, sorted, the groups that keep the oldest file from
// being deleted; none while there is only the current file.
func (w *WAL) holdingBack() []uint64 {
	if len(w.segs) < 2 {
		return nil
	}
	oldest := w.segs[0]
	var groups []uint64
	for group, hi := range oldest.groups {
		if w.holds(oldest, group, hi) {
			groups = append(groups, group)
		}
	}
	slices.Sort(groups)
	return groups
}

// overBudget reports whether the WAL is larger than Options.BudgetBytes.
func (w *WAL) overBudget() bool {
	return w.total > w.opts.BudgetBytes
}

// seq is the sequence number of the file being written; it changes on roll.
func (w *WAL) seq() uint64 {
	return w.current().seq
}

// oldestName is the name of the oldest WAL file, for logs.
func (w *WAL) oldestName() string {
	return segmentName(w.segs[0].seq)
}
