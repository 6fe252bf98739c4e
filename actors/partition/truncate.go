package partition

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/flotilla/flotilla/actors/storage"
)

// TruncateTo removes every batch at or above offset, so that LogEnd()
// becomes offset: the later segments are deleted and the one containing
// offset is cut, with its indexes. It is how a partition goes back to its
// checkpoint at startup before replaying its WAL.
//
// offset must be LogEnd() (nothing to do) or the base offset of a batch
// (ErrNotBatchBoundary otherwise); above LogEnd() it is ErrOffsetOutOfRange.
// At or below LogStart() it empties the log, which then starts at offset
// (as Reset). The change is synced before TruncateTo returns: it happens at
// startup, not on the produce path, and a deleted segment that came back
// after a crash would be indistinguishable from data.
func (l *Log) TruncateTo(offset int64) error {
	if err := l.usable(); err != nil {
		return err
	}
	end := l.act.end
	switch {
	case offset == end:
		return nil
	case offset > end:
		return fmt.Errorf("truncate %s: %w: %d is above the log end %d", l.opts.Dir, ErrOffsetOutOfRange, offset, end)
	case offset <= l.start:
		return l.Reset(offset)
	}
	v := l.view.Load()
	i := v.segmentIndex(offset)
	sv := v.segment(i)
	k := sv.find(offset)
	if sv.dense[k].rel != uint32(offset-sv.seg.base) {
		return fmt.Errorf("truncate %s: %w: %d is inside the batch at %d", l.opts.Dir, ErrNotBatchBoundary,
			offset, sv.seg.base+int64(sv.dense[k].rel))
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.gen.Add(1)
	dropped := v.numSegments() - 1 - i
	if err := l.truncate(v, i, k); err != nil {
		return l.fail(err)
	}
	l.publish()
	l.log.Info().Str("dir", l.opts.Dir).Int64("offset", offset).Int("deleted_segments", dropped).
		Msg("truncated log")
	return nil
}

// truncate cuts segment i of v before its batch k, deletes the segments
// after it, makes segment i the active one and syncs all of it.
func (l *Log) truncate(v *view, i, k int) error {
	// Everything sealed that stays is synced, so that the recovery point
	// written below covers it.
	if err := l.syncPending(func(ps pendingSync) bool { return ps.seg.base < v.segment(i).seg.base }); err != nil {
		return err
	}
	for j := v.numSegments() - 1; j > i; j-- {
		if err := l.deleteSegment(v.segment(j).seg); err != nil {
			return err
		}
	}
	// cutSegment opens the segment's index files afresh.
	l.act.files.close()
	a, err := l.cutSegment(v.segment(i), k)
	if err != nil {
		return err
	}
	l.setSealed(slices.Clone(l.sealed[:i]))
	l.act = a
	l.lastRaft = 0
	if n := len(a.dense); n > 0 {
		l.lastRaft = a.dense[n-1].index
	} else if i > 0 {
		d := l.sealed[i-1].dense
		l.lastRaft = d[len(d)-1].index
	}
	if err := errors.Join(a.seg.log.Sync(), a.files.sync(), storage.SyncDir(l.opts.Dir)); err != nil {
		return fmt.Errorf("sync truncation of %s: %w", a.seg.name(), err)
	}
	return writeState(l.opts.Dir, logState{recoveryPoint: a.seg.base, logStart: l.start})
}

// cutSegment truncates the segment's files before its batch k and returns it
// as the active segment.
func (l *Log) cutSegment(sv *segView, k int) (*activeSegment, error) {
	seg := sv.seg
	cutPos, cutRel := int64(sv.dense[k].pos), sv.dense[k].rel
	dense := slices.Clone(sv.dense[:k])
	n := sort.Search(len(sv.times), func(j int) bool { return sv.times[j].rel >= cutRel })
	times := slices.Clone(sv.times[:n])

	offIdx, _, x := buildIndexes(batchInfos(dense, cutRel), int64(l.opts.IndexIntervalBytes), false)
	// The running maximum timestamp: the time index holds it up to the last
	// index point; the batches after that point are read.
	if n > 0 {
		x.maxTs, x.maxTsRel, x.lastIndexedTs = times[n-1].ts, times[n-1].rel, times[n-1].ts
	}
	from := 0
	if m := len(offIdx) / offsetEntrySize; m > 0 {
		lastPoint := getOffsetEntryPos(offIdx[(m-1)*offsetEntrySize:])
		from = sort.Search(len(dense), func(j int) bool { return int64(dense[j].pos) >= lastPoint })
	}
	if from < len(dense) {
		sc := newBatchScanner(seg.log, seg.name(), int64(dense[from].pos), cutPos)
		for j := from; j < len(dense); j++ {
			_, b, reason, err := sc.next()
			if err != nil {
				return nil, err
			}
			if b == nil {
				return nil, fmt.Errorf("segment %s changed under truncation: %s", seg.name(), reason)
			}
			if h := decodeHeader(b); h.MaxTimestamp > x.maxTs {
				x.maxTs, x.maxTsRel = h.MaxTimestamp, lastRelOf(dense, j, cutRel)
			}
		}
	}

	if err := seg.log.Truncate(cutPos); err != nil {
		return nil, fmt.Errorf("truncate %s: %w", seg.name(), err)
	}
	files, err := openIndexFiles(seg)
	if err != nil {
		return nil, err
	}
	a := &activeSegment{
		seg: seg, files: files, ix: x, size: cutPos, end: seg.base + int64(cutRel), dense: dense, times: times,
		offsetBytes: int64(len(offIdx)), timeBytes: int64(n * timeEntrySize), raftBytes: int64(k * raftEntrySize),
	}
	err = errors.Join(
		files.raft.Truncate(a.raftBytes),
		files.time.Truncate(a.timeBytes),
		files.offset.Truncate(0),
	)
	if err == nil {
		_, err = files.offset.WriteAt(offIdx, 0)
	}
	if err != nil {
		files.close()
		return nil, fmt.Errorf("truncate indexes of %s: %w", seg.name(), err)
	}
	return a, nil
}

// Reset empties the log and starts it again at offset, whatever the log
// held: every segment is deleted and an empty one is created. A replica
// uses it when it installs a snapshot that its log does not reach. Like
// TruncateTo it is synced before it returns.
func (l *Log) Reset(offset int64) error {
	if err := l.usable(); err != nil {
		return err
	}
	if offset < 0 {
		return fmt.Errorf("reset %s: %w: %d", l.opts.Dir, ErrOffsetOutOfRange, offset)
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.gen.Add(1)
	v := l.view.Load()
	// The state goes first: if the removals are cut short, what is left
	// lies below the new log start or is scanned as unflushed.
	if err := writeState(l.opts.Dir, logState{recoveryPoint: offset, logStart: offset}); err != nil {
		return l.fail(err)
	}
	if err := l.syncPending(func(pendingSync) bool { return false }); err != nil {
		return l.fail(err)
	}
	l.act.files.close()
	for i := v.numSegments() - 1; i >= 0; i-- {
		if err := l.deleteSegment(v.segment(i).seg); err != nil {
			return l.fail(err)
		}
	}
	a, err := createSegment(l.opts.Dir, offset, int64(l.opts.IndexIntervalBytes))
	if err == nil {
		err = storage.SyncDir(l.opts.Dir)
	}
	if err != nil {
		return l.fail(err)
	}
	l.setSealed(nil)
	l.act, l.start, l.lastRaft = a, offset, 0
	l.publish()
	l.log.Info().Str("dir", l.opts.Dir).Int64("offset", offset).Int("deleted_segments", v.numSegments()).
		Msg("reset log")
	return nil
}

// AdvanceLogStart moves the log start up to offset, which may fall inside a
// segment or a batch, and deletes the segments entirely below it (never the
// active one). An offset at or below the log start changes nothing, so
// replaying the same advance is harmless; above LogEnd() it is
// ErrOffsetOutOfRange.
//
// Because every replica must agree on the log start, the partition calls it
// when it applies a proposal (retention, DeleteRecords), not on its own.
// The new start is made durable by the next Flush; until then a crash may
// bring back a lower start and the deleted segments, which the partition's
// replay of the proposal removes again.
func (l *Log) AdvanceLogStart(offset int64) error {
	if err := l.usable(); err != nil {
		return err
	}
	if offset <= l.start {
		return nil
	}
	if offset > l.act.end {
		return fmt.Errorf("advance log start of %s: %w: %d is above the log end %d",
			l.opts.Dir, ErrOffsetOutOfRange, offset, l.act.end)
	}
	l.start = offset
	n := 0
	for n < len(l.sealed) && segmentEnd(l.sealed, l.act, n) <= offset {
		n++
	}
	if n == 0 {
		l.publish()
		return nil
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.gen.Add(1)
	deleted := l.sealed[:n]
	l.setSealed(l.sealed[n:])
	l.publish()
	for i := range deleted {
		if err := l.deleteSegment(deleted[i].seg); err != nil {
			return l.fail(err)
		}
	}
	l.log.Info().Str("dir", l.opts.Dir).Int64("log_start", offset).Int("deleted_segments", n).
		Msg("advanced log start")
	return nil
}

// segmentEnd is the end offset of sealed segment i.
func segmentEnd(sealed []segView, act *activeSegment, i int) int64 {
	if i+1 < len(sealed) {
		return sealed[i+1].seg.base
	}
	return act.seg.base
}

// deleteSegment closes and removes a segment that is no longer in the
// published view. The caller holds flushMu and has bumped the generation.
func (l *Log) deleteSegment(seg *segment) error {
	l.syncMu.Lock()
	l.unsynced = slices.DeleteFunc(l.unsynced, func(ps pendingSync) bool {
		if ps.seg == seg {
			ps.files.close()
			return true
		}
		return false
	})
	l.dirDirty = true
	l.syncMu.Unlock()
	seg.log.Close()
	if err := removeSegmentFiles(l.opts.Dir, seg.base); err != nil {
		return fmt.Errorf("delete segment %s: %w", seg.name(), err)
	}
	return nil
}
