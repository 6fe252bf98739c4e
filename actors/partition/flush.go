package partition

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Sync makes every batch appended before it was called durable: the
// partition calls it before it acknowledges that it persisted the entries.
// It fsyncs the .log files of the active segment and of the segments sealed
// since the last Sync or Flush, and the directory if segments were created
// or deleted since, all in parallel. The Raft index files are left to the
// next Flush: the WAL's record of the same Persist, synced in the same group
// commit, references every batch (Raft index, term, base offset, size,
// CRC) until a checkpoint's Flush has synced their index entries, and Open
// rebuilds a lost entry from it (Options.kept). That saves an fsync per
// partition per group commit. The offset and time indexes are not synced
// either: Open rebuilds them from the .log and .raft files. Sync records no
// recovery point: the next Open scans what follows the last Flush's.
//
// Sync may be called from any goroutine, concurrently with the appender
// (the storage actor's fsync goroutine calls it, for the partition's
// Persists); it holds up a segment roll or a truncation only for as long
// as its fsyncs take. After a failed fsync the Log refuses every change
// (ErrLogFailed), as after a failed Flush. On a closed Log it
// returns nil if Close made everything durable, and Close's failure if not.
func (l *Log) Sync() error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if p := l.failure.Load(); p != nil {
		return *p
	}
	v := l.view.Load()
	if v.closed {
		return nil
	}
	files := []*os.File{v.whole.active.seg.log}
	// unsynced changes only under flushMu, which Sync holds.
	l.syncMu.Lock()
	for _, ps := range l.unsynced {
		if !ps.logSynced {
			files = append(files, ps.seg.log)
		}
	}
	l.syncMu.Unlock()
	files, closeDir, err := l.withDirtyDir(files)
	if err != nil {
		return l.fail(err)
	}
	defer closeDir()
	if err := l.syncFiles(files); err != nil {
		return l.fail(err)
	}
	l.syncMu.Lock()
	for i := range l.unsynced {
		l.unsynced[i].logSynced = true
	}
	l.syncMu.Unlock()
	return nil
}

// maxParallelSyncs bounds the fsyncs syncFiles runs at once: each blocks an
// OS thread, and a Flush after many small segments can have dozens of files.
const maxParallelSyncs = 8

// syncFiles fsyncs the files in parallel, at most maxParallelSyncs at once.
func (l *Log) syncFiles(files []*os.File) error {
	errs := make([]error, len(files))
	sync1 := func(i int) {
		if err := l.fsync(files[i]); err != nil {
			errs[i] = fmt.Errorf("fsync %s: %w", filepath.Base(files[i].Name()), err)
		}
	}
	// Worker w syncs files w, w+n, w+2n, ...; the caller is worker 0.
	n := min(len(files), maxParallelSyncs)
	var wg sync.WaitGroup
	for w := 1; w < n; w++ {
		wg.Go(func() {
			for i := w; i < len(files); i += n {
				sync1(i)
			}
		})
	}
	for i := 0; i < len(files); i += n {
		sync1(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// withDirtyDir appends the Log's directory, opened, to the files to sync
// if segments were created or deleted since its last fsync, and clears the
// mark; closeDir closes it once synced. A sync that then fails fails the
// Log, so the mark is not needed again.
func (l *Log) withDirtyDir(files []*os.File) (_ []*os.File, closeDir func(), err error) {
	l.syncMu.Lock()
	dirty := l.dirDirty
	l.dirDirty = false
	l.syncMu.Unlock()
	if !dirty {
		return files, func() {}, nil
	}
	d, err := os.Open(l.opts.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("open directory %s: %w", l.opts.Dir, err)
	}
	return append(files, d), func() { d.Close() }, nil
}

// syncDir fsyncs the Log's directory.
func (l *Log) syncDir() error { return fsyncPath(l.fsync, l.opts.Dir) }

// fsyncPath opens the file or directory at path and syncs it with fsync
// (the Log's, or Open's: tests watch what either makes durable).
func fsyncPath(fsync func(*os.File) error, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s to sync: %w", path, err)
	}
	err = fsync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}

// Flush makes everything appended before it was called durable: the sealed
// segments not yet synced, the active segment and its index files, and the
// directory if segments were created or deleted. It then records the
// recovery point, so that the next Open only needs to scan the segments
// written after it, and the log start, lowered to the first segment on
// disk (see AdvanceLogStart). Flush may be called from any goroutine; it holds up the
// appender only if the appender must roll a segment meanwhile. After a
// failed sync the Log refuses every change (ErrLogFailed): the OS may have
// dropped the pages it could not write.
func (l *Log) Flush() error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if p := l.failure.Load(); p != nil {
		return *p
	}
	v := l.view.Load()
	if v.closed {
		return ErrClosed
	}
	if err := l.flushView(v, v.whole.active.seg.base); err != nil {
		return l.fail(fmt.Errorf("flush %s: %w", l.opts.Dir, err))
	}
	return nil
}

// flushView syncs what v covers and records recoveryPoint. The caller holds
// flushMu, which holds up the group commit's Sync of this Log: the files
// are synced in parallel, in one round, so that the wait is about one
// fsync rather than one per file.
func (l *Log) flushView(v *view, recoveryPoint int64) error {
	files, closeDir, err := l.withDirtyDir(v.files.appendTo([]*os.File{v.whole.active.seg.log}))
	if err != nil {
		return err
	}
	defer closeDir()
	if err := l.syncPending(func(pendingSync) bool { return true }, files...); err != nil {
		return err
	}
	return writeState(l.fsync, l.opts.Dir, logState{recoveryPoint: recoveryPoint, logStart: v.stateStart})
}

// Close flushes the log, uncommitted tail included, seals the active
// segment's time index so that the next Open trusts it without scanning,
// and closes every file. Readers then get ErrClosed. Only the appender may
// call it; closing twice is harmless. A failure is kept: a later Sync
// returns it.
func (l *Log) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	var err error
	if p := l.failure.Load(); p != nil {
		err = *p
	} else if err = l.act.seal(); err == nil {
		l.publish()
		err = l.flushView(l.view.Load(), l.act.end)
	}
	if err != nil {
		err = l.fail(err)
	}
	l.gen.Add(1)
	v := l.view.Load()
	l.view.Store(&view{gen: l.gen.Load(), closed: true, start: v.start, end: v.end, written: v.written})
	l.syncMu.Lock()
	for _, ps := range l.unsynced {
		ps.files.close()
	}
	l.unsynced = nil
	l.syncMu.Unlock()
	for _, segs := range [][]segView{l.retired, l.sealed} {
		for i := range segs {
			segs[i].seg.log.Close()
		}
	}
	l.act.files.close()
	l.act.seg.log.Close()
	if err != nil {
		return fmt.Errorf("close %s: %w", l.opts.Dir, err)
	}
	return nil
}

// syncPending syncs (and closes the index files of) the sealed segments
// waiting for a sync for which want returns true, and forgets the others,
// closing their index files unsynced. It syncs the also files in the same
// round. The caller holds flushMu.
func (l *Log) syncPending(want func(pendingSync) bool, also ...*os.File) error {
	l.syncMu.Lock()
	pending := l.unsynced
	l.unsynced = nil
	l.syncMu.Unlock()
	files := also
	for _, ps := range pending {
		if want(ps) {
			files = ps.files.appendTo(append(files, ps.seg.log))
		}
	}
	err := l.syncFiles(files)
	for _, ps := range pending {
		ps.files.close()
	}
	return err
}
