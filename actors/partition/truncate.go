package partition

import (
	"errors"
	"fmt"
	"slices"
	"sort"
)

// TruncateTo removes every batch at or above offset, so that WrittenEnd()
// becomes offset, and LogEnd() too if it was above: the later segments are
// deleted and the one containing offset is cut, with its indexes. It is how
// a partition goes back to its checkpoint at startup.
//
// offset must be WrittenEnd() (nothing to do) or the base offset of a
// batch (ErrNotBatchBoundary otherwise); above WrittenEnd() it is
// ErrOffsetOutOfRange. At or below LogStart() it empties the log, which
// then starts at offset (as Reset). The change is synced before TruncateTo
// returns: it happens at startup, not on the produce path, and a deleted
// segment that came back after a crash would be indistinguishable from
// data.
func (l *Log) TruncateTo(offset int64) error {
	if err := l.usable(); err != nil {
		return err
	}
	end := l.act.end
	switch {
	case offset == end:
		return nil
	case offset > end:
		return fmt.Errorf("truncate %s: %w: %d is above the written end %d", l.opts.Dir, ErrOffsetOutOfRange, offset, end)
	case offset <= l.start:
		return l.Reset(offset)
	}
	all := l.segments()
	i := all.segmentIndex(offset)
	sv := all.segment(i)
	k := sv.find(offset)
	if sv.dense[k].rel != uint32(offset-sv.seg.base) {
		return fmt.Errorf("truncate %s: %w: %d is inside the batch at %d", l.opts.Dir, ErrNotBatchBoundary,
			offset, sv.seg.base+int64(sv.dense[k].rel))
	}
	return l.cut(&all, i, k)
}

// TruncateRaft removes every batch whose Raft index is index or above: Raft
// overwrites a conflicting suffix of the log from index on. WrittenEnd()
// goes back to the base offset of the first such batch; when there is none
// it does nothing. Those batches must all be uncommitted: TruncateRaft
// refuses, with an error and no change, to remove a batch below the high
// watermark (Raft never overwrites a committed entry, so that would mean
// the state machine diverged).
//
// Readers reading below the high watermark meanwhile are not disturbed.
// Like TruncateTo, the change is synced before TruncateRaft returns: it is
// rare (a new leader's log conflicts with this replica's), and a cut batch
// that came back after a crash next to the entries that replaced it would
// make a Raft log whose terms go down.
func (l *Log) TruncateRaft(index uint64) error {
	if err := l.usable(); err != nil {
		return err
	}
	if index > l.lastRaft {
		return nil
	}
	all := l.segments()
	// An empty segment (only ever the last) sorts as if it held the index.
	i := sort.Search(all.numSegments(), func(j int) bool {
		d := all.segment(j).dense
		return len(d) == 0 || d[len(d)-1].index >= index
	})
	if i == all.numSegments() || len(all.segment(i).dense) == 0 {
		return nil
	}
	sv := all.segment(i)
	k := sort.Search(len(sv.dense), func(k int) bool { return sv.dense[k].index >= index })
	if offset := sv.seg.base + int64(sv.dense[k].rel); offset < l.hw {
		return fmt.Errorf("truncate %s from raft index %d: %w: the batch at %d (raft index %d) is below the high watermark %d",
			l.opts.Dir, index, ErrAppendOrder, offset, sv.dense[k].index, l.hw)
	}
	return l.cut(&all, i, k)
}

// cut removes the batches from batch k of segment i of all on: the
// machinery of TruncateTo and TruncateRaft.
func (l *Log) cut(all *segList, i, k int) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.gen.Add(1)
	dropped := all.numSegments() - 1 - i
	if err := l.truncate(all, i, k); err != nil {
		return l.fail(err)
	}
	end := l.act.end
	if l.hw >= end {
		l.hw = end
		l.tail.reset(nil)
		l.hwMaxTs, l.hwMaxTsRel = l.act.ix.maxTs, l.act.ix.maxTsRel
	} else {
		l.tail.cut(end)
	}
	l.publish()
	l.log.Info().Str("dir", l.opts.Dir).Int64("offset", end).Int64("high_watermark", l.hw).
		Int("deleted_segments", dropped).Msg("truncated log")
	return nil
}

// truncate cuts segment i of all before its batch k, deletes the segments
// after it, makes segment i the active one and syncs all of it.
func (l *Log) truncate(all *segList, i, k int) error {
	base := all.segment(i).seg.base
	// Everything sealed that stays is synced, and the recovery point goes
	// down to the segment that is cut, before anything is cut: after a
	// crash in the middle, that segment and the later ones must be scanned,
	// not trusted.
	if err := l.syncPending(func(ps pendingSync) bool { return ps.seg.base < base }); err != nil {
		return err
	}
	if err := l.recordState(logState{recoveryPoint: base, logStart: min(l.start, l.firstBase())}); err != nil {
		return err
	}
	for j := all.numSegments() - 1; j > i; j-- {
		if err := l.deleteSegment(all.segment(j).seg); err != nil {
			return err
		}
	}
	// cutSegment opens the segment's index files afresh.
	l.act.files.close()
	a, err := l.cutSegment(all.segment(i), k)
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
	if err := errors.Join(l.fsync(a.seg.log), a.files.sync(l.fsync), l.syncDir()); err != nil {
		return fmt.Errorf("sync truncation of %s: %w", a.seg.name(), err)
	}
	l.syncMu.Lock()
	l.dirDirty = false
	l.syncMu.Unlock()
	return nil
}

// prefix returns the indexer state, offset index and time index that
// appending only the first k batches of sv would have left: the time index
// is the segment's, up to those batches; the running maximum timestamp
// comes from it and from the batches after the last offset index point,
// which are read.
func (l *Log) prefix(sv *segView, k int) (x indexer, offIdx []byte, times []timeEntry, err error) {
	seg := sv.seg
	cutPos, cutRel := sv.size, sv.endRel()
	if k < len(sv.dense) {
		cutPos, cutRel = int64(sv.dense[k].pos), sv.dense[k].rel
	}
	dense := sv.dense[:k]
	n := sort.Search(len(sv.times), func(j int) bool { return sv.times[j].rel >= cutRel })
	times = slices.Clone(sv.times[:n])

	offIdx, _, x = buildIndexes(batchInfos(dense, cutRel), int64(l.opts.IndexIntervalBytes), false)
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
				return x, nil, nil, err
			}
			if b == nil {
				return x, nil, nil, fmt.Errorf("segment %s changed under truncation: %s", seg.name(), reason)
			}
			if h := decodeHeader(b); h.MaxTimestamp > x.maxTs {
				x.maxTs, x.maxTsRel = h.MaxTimestamp, lastRelOf(dense, j, cutRel)
			}
		}
	}
	return x, offIdx, times, nil
}

// cutSegment truncates the segment's files before its batch k and returns it
// as the active segment.
func (l *Log) cutSegment(sv *segView, k int) (*activeSegment, error) {
	seg := sv.seg
	x, offIdx, times, err := l.prefix(sv, k)
	if err != nil {
		return nil, err
	}
	cutPos, cutRel := int64(sv.dense[k].pos), sv.dense[k].rel
	if err := seg.log.Truncate(cutPos); err != nil {
		return nil, fmt.Errorf("truncate %s: %w", seg.name(), err)
	}
	files, err := openIndexFiles(seg)
	if err != nil {
		return nil, err
	}
	a := &activeSegment{
		seg: seg, files: files, ix: x, size: cutPos, end: seg.base + int64(cutRel), dense: slices.Clone(sv.dense[:k]),
		times: times, offsetBytes: int64(len(offIdx)), timeBytes: int64(len(times) * timeEntrySize),
		raftBytes: int64(k * raftEntrySize),
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

// SetHighWatermark sets the high watermark to offset, which must be a batch
// boundary (ErrNotBatchBoundary) in [LogStart(), WrittenEnd()]
// (ErrOffsetOutOfRange). The partition calls it when it restores its
// checkpoint at startup, before it serves anything: Open leaves the mark at
// the written end, and what the checkpoint does not cover is uncommitted
// until Raft commits it again. It reads the headers of the batches above
// the new mark (and a little below it); it never changes the files.
func (l *Log) SetHighWatermark(offset int64) error {
	if err := l.usable(); err != nil {
		return err
	}
	if offset < l.start || offset > l.act.end {
		return fmt.Errorf("set high watermark of %s: %w: %d not in [%d, %d]", l.opts.Dir, ErrOffsetOutOfRange,
			offset, l.start, l.act.end)
	}
	if offset == l.hw {
		return nil
	}
	all := l.segments()
	j := all.segmentIndex(offset)
	sv := all.segment(j)
	k := len(sv.dense)
	if offset < sv.end {
		if k = sv.find(offset); sv.dense[k].rel != uint32(offset-sv.seg.base) {
			return fmt.Errorf("set high watermark of %s: %w: %d is inside the batch at %d", l.opts.Dir,
				ErrNotBatchBoundary, offset, sv.seg.base+int64(sv.dense[k].rel))
		}
	}
	x, _, _, err := l.prefix(sv, k)
	if err != nil {
		return fmt.Errorf("set high watermark of %s: %w", l.opts.Dir, err)
	}
	var tail []tailBatch
	for i := j; i < all.numSegments(); i++ {
		sv := all.segment(i)
		if k == len(sv.dense) {
			k = 0
			continue
		}
		sc := newBatchScanner(sv.seg.log, sv.seg.name(), int64(sv.dense[k].pos), sv.size)
		for range sv.dense[k:] {
			_, b, reason, err := sc.next()
			if err == nil && b == nil {
				err = fmt.Errorf("%w: %s: %s", ErrCorruptSegment, sv.seg.name(), reason)
			}
			if err != nil {
				return fmt.Errorf("set high watermark of %s: %w", l.opts.Dir, err)
			}
			h := decodeHeader(b)
			tail = append(tail, tailBatch{base: h.BaseOffset, maxTs: h.MaxTimestamp})
		}
		k = 0
	}
	l.hw, l.hwMaxTs, l.hwMaxTsRel = offset, x.maxTs, x.maxTsRel
	l.tail.reset(tail)
	l.publish()
	l.log.Info().Str("dir", l.opts.Dir).Int64("high_watermark", offset).Int64("written_end", l.act.end).
		Msg("set high watermark")
	return nil
}

// Reset empties the log and starts it again at offset, whatever the log
// held: every segment, retired ones included, is deleted and an empty one
// is created. A replica uses it when it installs a snapshot that its log
// does not reach, once the snapshot is durable. Like TruncateTo it is
// synced before it returns.
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
	all := l.segments()
	// The state goes first: if the removals are cut short, what is left
	// lies below the new log start and is scanned, then removed. The
	// recovery point stays at or below the first segment: the old
	// segments' index files need not have been synced, and Open would
	// trust those of segments ending below it.
	if err := l.recordState(logState{recoveryPoint: min(offset, l.firstBase()), logStart: offset}); err != nil {
		return l.fail(err)
	}
	if err := l.syncPending(func(pendingSync) bool { return false }); err != nil {
		return l.fail(err)
	}
	l.act.files.close()
	for i := all.numSegments() - 1; i >= 0; i-- {
		if err := l.deleteSegment(all.segment(i).seg); err != nil {
			return l.fail(err)
		}
	}
	deleted := all.numSegments() + len(l.retired)
	for i := len(l.retired) - 1; i >= 0; i-- {
		if err := l.deleteSegment(l.retired[i].seg); err != nil {
			return l.fail(err)
		}
	}
	l.retired = nil
	a, err := createSegment(l.opts.Dir, offset, int64(l.opts.IndexIntervalBytes))
	if err == nil {
		err = l.syncDir()
	}
	if err != nil {
		return l.fail(err)
	}
	l.syncMu.Lock()
	l.dirDirty = false
	l.syncMu.Unlock()
	l.setSealed(nil)
	l.act, l.start, l.lastRaft = a, offset, 0
	l.hw, l.hwMaxTs, l.hwMaxTsRel = offset, noTimestamp, 0
	l.tail.reset(nil)
	l.publish()
	l.log.Info().Str("dir", l.opts.Dir).Int64("offset", offset).Int("deleted_segments", deleted).
		Msg("reset log")
	return nil
}

// AdvanceLogStart moves the log start up to offset, which may fall inside a
// segment or a batch, and retires the segments entirely below it; when
// offset is the written end, the active segment is rolled first and
// retired with them (an empty one takes its place): readers, Size, RetentionPoint and every later view no
// longer see them, but their files stay until ReleaseSegments deletes
// them. An offset at or below the log start changes nothing, so replaying
// the same advance is harmless; above LogEnd(), the high watermark, it is
// ErrOffsetOutOfRange: the log start never passes what is committed.
//
// Because every replica must agree on the log start, the partition calls it
// when it applies a proposal (retention, DeleteRecords), not on its own.
// Deleting segments is Raft log compaction, which may only happen below a
// durable checkpoint, hence ReleaseSegments. Flush records a start no
// higher than the first segment on disk, so after a crash the log reaches
// back to the oldest batch the WAL may name; the partition's checkpoint and
// its replay of the proposals move the start up again.
func (l *Log) AdvanceLogStart(offset int64) error {
	if err := l.usable(); err != nil {
		return err
	}
	if offset <= l.start {
		return nil
	}
	if offset > l.hw {
		return fmt.Errorf("advance log start of %s: %w: %d is above the high watermark %d",
			l.opts.Dir, ErrOffsetOutOfRange, offset, l.hw)
	}
	l.start = offset
	if offset == l.act.end && l.act.size > 0 {
		// Nothing written lies at or above the new start (retention took
		// the active segment too): the active segment is rolled, so that the next batch starts a new one and this one is
		// retired and released like any sealed segment. Whether a replica
		// rolls depends on its uncommitted tail, so the replicas' segment
		// boundaries may differ; their logs do not.
		if err := l.roll(); err != nil {
			return err
		}
	}
	n := l.retire()
	l.publish()
	if n > 0 {
		l.log.Info().Str("dir", l.opts.Dir).Int64("log_start", offset).Int("retired_segments", n).
			Msg("advanced log start")
	}
	return nil
}

// retire moves the sealed segments that lie wholly below the log start to
// the retired ones, and returns how many it moved. The caller publishes.
// Nothing is closed or deleted, so readers of older views are undisturbed.
func (l *Log) retire() int {
	n := 0
	for n < len(l.sealed) && segmentEnd(l.sealed, l.act, n) <= l.start {
		n++
	}
	if n > 0 {
		l.retired = append(l.retired, l.sealed[:n]...)
		l.setSealed(l.sealed[n:])
	}
	return n
}

// RetiredSegments is how many retired segments still have their files:
// the partition asks for a checkpoint while there are any, so that
// ReleaseSegments deletes them even if nothing more is written. Only the
// appender calls it.
func (l *Log) RetiredSegments() int { return len(l.retired) }

// ReleaseSegments deletes the files of retired segments, oldest first,
// while every batch of the next one has a Raft index at or below through;
// it stops at the first that holds a later one. The partition calls it
// when a checkpoint at Raft index through is durable in the WAL: the WAL no
// longer names any of those batches. Only the appender calls it. The
// removals are made durable with the directory by the next Sync or Flush;
// a segment that a crash brings back is retired again by Open.
func (l *Log) ReleaseSegments(through uint64) error {
	if err := l.usable(); err != nil {
		return err
	}
	n := 0
	for n < len(l.retired) {
		if d := l.retired[n].dense; len(d) > 0 && d[len(d)-1].index > through {
			break
		}
		n++
	}
	if n == 0 {
		return nil
	}
	// A reader of a view from before the segments were retired may still
	// read them: the generation makes it start over.
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.gen.Add(1)
	for i := range n {
		if err := l.deleteSegment(l.retired[i].seg); err != nil {
			return l.fail(err)
		}
	}
	first := l.retired[0].seg.base
	l.retired = slices.Delete(l.retired, 0, n)
	l.publish()
	l.log.Info().Str("dir", l.opts.Dir).Uint64("through_raft_index", through).Int64("from_offset", first).
		Int("deleted_segments", n).Int("retired_segments", len(l.retired)).Msg("released segments")
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

// RewindLogStart moves the log start back down to offset, or to the first
// segment still on disk if that is higher, taking the retired segments
// from there on back into the view. The partition calls it when it
// restores a checkpoint older than a log-start move it has applied (its
// actor restarted): raft replays the move, which retires them again.
// ReleaseSegments deleted only segments a durable checkpoint covers, so
// everything from the restored checkpoint's end on is still there; the
// start may stay above the checkpoint's where it deleted some below that
// end, and the replay ends at the same start anyway. An offset at or above
// the log start changes nothing. Only the appender
// calls it.
func (l *Log) RewindLogStart(offset int64) error {
	if err := l.usable(); err != nil {
		return err
	}
	offset = max(offset, l.firstBase())
	if offset >= l.start {
		return nil
	}
	k := len(l.retired) // the first retired segment that ends above offset
	for k > 0 && retiredEnd(l, k-1) > offset {
		k--
	}
	back := len(l.retired) - k
	if back > 0 {
		l.setSealed(append(slices.Clone(l.retired[k:]), l.sealed...))
		l.retired = slices.Clip(l.retired[:k])
	}
	l.start = offset
	l.publish()
	l.log.Info().Str("dir", l.opts.Dir).Int64("log_start", offset).Int("unretired_segments", back).
		Msg("rewound log start")
	return nil
}

// retiredEnd is the end offset of retired segment i.
func retiredEnd(l *Log, i int) int64 {
	if i+1 < len(l.retired) {
		return l.retired[i+1].seg.base
	}
	all := l.segments()
	return all.segment(0).seg.base
}

// BatchInfo returns the base offset, Raft index and term of the batch that
// holds offset in the written log (the uncommitted tail included, retired
// segments not); ok is false when none does. Only the appender calls it:
// the partition checks with it that its segments agree with a checkpoint.
func (l *Log) BatchInfo(offset int64) (base int64, index, term uint64, ok bool) {
	all := l.segments()
	if offset < all.segment(0).seg.base || offset >= l.act.end {
		return 0, 0, 0, false
	}
	sv, k := all.locate(offset)
	e := sv.dense[k]
	return sv.seg.base + int64(e.rel), e.index, uint64(e.term), true
}
