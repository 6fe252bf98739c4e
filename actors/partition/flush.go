package partition

import (
	"errors"
	"fmt"

	"github.com/flotilla/flotilla/actors/storage"
)

// Flush makes everything appended before it was called durable: the sealed
// segments not yet synced, the active segment and its index files, and the
// directory if segments were created or deleted. It then records the
// recovery point, so that the next Open only needs to scan the segments
// written after it. Flush may be called from any goroutine; it holds up the
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
	if err := l.flushView(v, v.active.seg.base); err != nil {
		return l.fail(err)
	}
	return nil
}

// flushView syncs what v covers and records recoveryPoint. The caller holds
// flushMu.
func (l *Log) flushView(v *view, recoveryPoint int64) error {
	if err := l.syncPending(func(pendingSync) bool { return true }); err != nil {
		return err
	}
	if err := errors.Join(v.active.seg.log.Sync(), v.files.sync()); err != nil {
		return fmt.Errorf("sync segment %s: %w", v.active.seg.name(), err)
	}
	l.syncMu.Lock()
	dirDirty := l.dirDirty
	l.dirDirty = false
	l.syncMu.Unlock()
	if dirDirty {
		if err := storage.SyncDir(l.opts.Dir); err != nil {
			return err
		}
	}
	return writeState(l.opts.Dir, logState{recoveryPoint: recoveryPoint, logStart: v.start})
}

// Close flushes the log, seals the active segment's time index so that the
// next Open trusts it without scanning, and closes every file. Readers then
// get ErrClosed. Only the appender may call it; closing twice is harmless.
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
	l.gen.Add(1)
	v := l.view.Load()
	l.view.Store(&view{gen: l.gen.Load(), closed: true, start: v.start, end: v.end})
	l.syncMu.Lock()
	for _, ps := range l.unsynced {
		ps.files.close()
	}
	l.unsynced = nil
	l.syncMu.Unlock()
	for i := range l.sealed {
		l.sealed[i].seg.log.Close()
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
// closing their index files unsynced. The caller holds flushMu.
func (l *Log) syncPending(want func(pendingSync) bool) error {
	l.syncMu.Lock()
	pending := l.unsynced
	l.unsynced = nil
	l.syncMu.Unlock()
	var err error
	for _, ps := range pending {
		if want(ps) && err == nil {
			err = errors.Join(ps.seg.log.Sync(), ps.files.sync())
			if err != nil {
				err = fmt.Errorf("sync segment %s: %w", ps.seg.name(), err)
			}
		}
		ps.files.close()
	}
	return err
}
