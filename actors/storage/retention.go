package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/rs/zerolog"
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

// deleteCovered releases the oldest files while they are covered and returns
// how many it released. The files are removed by the WAL's remover, not
// here: an unlink frees the file's blocks and drops its cached pages, which
// for a full file takes milliseconds that no Persist should wait for. A
// released file that a crash leaves on disk is harmless: it is the oldest,
// recovery replays it, and the checkpoints after it supersede it.
func (w *WAL) deleteCovered() int {
	if w.err != nil {
		return 0
	}
	var paths []string
	for len(w.segs) > 1 && w.covered(w.segs[0]) {
		seg := w.segs[0]
		paths = append(paths, w.path(seg.seq))
		w.segs = w.segs[1:]
		w.total -= seg.size
		w.kept -= seg.kept
		w.log.Info().Str("file", segmentName(seg.seq)).Int64("bytes", seg.size).Int("raft_group_count", len(seg.groups)).
			Msg("released WAL file covered by checkpoints")
	}
	w.dropForgotten()
	if len(paths) == 0 {
		return 0
	}
	w.metrics.setFiles(len(w.segs), w.total)
	if w.remover == nil {
		w.remover = startRemover(w.dir, w.opts.Fsync, w.removeFile, w.log, w.metrics)
	}
	w.remover.release(paths)
	return len(paths)
}

// dropForgotten drops the tombstones whose file is the oldest or gone: a
// tombstone only releases the files before its own (holds), and none is
// left. Without this the map would grow by one entry per deleted replica
// forever. Recovery does not need them: it rebuilds the map from the
// tombstones still on disk, and the records they ended are in files
// released before theirs (or, a released file left on disk by a crash,
// replayed with its tombstone).
func (w *WAL) dropForgotten() {
	if len(w.forgotten) == 0 || len(w.segs) == 0 {
		return
	}
	oldest := w.segs[0].seq
	for group, seq := range w.forgotten {
		if seq <= oldest {
			delete(w.forgotten, group)
		}
	}
}

// waitRemoved waits until the remover has tried to remove every file
// released so far, and returns an error if some are still on disk.
func (w *WAL) waitRemoved() error {
	if w.remover == nil {
		return nil
	}
	return w.remover.drain()
}

// remover removes released WAL files on a goroutine of its own, oldest
// first, and fsyncs the directory once per batch. A file it fails to remove
// stays first in its queue, and so do the ones after it: removing a later
// file first would leave a gap, which recovery rightly takes for lost data.
// They are tried again with the next batch or drain.
type remover struct {
	dir     string
	fsync   bool
	remove  func(path string) error
	log     zerolog.Logger
	metrics *Metrics

	jobs    chan removal
	stopped chan struct{}
}

// removal is one job for the remover: files to remove, or, with done set, a
// request to report (on done) once everything before it is tried.
type removal struct {
	paths []string
	done  chan error
}

func startRemover(dir string, fsync bool, remove func(string) error, log zerolog.Logger, m *Metrics) *remover {
	r := &remover{dir: dir, fsync: fsync, remove: remove, log: log, metrics: m,
		jobs: make(chan removal, 64), stopped: make(chan struct{})}
	go r.run()
	return r
}

// release queues paths for removal. It blocks only when the remover is
// far behind (64 batches), which then holds the writer back rather than
// letting released files pile up on disk.
func (r *remover) release(paths []string) {
	r.jobs <- removal{paths: paths}
}

// drain waits until every file released so far has been tried once more.
func (r *remover) drain() error {
	done := make(chan error, 1)
	r.jobs <- removal{done: done}
	return <-done
}

// stop drains the remover and ends its goroutine.
func (r *remover) stop() error {
	err := r.drain()
	close(r.jobs)
	<-r.stopped
	return err
}

func (r *remover) run() {
	defer close(r.stopped)
	var left []string // released, not yet removed, oldest first
	for job := range r.jobs {
		var err error
		if len(job.paths) > 0 || job.done != nil && len(left) > 0 {
			left, err = r.removeAll(append(left, job.paths...))
			if err != nil {
				r.log.Warn().Err(err).Int("files_left", len(left)).
					Msg("deleting a released WAL file failed; retrying with the next batch")
			}
		}
		if job.done != nil {
			job.done <- err
		}
	}
}

// removeAll removes paths in order, stopping at the first failure, then
// fsyncs the directory if it removed any. It returns the paths left.
func (r *remover) removeAll(paths []string) ([]string, error) {
	n := 0
	var err error
	for ; n < len(paths); n++ {
		if rerr := r.remove(paths[n]); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("delete segment %s: %w", filepath.Base(paths[n]), rerr)
			break
		}
		r.metrics.fileDeleted()
	}
	// Without this a crash could bring a deleted file back; harmless for
	// correctness, but the fsync is cheap and rare.
	if n > 0 && r.fsync {
		if serr := SyncDir(r.dir); serr != nil && err == nil {
			err = serr
		}
	}
	return slices.Delete(paths, 0, n), err
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
	return w.total+w.kept > w.opts.BudgetBytes
}

// seq is the sequence number of the file being written; it changes on roll.
func (w *WAL) seq() uint64 {
	return w.current().seq
}

// oldestName is the name of the oldest WAL file, for logs.
func (w *WAL) oldestName() string {
	return segmentName(w.segs[0].seq)
}
