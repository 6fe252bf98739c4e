package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors/storage"
)

// ErrCorruptSegment reports a segment that Open cannot repair: one that was
// synced (it lies below the recovery point), so that its damage is not a
// torn write, and whose Raft indexes cannot be recovered. Dropping it would
// silently lose acknowledged records, so Open refuses.
var ErrCorruptSegment = errors.New("corrupt segment")

// stateFileName is the file where Flush records the recovery point and the
// log start.
const stateFileName = "log.state"

// stateMagic starts the state file; then a version byte, the recovery
// point, the log start, and a CRC-32C of everything before it.
const (
	stateMagic    = "FLPL"
	stateVersion  = 1
	stateFileSize = len(stateMagic) + 1 + 8 + 8 + 4
)

// logState is what the state file holds.
type logState struct {
	// recoveryPoint: every segment that ends at or below it was synced,
	// with its index files, after it was sealed. Open trusts those
	// segments (after a size check) and scans the others.
	recoveryPoint int64
	// logStart is the log start as of the last Flush.
	logStart int64
}

// writeState replaces the state file. It syncs the new file before renaming
// it over the old one, so the state file is always whole. The rename
// itself may be lost in a crash, which leaves the older state; that one is
// still true as long as nothing was cut since it was written, and only
// truncate and Reset cut, after recordState has made their state durable.
func writeState(fsync func(*os.File) error, dir string, st logState) error {
	b := make([]byte, 0, stateFileSize)
	b = append(b, stateMagic...)
	b = append(b, stateVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(st.recoveryPoint))
	b = binary.BigEndian.AppendUint64(b, uint64(st.logStart))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if err := storage.ReplaceFile(fsync, filepath.Join(dir, stateFileName), b); err != nil {
		return fmt.Errorf("write %s: %w", stateFileName, err)
	}
	return nil
}

// recordState writes the state file and fsyncs the directory, so that the
// rename is durable too: a truncation or a reset records its state before
// it cuts anything, and a crash in the middle must find that state, or
// Open could trust a segment the cut left short of its successor.
func (l *Log) recordState(st logState) error {
	if err := writeState(l.fsync, l.opts.Dir, st); err != nil {
		return err
	}
	return l.syncDir()
}

// readState returns the state file's contents; ok is false if there is
// none or it is damaged (then reason says why).
func readState(dir string) (st logState, ok bool, reason string, err error) {
	b, exists, err := readFileIfExists(filepath.Join(dir, stateFileName))
	if err != nil || !exists {
		return st, false, "", err
	}
	switch {
	case len(b) != stateFileSize:
		return st, false, fmt.Sprintf("%d bytes", len(b)), nil
	case string(b[:len(stateMagic)]) != stateMagic || b[len(stateMagic)] != stateVersion:
		return st, false, "unknown format", nil
	case crc32.Checksum(b[:stateFileSize-4], castagnoli) != binary.BigEndian.Uint32(b[stateFileSize-4:]):
		return st, false, "CRC mismatch", nil
	}
	p := b[len(stateMagic)+1:]
	st.recoveryPoint = int64(binary.BigEndian.Uint64(p))
	st.logStart = int64(binary.BigEndian.Uint64(p[8:]))
	return st, true, "", nil
}

// osCreate creates (or empties) a file for reading and writing.
func osCreate(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Base(path), err)
	}
	return f, nil
}

// Open opens the log in opts.Dir, creating an empty one (starting at
// opts.StartOffset) if the directory holds none, and recovers it:
//
//   - Segments that lie below the recovery point recorded by the last Flush
//     were synced; they get a size check only (their Raft index file must
//     cover the .log exactly, and the last batch must end where the next
//     segment begins).
//   - The others, at least the last one, were possibly torn by a crash:
//     every batch is verified (framing, CRC-32C, contiguous offsets, a
//     matching Raft index entry). At the first bad batch the log is cut on
//     disk, the later segments are deleted, and one warning names the file
//     and position. Nothing acknowledged is lost this way: the partition
//     checkpoints only what Flush made durable and replays its WAL after
//     the checkpoint.
//   - The offset and time indexes are derived data: when one is missing,
//     short or disagrees with the log, it is rebuilt.
//   - The Raft index file is not derived data (a batch does not carry its
//     Raft index). Sync leaves it to Flush, so in a segment that is
//     scanned a batch takes its index from the WAL's entry for it
//     (Options.kept) when one matches its base offset, size, CRC and term
//     exactly; otherwise from its .raft entry, and without a valid one it
//     is part of the torn tail. In a synced segment whose Raft index file
//     is damaged, the indexes are recovered only when its neighbours prove
//     them (the batches between them used consecutive Raft indexes);
//     otherwise Open fails with ErrCorruptSegment.
//
// The log start comes from the last Flush, which recorded it at or below
// the first segment then on disk; it is never below the first segment
// found. Every segment is loaded, and those wholly below the start are
// retired (see Log), for ReleaseSegments to delete. The partition moves
// the start to its checkpointed value with AdvanceLogStart.
func Open(opts Options) (*Log, error) {
	began := time.Now()
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create partition directory: %w", err)
	}
	r := &recovery{opts: opts, log: opts.Log, interval: int64(opts.IndexIntervalBytes)}
	l, err := r.run()
	if err != nil {
		r.closeAll()
		return nil, fmt.Errorf("open partition log %s: %w", opts.Dir, err)
	}
	l.opts.kept = nil // only recovery needs it, and it holds an entry per batch since the checkpoint
	v := l.view.Load()
	l.log.Debug().Str("dir", opts.Dir).Int("segments", v.numSegments()).Int("retired_segments", len(l.retired)).
		Int64("log_start", v.start).Int64("log_end", v.end).Int64("bytes", v.size).Dur("took_ms", time.Since(began)).
		Msg("opened partition log")
	return l, nil
}

// recovery is the state of Open while it walks the segments.
type recovery struct {
	opts     Options
	log      zerolog.Logger
	interval int64

	state     logState
	haveState bool

	segs     []segView // loaded so far; the last becomes the active segment
	last     *activeSegment
	prevRaft uint64 // highest Raft index loaded so far
	changed  bool   // files were cut or removed: sync the directory
}

func (r *recovery) run() (*Log, error) {
	dir := r.opts.Dir
	st, ok, reason, err := readState(dir)
	if err != nil {
		return nil, err
	}
	if reason != "" {
		r.log.Warn().Str("dir", dir).Str("file", stateFileName).Str("reason", reason).
			Msg("ignored damaged log state; every segment will be scanned")
	}
	r.state, r.haveState = st, ok
	bases, err := r.listSegments()
	if err != nil {
		return nil, err
	}
	if len(bases) == 0 {
		start := r.opts.StartOffset
		if r.haveState {
			start = r.state.logStart
		}
		return r.fresh(start)
	}
	for i, base := range bases {
		next := int64(-1)
		if i+1 < len(bases) {
			next = bases[i+1]
		}
		if i > 0 {
			// Only a scanned segment can end short of the next one: a
			// trusted one was checked to end at its successor's base.
			if prev := &r.segs[i-1]; prev.end != base {
				r.log.Warn().Str("dir", dir).Str("file", prev.seg.name()).Int64("end_offset", prev.end).
					Str("next_file", segmentFileName(base, logSuffix)).Int("deleted_segments", len(bases)-i).
					Msg("truncated log at a gap between segments")
				if err := r.removeAll(bases[i:]); err != nil {
					return nil, err
				}
				break
			}
		}
		cut, err := r.load(base, next, len(bases)-i-1)
		if err != nil {
			return nil, err
		}
		if cut {
			if err := r.removeAll(bases[i+1:]); err != nil {
				return nil, err
			}
			break
		}
	}
	if err := r.activate(); err != nil {
		return nil, err
	}
	end := r.last.end
	if r.haveState && r.state.logStart > end {
		// An interrupted Reset: finish it.
		r.log.Warn().Str("dir", dir).Int64("log_start", r.state.logStart).Int64("log_end", end).
			Msg("log ends below its recorded start; resetting it there")
		start := r.state.logStart
		r.closeAll()
		if err := r.removeAll(baseOffsets(r.segs)); err != nil {
			return nil, err
		}
		r.segs, r.last, r.prevRaft = nil, nil, 0
		return r.fresh(start)
	}
	return r.finish()
}

// listSegments returns the base offsets of the .log files in order, after
// removing leftovers: temporary files and index files without a .log.
func (r *recovery) listSegments() ([]int64, error) {
	des, err := os.ReadDir(r.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	logs := map[int64]bool{}
	for _, de := range des {
		if base, suffix, ok := parseSegmentFileName(de.Name()); ok && suffix == logSuffix && de.Type().IsRegular() {
			logs[base] = true
		}
	}
	for _, de := range des {
		name := de.Name()
		base, suffix, ok := parseSegmentFileName(name)
		orphan := ok && suffix != logSuffix && !logs[base]
		if !orphan && !strings.HasSuffix(name, ".tmp") {
			continue
		}
		if err := os.Remove(filepath.Join(r.opts.Dir, name)); err != nil {
			return nil, fmt.Errorf("remove leftover %s: %w", name, err)
		}
		r.log.Info().Str("dir", r.opts.Dir).Str("file", name).Msg("removed leftover file")
	}
	var bases []int64
	for base := range logs {
		bases = append(bases, base)
	}
	slices.Sort(bases)
	return bases, nil
}

// fresh makes an empty log at start.
func (r *recovery) fresh(start int64) (*Log, error) {
	a, err := createSegment(r.opts.Dir, start, r.interval)
	if err != nil {
		return nil, err
	}
	r.last = a
	r.changed = true
	return r.finish()
}

func (r *recovery) finish() (*Log, error) {
	// Always, not only when files changed: a segment created before the
	// crash (a roll that no Sync followed) may be trusted as it is, and
	// the batches appended to it from now on are acknowledged after Sync,
	// which syncs the directory only for segments this Log creates.
	if err := fsyncPath(r.opts.fsync, r.opts.Dir); err != nil {
		return nil, err
	}
	// Everything recovered is visible: the partition lowers the high
	// watermark to its checkpoint with SetHighWatermark.
	l := &Log{opts: r.opts, log: r.log, act: r.last, lastRaft: r.prevRaft, fsync: r.opts.fsync,
		hw: r.last.end, hwMaxTs: r.last.ix.maxTs, hwMaxTsRel: r.last.ix.maxTsRel}
	if n := len(r.segs); n > 1 {
		l.setSealed(r.segs[: n-1 : n-1])
	}
	l.start = l.firstBase()
	if r.haveState && r.state.logStart > l.start {
		l.start = r.state.logStart
	}
	// Segments wholly below the recorded start (a start flushed by an
	// older version, or a release that a crash interrupted) may still hold
	// batches that the WAL names: they are retired, not deleted.
	l.retire()
	l.publish()
	return l, nil
}

// firstBase is the base offset of the first segment on disk, retired or
// not.
func (l *Log) firstBase() int64 {
	if len(l.retired) > 0 {
		return l.retired[0].seg.base
	}
	if len(l.sealed) > 0 {
		return l.sealed[0].seg.base
	}
	return l.act.seg.base
}

// load recovers the segment with base offset base (next is the base of the
// one after it, -1 for the last; later is how many follow it) and appends it
// to r.segs. cut reports that the segment was cut, so that the later ones
// must go.
func (r *recovery) load(base, next int64, later int) (cut bool, err error) {
	seg := &segment{base: base, dir: r.opts.Dir}
	f, err := os.OpenFile(seg.path(logSuffix), os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("open segment %s: %w", seg.name(), err)
	}
	seg.log = f
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	info, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat segment %s: %w", seg.name(), err)
	}
	size := info.Size()
	raw, _, err := readFileIfExists(seg.path(raftIndexSuffix))
	if err != nil {
		return false, err
	}
	synced := r.haveState && next >= 0 && next <= r.state.recoveryPoint
	if synced || (r.haveState && next < 0) {
		if dense, ok := r.denseCovers(raw, size); ok {
			sv, ok, err := r.sizeCheck(seg, size, dense)
			if err != nil {
				return false, err
			}
			if ok && ((next >= 0 && sv.end == next) || (next < 0 && sv.end == r.state.recoveryPoint)) {
				return false, r.loadTrusted(sv, next < 0)
			}
		}
	}
	if synced {
		sv, err := r.repairRaftIndex(seg, size, raw, next)
		if err != nil {
			return false, err
		}
		return false, r.loadTrusted(sv, false)
	}
	return r.scan(seg, size, raw, next < 0, later)
}

// denseCovers decodes a Raft index file and checks that it describes the
// .log of size bytes exactly: contiguous batches from position 0, relative
// offsets and Raft indexes increasing.
func (r *recovery) denseCovers(raw []byte, size int64) ([]raftEntry, bool) {
	if len(raw)%raftEntrySize != 0 {
		return nil, false
	}
	dense := make([]raftEntry, len(raw)/raftEntrySize)
	var pos int64
	prevIndex := r.prevRaft
	for k := range dense {
		e := getRaftEntry(raw[k*raftEntrySize:])
		if int64(e.pos) != pos || e.size < BatchHeaderSize || e.index <= prevIndex ||
			(k == 0 && e.rel != 0) || (k > 0 && e.rel <= dense[k-1].rel) {
			return nil, false
		}
		dense[k] = e
		pos = e.end()
		prevIndex = e.index
	}
	return dense, pos == size
}

// sizeCheck reads the last batch's header of a segment whose Raft index
// covers it and returns the segment's view without its time index; ok is
// false if the header disagrees with the index.
func (r *recovery) sizeCheck(seg *segment, size int64, dense []raftEntry) (segView, bool, error) {
	sv := segView{seg: seg, size: size, end: seg.base, dense: dense, maxTs: noTimestamp}
	if len(dense) == 0 {
		return sv, true, nil
	}
	h, err := sv.readHeader(len(dense) - 1)
	if err != nil {
		return sv, false, err
	}
	e := dense[len(dense)-1]
	if h.Magic != currentMagic || h.BaseOffset != seg.base+int64(e.rel) || h.Size() != int(e.size) ||
		h.LastOffsetDelta < 0 || int64(e.rel)+int64(h.LastOffsetDelta) >= math.MaxUint32 {
		return sv, false, nil
	}
	sv.end = h.NextOffset()
	return sv, true, nil
}

// loadTrusted completes a segment whose batches and Raft index are trusted:
// its offset index is checked against the one its batches imply, its time
// index is checked for form and against its last entry's batch, and either
// is rebuilt if it fails.
func (r *recovery) loadTrusted(sv segView, last bool) error {
	seg := sv.seg
	offIdx, _, x := buildIndexes(batchInfos(sv.dense, sv.endRel()), r.interval, false)
	if err := r.ensureFile(seg, offsetIndexSuffix, offIdx, false); err != nil {
		return err
	}
	lastPoint := int64(0)
	if n := len(offIdx); n > 0 {
		lastPoint = getOffsetEntryPos(offIdx[n-offsetEntrySize:])
	}
	times, ok, err := r.checkTimeIndex(&sv, lastPoint)
	if err != nil {
		return err
	}
	if !ok {
		infos, err := r.readInfos(&sv)
		if err != nil {
			return err
		}
		_, timeIdx, _ := buildIndexes(infos, r.interval, true)
		if err := r.ensureFile(seg, timeIndexSuffix, timeIdx, false); err != nil {
			return err
		}
		times, _ = decodeTimeIndex(timeIdx, sv.dense, sv.endRel())
	}
	sv.times = times
	if n := len(times); n > 0 {
		sv.maxTs, sv.maxTsRel = times[n-1].ts, times[n-1].rel
	}
	x.maxTs, x.maxTsRel, x.lastIndexedTs = sv.maxTs, sv.maxTsRel, sv.maxTs
	r.push(sv, x, last)
	return nil
}

// checkTimeIndex loads a trusted segment's time index and checks it; ok is
// false if it must be rebuilt. Checking every entry would mean reading every
// batch header of every segment at each Open, so it checks what is cheap:
// the form of the file; that its last entry is the maxTimestamp of the
// batch it names; and that no batch after the last index point (lastPoint,
// at most IndexIntervalBytes before the end) has a larger one, since the
// last entry of a sealed segment is its maximum. A file that lost entries
// whose maximum lies before the last index point, or whose middle entries
// changed but kept their form, is not caught.
func (r *recovery) checkTimeIndex(sv *segView, lastPoint int64) ([]timeEntry, bool, error) {
	b, _, err := readFileIfExists(sv.seg.path(timeIndexSuffix))
	if err != nil {
		return nil, false, err
	}
	times, ok := decodeTimeIndex(b, sv.dense, sv.endRel())
	if !ok || (len(times) == 0) != (len(sv.dense) == 0) {
		return nil, false, nil
	}
	if len(times) == 0 {
		return times, true, nil
	}
	t := times[len(times)-1]
	h, err := sv.readHeader(batchContaining(sv.dense, t.rel))
	if err != nil || h.MaxTimestamp != t.ts {
		return nil, false, err
	}
	sc := newBatchScanner(sv.seg.log, sv.seg.name(), lastPoint, sv.size)
	for {
		_, b, reason, err := sc.next()
		if err != nil {
			return nil, false, err
		}
		if b == nil {
			if reason != "" {
				return nil, false, fmt.Errorf("%w: %s: %s", ErrCorruptSegment, sv.seg.name(), reason)
			}
			return times, true, nil
		}
		if decodeHeader(b).MaxTimestamp > t.ts {
			return nil, false, nil
		}
	}
}

// readInfos reads the headers of every batch of a trusted segment.
func (r *recovery) readInfos(sv *segView) ([]batchInfo, error) {
	infos := make([]batchInfo, len(sv.dense))
	sc := newBatchScanner(sv.seg.log, sv.seg.name(), 0, sv.size)
	for k, e := range sv.dense {
		_, b, reason, err := sc.next()
		if err != nil {
			return nil, err
		}
		if b == nil {
			return nil, fmt.Errorf("%w: %s: %s", ErrCorruptSegment, sv.seg.name(), reason)
		}
		infos[k] = batchInfo{pos: int64(e.pos), size: int64(e.size), lastRel: lastRelOf(sv.dense, k, sv.endRel()),
			maxTs: decodeHeader(b).MaxTimestamp}
	}
	return infos, nil
}

// ensureFile makes the segment's index file with the given suffix hold
// want, rewriting (and syncing) it if it does not. A file that already
// matches is synced only if syncKept: one of a segment that Open scans may
// be only in the page cache (written before a kill -9), and once the next
// Flush moves the recovery point past the segment, Open trusts its indexes
// and checks the time index only in part; a trusted segment's were synced
// by the Flush that trusted it.
func (r *recovery) ensureFile(seg *segment, suffix string, want []byte, syncKept bool) error {
	path := seg.path(suffix)
	got, exists, err := readFileIfExists(path)
	if err != nil {
		return err
	}
	if exists && bytes.Equal(got, want) {
		if !syncKept {
			return nil
		}
		return fsyncPath(r.opts.fsync, path)
	}
	reason := "missing"
	switch {
	case !exists:
	case len(got) < len(want) && bytes.Equal(got, want[:len(got)]):
		reason = "short"
	default:
		reason = "disagrees with the log"
	}
	if err := rewriteFile(path, want); err != nil {
		return err
	}
	if err := fsyncPath(r.opts.fsync, path); err != nil {
		return err
	}
	r.changed = true
	r.log.Info().Str("dir", r.opts.Dir).Str("file", filepath.Base(path)).Str("reason", reason).
		Int("entries", len(want)/indexEntrySize(suffix)).Msg("rebuilt index")
	return nil
}

func indexEntrySize(suffix string) int {
	switch suffix {
	case offsetIndexSuffix:
		return offsetEntrySize
	case timeIndexSuffix:
		return timeEntrySize
	}
	return raftEntrySize
}

// scan verifies every batch of a segment that may hold a torn write, cuts
// it at the first bad one, and rebuilds its indexes. cut reports whether
// it was cut.
func (r *recovery) scan(seg *segment, size int64, raw []byte, last bool, later int) (cut bool, err error) {
	var (
		dense  []raftEntry
		infos  []batchInfo
		reason string
		pos    int64
		expect = seg.base
	)
	if n := len(r.segs); n > 0 {
		expect = r.segs[n-1].end
	}
	prevIndex := r.prevRaft
	fromWAL := 0 // entries taken from Options.kept
	sc := newBatchScanner(seg.log, seg.name(), 0, size)
	for k := 0; ; k++ {
		var b []byte
		pos, b, reason, err = sc.next()
		if err != nil {
			return false, err
		}
		if b == nil {
			break
		}
		h, perr := ParseBatch(b)
		var e raftEntry
		if k < len(raw)/raftEntrySize {
			e = getRaftEntry(raw[k*raftEntrySize:])
		}
		switch {
		case perr != nil:
			reason = perr.Error()
		case h.BaseOffset != expect:
			reason = fmt.Sprintf("base offset %d, expected %d", h.BaseOffset, expect)
		case h.LastOffset()-seg.base >= math.MaxUint32 || pos+int64(len(b)) > math.MaxUint32:
			reason = "batch does not fit in a segment"
		}
		if reason == "" {
			// Sync leaves the Raft index file to Flush: the WAL's
			// reference, when it names this very batch, is the entry,
			// whatever the file holds (a lost or stale block).
			ke, referenced := r.keptEntry(seg, pos, h, len(b), prevIndex)
			switch {
			case referenced:
				if k >= len(raw)/raftEntrySize || e != ke {
					fromWAL++
				}
				e = ke
			case k >= len(raw)/raftEntrySize:
				reason = "no raft index entry"
			case int64(e.pos) != pos || int(e.size) != len(b) || int64(e.rel) != h.BaseOffset-seg.base ||
				e.index <= prevIndex || int64(e.term) != int64(h.PartitionLeaderEpoch):
				reason = "raft index entry disagrees with the batch"
			}
		}
		if reason != "" {
			break
		}
		dense = append(dense, e)
		infos = append(infos, batchInfo{pos: pos, size: int64(len(b)), lastRel: uint32(h.LastOffset() - seg.base), maxTs: h.MaxTimestamp})
		prevIndex = e.index
		expect = h.NextOffset()
	}
	sv := segView{seg: seg, size: pos, end: expect, dense: dense, maxTs: noTimestamp}
	if reason != "" {
		if err := seg.log.Truncate(pos); err != nil {
			return false, fmt.Errorf("truncate %s: %w", seg.name(), err)
		}
		if err := r.opts.fsync(seg.log); err != nil {
			return false, fmt.Errorf("sync %s: %w", seg.name(), err)
		}
		r.log.Warn().Str("dir", r.opts.Dir).Str("file", seg.name()).Int64("position", pos).
			Int64("dropped_bytes", size-pos).Int("deleted_segments", later).Str("reason", reason).
			Msg("truncated torn or corrupt log tail")
		last = true
	} else if err := r.opts.fsync(seg.log); err != nil {
		// What a scan keeps may be only in the page cache (a kill -9
		// before the group commit); Raft counts it persisted from now on,
		// and no later Sync covers a sealed segment.
		return false, fmt.Errorf("sync %s: %w", seg.name(), err)
	}
	// The segment may have been created since the directory's last sync.
	r.changed = true
	if fromWAL > 0 {
		b := make([]byte, len(dense)*raftEntrySize)
		for k, e := range dense {
			e.put(b[k*raftEntrySize:])
		}
		if err := r.writeSynced(seg.path(raftIndexSuffix), b); err != nil {
			return false, err
		}
		r.log.Info().Str("dir", r.opts.Dir).Str("file", segmentFileName(seg.base, raftIndexSuffix)).
			Int("entries", fromWAL).Msg("rebuilt raft index entries from the WAL's references")
	} else if want := len(dense) * raftEntrySize; len(raw) != want {
		if err := r.truncateFile(seg.path(raftIndexSuffix), int64(want)); err != nil {
			return false, err
		}
	} else if want > 0 {
		// Kept as it is, it may be only in the page cache too, and the
		// WAL's references that could rebuild it go at the next checkpoint.
		if err := fsyncPath(r.opts.fsync, seg.path(raftIndexSuffix)); err != nil {
			return false, err
		}
	}
	offIdx, timeIdx, x := buildIndexes(infos, r.interval, !last)
	if err := r.ensureFile(seg, offsetIndexSuffix, offIdx, true); err != nil {
		return false, err
	}
	if err := r.ensureFile(seg, timeIndexSuffix, timeIdx, true); err != nil {
		return false, err
	}
	sv.times, _ = decodeTimeIndex(timeIdx, dense, sv.endRel())
	sv.maxTs, sv.maxTsRel = x.maxTs, x.maxTsRel
	r.push(sv, x, last)
	return reason != "", nil
}

// keptEntry returns the Raft index entry of the batch at pos of seg (header
// h, size bytes) that Options.kept vouches for: a reference with the same
// base offset, size, CRC and term, and a Raft index after prevIndex.
func (r *recovery) keptEntry(seg *segment, pos int64, h BatchHeader, size int, prevIndex uint64) (raftEntry, bool) {
	k, ok := r.opts.kept[h.BaseOffset]
	if !ok || k.ref != refOf(h) || int(k.ref.size) != size || k.index <= prevIndex ||
		k.term > math.MaxInt32 || int64(k.term) != int64(h.PartitionLeaderEpoch) {
		return raftEntry{}, false
	}
	return raftEntry{index: k.index, rel: uint32(h.BaseOffset - seg.base), pos: uint32(pos), size: uint32(size), term: uint32(k.term)}, true
}

// writeSynced replaces the file at path with b, durably: the WAL's
// references it was rebuilt from go at the next checkpoint, and nothing
// else would sync a sealed segment's file. It goes through storage.ReplaceFile
// because the old file holds entries that a checkpoint's Flush made
// durable and the WAL no longer references: a crash must leave either file
// whole, never a truncated one. (The directory is synced at the end of
// Open, as r.changed says.)
func (r *recovery) writeSynced(path string, b []byte) error {
	if err := storage.ReplaceFile(r.opts.fsync, path, b); err != nil {
		return fmt.Errorf("rewrite %s: %w", filepath.Base(path), err)
	}
	r.changed = true
	return nil
}

// truncateFile cuts the file at path to size and syncs it.
func (r *recovery) truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s to truncate: %w", filepath.Base(path), err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = r.opts.fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("truncate %s: %w", filepath.Base(path), err)
	}
	r.changed = true
	return nil
}

// repairRaftIndex rebuilds the Raft index file of a synced segment whose
// file is damaged, when the WAL's references or the neighbours prove the
// indexes: the entries that still agree with the log, then those the WAL
// vouches for, plus the count of the others, must exactly fill the gap up
// to the next segment's first Raft index (from its file, or the WAL's
// reference when its file has none yet). Entries all vouched for by the
// WAL need no gap.
func (r *recovery) repairRaftIndex(seg *segment, size int64, raw []byte, next int64) (segView, error) {
	fail := func(format string, args ...any) (segView, error) {
		return segView{}, fmt.Errorf("%w: %s: %s", ErrCorruptSegment, seg.name(), fmt.Sprintf(format, args...))
	}
	var (
		headers []BatchHeader
		pos     int64
		expect  = seg.base
	)
	sc := newBatchScanner(seg.log, seg.name(), 0, size)
	for {
		p, b, reason, err := sc.next()
		if err != nil {
			return segView{}, err
		}
		if b == nil {
			if reason != "" {
				return fail("batch at position %d: %s", p, reason)
			}
			break
		}
		h, err := ParseBatch(b)
		if err != nil {
			return fail("batch at position %d: %v", p, err)
		}
		if h.BaseOffset != expect {
			return fail("batch at position %d has base offset %d, expected %d", p, h.BaseOffset, expect)
		}
		headers = append(headers, h)
		pos, expect = p+int64(len(b)), h.NextOffset()
	}
	if expect != next || pos != size {
		return fail("batches end at offset %d, next segment starts at %d", expect, next)
	}
	dense := make([]raftEntry, len(headers))
	var known int
	prevIndex, p := r.prevRaft, int64(0)
	for k, h := range headers {
		dense[k] = raftEntry{rel: uint32(h.BaseOffset - seg.base), pos: uint32(p), size: uint32(h.Size())}
		p += int64(h.Size())
		if known == k && (k+1)*raftEntrySize <= len(raw) {
			e := getRaftEntry(raw[k*raftEntrySize:])
			if e.pos == dense[k].pos && e.size == dense[k].size && e.rel == dense[k].rel && e.index > prevIndex {
				dense[k], prevIndex = e, e.index
				known++
			}
		}
	}
	// The WAL's references vouch for the batches since the checkpoint, as
	// they do in a scan.
	fromFile := known
	for ; known < len(headers); known++ {
		ke, ok := r.keptEntry(seg, int64(dense[known].pos), headers[known], int(dense[known].size), prevIndex)
		if !ok {
			break
		}
		dense[known], prevIndex = ke, ke.index
	}
	if known < len(headers) {
		// The rest must exactly fill the gap up to the next segment.
		if known == 0 && len(r.segs) == 0 {
			return fail("raft index file is damaged and no earlier segment bounds its indexes")
		}
		nextIndex, err := r.firstRaftIndex(next)
		if err != nil {
			return segView{}, err
		}
		if nextIndex == 0 {
			return fail("raft index file is damaged and the next segment's is empty")
		}
		if missing := uint64(len(headers) - known); nextIndex <= prevIndex || nextIndex-prevIndex-1 != missing {
			return fail("raft index file is damaged: %d batches lack an index and the gap (%d, %d) does not prove them",
				missing, prevIndex, nextIndex)
		}
		for k := known; k < len(headers); k++ {
			if headers[k].PartitionLeaderEpoch < 0 {
				return fail("batch %d has no leader epoch to take its raft term from", k)
			}
			prevIndex++
			dense[k].index, dense[k].term = prevIndex, uint32(headers[k].PartitionLeaderEpoch)
		}
	}
	b := make([]byte, len(dense)*raftEntrySize)
	for k, e := range dense {
		e.put(b[k*raftEntrySize:])
	}
	// Durably: nothing later syncs a sealed segment's index, and once the
	// segments before it go, nothing could prove it again.
	if err := r.writeSynced(seg.path(raftIndexSuffix), b); err != nil {
		return segView{}, err
	}
	r.log.Warn().Str("dir", r.opts.Dir).Str("file", segmentFileName(seg.base, raftIndexSuffix)).
		Int("recovered_entries", len(headers)-fromFile).Msg("rebuilt raft index from its neighbours and the WAL")
	return segView{seg: seg, size: size, end: expect, dense: dense, maxTs: noTimestamp}, nil
}

// firstRaftIndex is the Raft index of the first batch of the segment at
// base: from its index file, or, when that has no entry yet (Sync leaves
// it to Flush) or a zeroed one, from the WAL's reference to the batch
// there; 0 when neither has one.
func (r *recovery) firstRaftIndex(base int64) (uint64, error) {
	raw, _, err := readFileIfExists(filepath.Join(r.opts.Dir, segmentFileName(base, raftIndexSuffix)))
	if err != nil {
		return 0, err
	}
	if len(raw) >= raftEntrySize {
		if index := getRaftEntry(raw).index; index != 0 {
			return index, nil
		}
	}
	k, ok := r.opts.kept[base]
	if !ok {
		return 0, nil
	}
	// Only the first batch's header: the segment may be a gigabyte.
	f, err := os.Open(filepath.Join(r.opts.Dir, segmentFileName(base, logSuffix)))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open segment %s: %w", segmentFileName(base, logSuffix), err)
	}
	defer f.Close()
	hdr := make([]byte, BatchHeaderSize)
	switch _, err := io.ReadFull(f, hdr); {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return 0, nil // no whole batch header: nothing to match
	case err != nil:
		return 0, fmt.Errorf("read segment %s: %w", segmentFileName(base, logSuffix), err)
	}
	if h := decodeHeader(hdr); refOf(h) != k.ref || int64(k.term) != int64(h.PartitionLeaderEpoch) {
		return 0, nil // the reference names another batch
	}
	return k.index, nil
}

// push appends a loaded segment; for the last one it keeps the indexer
// state so that appending can go on.
func (r *recovery) push(sv segView, x indexer, last bool) {
	r.segs = append(r.segs, sv)
	if n := len(sv.dense); n > 0 {
		r.prevRaft = sv.dense[n-1].index
	}
	if last {
		r.last = &activeSegment{seg: sv.seg, ix: x, size: sv.size, end: sv.end, dense: sv.dense, times: sv.times}
	}
}

// remove deletes a segment's files during recovery.
func (r *recovery) remove(base int64, why string) error {
	if err := removeSegmentFiles(r.opts.Dir, base); err != nil {
		return err
	}
	r.changed = true
	r.log.Info().Str("dir", r.opts.Dir).Str("segment", segmentFileName(base, logSuffix)).Str("reason", why).
		Msg("deleted segment")
	return nil
}

func (r *recovery) removeAll(bases []int64) error {
	for _, base := range bases {
		if err := r.remove(base, "after the end of the recovered log"); err != nil {
			return err
		}
	}
	return nil
}

func baseOffsets(segs []segView) []int64 {
	out := make([]int64, len(segs))
	for i := range segs {
		out[i] = segs[i].seg.base
	}
	return out
}

// activate makes the last loaded segment the active one: it opens its
// index files for appending.
func (r *recovery) activate() error {
	if r.last == nil {
		// The last segment left was loaded as a sealed one (the ones after
		// it were dropped): writing goes on in it. Its time index ends with
		// its maximum, so that is the last indexed timestamp.
		sv := r.segs[len(r.segs)-1]
		_, _, x := buildIndexes(batchInfos(sv.dense, sv.endRel()), r.interval, false)
		x.maxTs, x.maxTsRel, x.lastIndexedTs = sv.maxTs, sv.maxTsRel, sv.maxTs
		r.last = &activeSegment{seg: sv.seg, ix: x, size: sv.size, end: sv.end, dense: sv.dense, times: sv.times}
	}
	a := r.last
	files, err := openIndexFiles(a.seg)
	if err != nil {
		return err
	}
	a.files = files
	// The index files hold exactly what recovery checked or rebuilt.
	offIdx, _, _ := buildIndexes(batchInfos(a.dense, uint32(a.end-a.seg.base)), r.interval, false)
	a.offsetBytes = int64(len(offIdx))
	a.timeBytes = int64(len(a.times) * timeEntrySize)
	a.raftBytes = int64(len(a.dense) * raftEntrySize)
	return nil
}

// closeAll closes the files of every loaded segment.
func (r *recovery) closeAll() {
	for i := range r.segs {
		r.segs[i].seg.log.Close()
	}
	if r.last != nil {
		r.last.files.close()
		if len(r.segs) == 0 || r.segs[len(r.segs)-1].seg != r.last.seg {
			r.last.seg.log.Close()
		}
	}
}
