package storage

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// The pipelined fsync. A group commit is two steps: write the batch to the
// OS, then fsync it. The fsync is the slow one, and nothing in it needs the
// storage actor, so it runs on a goroutine of its own while the actor goes on
// appending and writing the next batch. At most one fsync is in flight; when
// it ends, the next one covers everything written meanwhile.
//
// The WAL tracks two points in its sequence of files: what the OS has
// (written) and what an fsync has made durable (synced). A record counts as
// durable once synced is at or past its end. Two rules keep that honest:
//
//   - An fsync covers only the file it syncs. Rolling to a new file waits for
//     the fsync in flight and syncs the old file to its end before the first
//     record goes into the new one, so synced never skips a byte of an
//     older file.
//   - An fsync that fails may have dropped pages the OS had accepted, and a
//     later fsync of the same file can then succeed without them. So no fsync
//     result is used out of order: a synchronous fsync (roll, Commit, Close)
//     first waits for the one in flight, and a failure makes the WAL's error
//     sticky before anything later is acknowledged.

// position is a point in the WAL: an offset in the file with sequence number
// seq. Positions order by file, then offset.
type position struct {
	seq uint64
	off int64
}

// before reports whether p comes before q.
func (p position) before(q position) bool {
	return p.seq < q.seq || p.seq == q.seq && p.off < q.off
}

// syncJob is one fsync in flight. The goroutine running it writes took and
// err, then calls the notify hook, then closes done; the WAL reads took and
// err only after done is closed.
type syncJob struct {
	id      uint64
	f       *os.File // nil when the WAL had nothing to sync: only also
	at      position // the end of what was written when the fsync started
	records uint64   // records appended by then
	took    time.Duration
	err     error
	// also are the groups' own files synced with the WAL (Persist.Also),
	// and alsoErr their results.
	also    []Syncer
	alsoErr []error
	done    chan struct{}
}

// end is the position just past the last record appended, buffered bytes
// included.
func (w *WAL) end() position {
	seg := w.current()
	return position{seq: seg.seq, off: seg.size}
}

// written is the position up to which the OS has every byte: the end less
// what the buffered writer still holds.
func (w *WAL) written() position {
	seg := w.current()
	return position{seq: seg.seq, off: seg.size - int64(w.bw.Buffered())}
}

// durable is the position up to which every record is as durable as the WAL
// makes it: fsynced, or with Options.Fsync off, written.
func (w *WAL) durable() position {
	if !w.opts.Fsync {
		return w.written()
	}
	return w.synced
}

// flush hands every buffered byte to the OS (no fsync).
func (w *WAL) flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		return w.fail(fmt.Errorf("write %s: %w", segmentName(w.current().seq), err))
	}
	if !w.opts.Fsync {
		w.settle()
	}
	return nil
}

// startSync writes what is buffered and starts an fsync of it, and Syncs of
// also, on a goroutine of its own, all in parallel, unless one is already in
// flight (the next one starts when it ends), Options.Fsync is off or there is
// nothing to sync. It returns the job started, or nil. When the job ends,
// the goroutine calls the hook set with setNotify; reap then takes its
// result.
func (w *WAL) startSync(also []Syncer) (*syncJob, error) {
	if w.syncing != nil || !w.opts.Fsync {
		return nil, w.err
	}
	if err := w.flush(); err != nil {
		return nil, err
	}
	job := &syncJob{at: w.end(), records: w.appended, also: also, alsoErr: make([]error, len(also)), done: make(chan struct{})}
	if w.synced.before(w.end()) {
		job.f = w.f
	} else if len(also) == 0 {
		return nil, nil
	}
	w.jobs++
	job.id = w.jobs
	w.syncing = job
	notify, syncFile := w.notify, w.syncFile
	go func() {
		var wg sync.WaitGroup
		for i, s := range job.also {
			wg.Add(1)
			go func() {
				defer wg.Done()
				job.alsoErr[i] = s.Sync()
			}()
		}
		if job.f != nil {
			start := time.Now()
			job.err = syncFile(job.f)
			job.took = time.Since(start)
		}
		wg.Wait()
		// Before done is closed, so that a WAL closed after reaping the
		// job never has its owner woken afterwards.
		if notify != nil {
			notify(job.id)
		}
		close(job.done)
	}()
	return job, nil
}

// setNotify sets the function the fsync goroutine calls, with the job's id,
// when its fsync has ended. It must not block; the storage actor sends
// itself a message.
func (w *WAL) setNotify(notify func(id uint64)) {
	w.notify = notify
}

// reap takes the result of the fsync in flight if its id is id, waiting for
// its goroutine to finish (it has, or is about to: it called notify). A stale
// id, of a job reaped already, does nothing.
func (w *WAL) reap(id uint64) error {
	if w.syncing == nil || w.syncing.id != id {
		return w.err
	}
	return w.wait()
}

// takeSettled returns the checkpoints that became durable since the last
// call, in the order they were appended.
func (w *WAL) takeSettled() []pendingCheckpoint {
	s := w.settled
	w.settled = nil
	return s
}

// takeReaped returns the jobs with Syncs of also that were reaped since the
// last call, whichever way: reap, or a synchronous fsync that waited first.
func (w *WAL) takeReaped() []*syncJob {
	jobs := w.reaped
	w.reaped = nil
	return jobs
}

// wait waits for the fsync in flight, if any, and takes its result: on
// success its position is durable, on failure the WAL fails.
func (w *WAL) wait() error {
	job := w.syncing
	if job == nil {
		return w.err
	}
	<-job.done
	w.syncing = nil
	if len(job.also) > 0 {
		w.reaped = append(w.reaped, job)
	}
	if job.f == nil {
		return w.err
	}
	return w.recordSync(job.at, job.records, job.took, job.err)
}

// syncNow writes what is buffered and fsyncs the current file on the calling
// goroutine, after taking the result of the fsync in flight: everything
// appended is then durable.
func (w *WAL) syncNow() error {
	if err := w.wait(); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	if !w.synced.before(w.end()) {
		return nil
	}
	start := time.Now()
	err := w.syncFile(w.f)
	return w.recordSync(w.end(), w.appended, time.Since(start), err)
}

// recordSync records the outcome of one fsync that covered everything written
// up to at: the first records records appended.
func (w *WAL) recordSync(at position, records uint64, took time.Duration, err error) error {
	w.metrics.observeFsync(took)
	w.fsyncs.Add(1)
	if err != nil {
		return w.fail(fmt.Errorf("fsync %s: %w", segmentName(at.seq), err))
	}
	if w.err != nil {
		return w.err
	}
	if records > w.syncedRecords {
		w.metrics.observeSynced(int(records - w.syncedRecords))
		w.syncedRecords = records
	}
	if w.synced.before(at) {
		w.synced = at
	}
	w.settle()
	return nil
}

// settle makes the pending checkpoints (and the rewrites before them) and
// tombstones that are now durable count for retention, in the order they were appended.
func (w *WAL) settle() {
	durable := w.durable()
	n := 0
	for ; n < len(w.pending); n++ {
		p := w.pending[n]
		if durable.before(p.at) {
			break
		}
		if p.forget {
			w.forgotten[p.group] = p.mark.seq
			delete(w.checkpoints, p.group)
			continue
		}
		if r := p.rewrite; r != nil {
			w.rewritten(p.group, r.index+1, r.seq)
		}
		if m, ok := w.checkpoints[p.group]; !ok || p.mark.index >= m.index {
			w.checkpoints[p.group] = p.mark
		}
		w.settled = append(w.settled, p)
	}
	w.pending = w.pending[:copy(w.pending, w.pending[n:])]
}
