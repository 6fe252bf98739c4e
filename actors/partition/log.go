package partition

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Defaults for the zero values of Options.
const (
	DefaultSegmentBytes       int64 = 1 << 30
	DefaultIndexIntervalBytes       = 4096
)

// Errors of the Log. Returned errors wrap them with details; test with
// errors.Is.
var (
	// ErrOffsetOutOfRange: the offset is outside [LogStart, LogEnd]. Kafka
	// answers a fetch with it as OFFSET_OUT_OF_RANGE.
	ErrOffsetOutOfRange = errors.New("offset out of range")
	// ErrRaftIndexNotInLog: no batch in the log came from that Raft entry:
	// the entry carried no records (a leader's no-op, a conf change), is
	// below the log start, is above the last batch written, or was
	// removed by TruncateRaft.
	ErrRaftIndexNotInLog = errors.New("raft index not in log")
	// ErrAppendOrder: Append was given a batch whose base offset is not the
	// written end, or a Raft index not above the last one; Commit a Raft
	// index that is not the batch's at the high watermark; TruncateRaft a
	// Raft index whose batch is committed. The partition's state machine
	// has diverged from its log and must halt.
	ErrAppendOrder = errors.New("append out of order")
	// ErrNotBatchBoundary: TruncateTo or SetHighWatermark was given an
	// offset inside a batch.
	ErrNotBatchBoundary = errors.New("offset is not a batch boundary")
	// ErrLogFailed: an earlier write, truncation or sync failed, so what is
	// on disk is unknown; the Log refuses every change until it is reopened.
	ErrLogFailed = errors.New("partition log failed")
	// ErrClosed: the Log was closed.
	ErrClosed = errors.New("partition log closed")
)

// Options configure a Log.
type Options struct {
	// Dir is the partition's directory; it is created if missing and holds
	// nothing but the Log's files.
	Dir string
	// SegmentBytes is the size past which a segment is rolled (a bigger
	// batch still goes whole into a new segment). Zero means
	// DefaultSegmentBytes; at most math.MaxInt32, because positions in the
	// index files are 32 bits.
	SegmentBytes int64
	// IndexIntervalBytes is the number of log bytes between two entries of
	// the sparse offset and time indexes. Zero means
	// DefaultIndexIntervalBytes.
	IndexIntervalBytes int
	// StartOffset is the log start and end of a Log opened on a directory
	// that holds none: a replica that starts from a snapshot begins its log
	// at the snapshot's log end. Ignored when the directory has segments.
	StartOffset int64
	// Log receives the Log's events: recovery, repairs, rolls, deletions.
	// Nothing is logged per batch.
	Log zerolog.Logger

	// writeErrors, when not nil, counts the Logs that failed (fail).
	writeErrors prometheus.Counter

	// kept is what the WAL's references say of the batches appended since
	// the partition's last checkpoint, by base offset: Sync leaves the Raft
	// index files to the next Flush, so after a crash Open takes from here
	// the Raft index of a batch whose index entry did not reach the disk
	// (NewMachine fills it from the entries the WAL recovered).
	kept map[int64]keptIndex
	// fsync syncs a file or directory for Open and the Log: (*os.File).Sync
	// unless a test watches what is made durable.
	fsync func(*os.File) error
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("partition log: no directory")
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if err := checkSegmentBytes(o.SegmentBytes); err != nil {
		return o, fmt.Errorf("partition log: %w", err)
	}
	if o.IndexIntervalBytes == 0 {
		o.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if o.IndexIntervalBytes < 0 {
		return o, fmt.Errorf("partition log: index interval bytes %d", o.IndexIntervalBytes)
	}
	if o.StartOffset < 0 {
		return o, fmt.Errorf("partition log: start offset %d", o.StartOffset)
	}
	if o.fsync == nil {
		o.fsync = (*os.File).Sync
	}
	return o, nil
}

// checkSegmentBytes refuses a segment size below one batch header or past
// the 32-bit positions of the index files.
func checkSegmentBytes(n int64) error {
	if n < BatchHeaderSize || n > math.MaxInt32 {
		return fmt.Errorf("segment bytes %d not in [%d, %d]", n, BatchHeaderSize, math.MaxInt32)
	}
	return nil
}

// SetSegmentBytes changes the size past which the active segment is
// rolled; it applies from the next Append. Only the appender calls it.
func (l *Log) SetSegmentBytes(n int64) error {
	if err := checkSegmentBytes(n); err != nil {
		return fmt.Errorf("partition log %s: %w", l.opts.Dir, err)
	}
	l.opts.SegmentBytes = n
	return nil
}

// Log is one partition's Kafka log: record batches in segment files, in
// Kafka's layout, each with the Raft index and term of the entry that
// carried it. The segments are the partition's Raft log: a batch is written
// when its entry is persisted and becomes visible when it is committed.
//
// So a Log has two ends. The written end (WrittenEnd) is where the next
// Append goes. The high watermark (LogEnd) is the end readers see: the
// batches below it are committed and never change; the ones between it and
// the written end are the uncommitted tail, which Commit makes visible one
// batch at a time, in order, and which TruncateRaft may cut when Raft
// overwrites a conflicting suffix.
//
// # Concurrency
//
// A Log has one owner goroutine, the appender (the partition's actor). Only
// it calls Append, AppendVerified, Commit, SetHighWatermark, TruncateRaft,
// TruncateTo, AdvanceLogStart, ReleaseSegments, Reset, SetSegmentBytes and
// Close.
//
// Every other method may be called from any goroutine, concurrently with
// the appender and with each other: Read, BatchAt, EntryByRaftIndex,
// OffsetForTimestamp, MaxTimestamp, LogStart, LogEnd, WrittenEnd,
// FirstRaftIndex, LastRaftIndex, Size, RetentionPoint, Sync and Flush. None
// of them takes a lock except Sync and Flush, and none blocks the appender,
// except that Sync and Flush exclude a segment roll and the rare operations
// that delete or truncate files for as long as their fsyncs take. Bytes
// they return are freshly allocated and the caller's. Sync and Flush may
// run concurrently with each other; each excludes the other.
//
// Each change the appender makes is published as an immutable view: the
// segment list, the log start, the high watermark and the written end, and
// each segment's size. A reader loads the current view once and reads only
// below that view's high watermark (EntryByRaftIndex: its written end), so
// it sees whole batches and never a batch that is half written or not yet
// committed. Bytes below a view's written end never change while the files
// exist, except by TruncateRaft, TruncateTo and Reset; those, and the
// deletion of segments, first bump a generation counter, and a reader that
// finds the generation changed after reading discards what it read and
// starts over on the new view. So a read returns exactly what the log held
// at one moment between its call and its return; TruncateRaft never cuts
// below the high watermark, so what a reader saw committed stays.
//
// Segments wholly below the log start are retired: AdvanceLogStart takes
// them out of the view at once, but their files stay, because the batches
// in them are the partition's Raft log and the WAL may still refer to them
// until a checkpoint above them is durable. ReleaseSegments deletes them
// then. No view, Size or RetentionPoint sees a retired segment; log.state
// records a log start at or below the first segment still on disk.
type Log struct {
	opts Options
	log  zerolog.Logger

	view atomic.Pointer[view] // what readers see
	gen  atomic.Uint64        // bumped before any file is truncated or deleted

	// Owned by the appender.
	sealed      []segView // every segment of the view but the active one, oldest first
	sealedBytes int64     // their total size
	// retired are the segments wholly below the log start whose files
	// ReleaseSegments has not yet deleted, oldest first; all of them lie
	// below sealed[0].
	retired  []segView
	act      *activeSegment
	start    int64  // log start offset
	lastRaft uint64 // highest Raft index in the segments, even below the start
	closed   bool

	// hw is the high watermark; tail holds the batches from it to the
	// written end, in order, for the one thing Commit needs and cannot get
	// without reading the file: each batch's maxTimestamp. hwMaxTs and
	// hwMaxTsRel are the segView maxTs and maxTsRel of the committed
	// batches of the segment that holds hw (the last segment whose base is
	// at or below it), which readers see as the last segment.
	hw         int64
	tail       tailQueue
	hwMaxTs    int64
	hwMaxTsRel uint32

	// fsync syncs a file or directory: (*os.File).Sync, observed by tests
	// that simulate losing what was not synced.
	fsync func(*os.File) error

	// flushMu serialises Sync and Flush with each other and with the
	// appender's roll, Close and the operations that truncate or delete
	// files, so that they never sync a file that is being closed and a roll
	// is never half seen. Everything that changes unsynced holds it.
	flushMu sync.Mutex
	// syncMu guards unsynced and dirDirty, which the appender adds to and
	// Sync and Flush take.
	syncMu   sync.Mutex
	unsynced []pendingSync // sealed segments whose index files are not yet synced
	dirDirty bool          // files were created or removed since the last directory sync

	failure atomic.Pointer[error] // set once, by the first failed write or sync
}

// pendingSync is a sealed segment that the next Flush must sync.
type pendingSync struct {
	seg   *segment
	files indexFiles // closed by the Flush that syncs them
	// logSynced: a Sync made its .log and .raft files durable since it
	// was sealed.
	logSynced bool
}

// tailBatch is a batch above the high watermark.
type tailBatch struct {
	base  int64
	maxTs int64
}

// tailQueue holds the batches above the high watermark, in order. Its array
// is reused once it drains, so that appending and committing allocate
// nothing in the steady state.
type tailQueue struct {
	b    []tailBatch
	head int
}

func (q *tailQueue) batches() []tailBatch { return q.b[q.head:] }

func (q *tailQueue) push(t tailBatch) { q.b = append(q.b, t) }

// pop drops the first batch.
func (q *tailQueue) pop() {
	q.head++
	switch {
	case q.head == len(q.b):
		q.b, q.head = q.b[:0], 0
	case q.head >= 1024 && 2*q.head >= len(q.b):
		n := copy(q.b, q.b[q.head:])
		q.b, q.head = q.b[:n], 0
	}
}

// cut drops the batches at or above offset.
func (q *tailQueue) cut(offset int64) {
	t := q.batches()
	q.b = q.b[:q.head+sort.Search(len(t), func(j int) bool { return t[j].base >= offset })]
}

// reset replaces the batches.
func (q *tailQueue) reset(b []tailBatch) { q.b, q.head = b, 0 }

// activeSegment is the appender's state of the segment being written.
type activeSegment struct {
	seg   *segment
	files indexFiles
	// Bytes written to each index file.
	offsetBytes, timeBytes, raftBytes int64
	ix                                indexer

	size  int64
	end   int64
	dense []raftEntry
	times []timeEntry

	scratch [raftEntrySize]byte
}

// segView returns what the active segment holds now.
func (a *activeSegment) segView() segView {
	return segView{
		seg: a.seg, size: a.size, end: a.end, dense: a.dense, times: a.times,
		maxTs: a.ix.maxTs, maxTsRel: a.ix.maxTsRel,
	}
}

// view is an immutable snapshot of the log for readers.
type view struct {
	gen        uint64
	closed     bool
	start, end int64 // end is the high watermark
	written    int64 // the written end
	size       int64 // bytes of all segments of the view (none retired)
	// stateStart is the log start that Flush records in log.state: never
	// above the first segment on disk, retired ones included, so that
	// after a crash the log still reaches every batch the WAL may name.
	stateStart int64
	// The embedded list is what readers see: the segments up to the one
	// that holds the high watermark, that one cut at it (see committed).
	segList
	whole segList     // every segment, the uncommitted tail included
	files *indexFiles // the active segment's index files, for Sync and Flush
}

// segList is a list of segments in order: the sealed ones, then the last.
type segList struct {
	sealed []segView // shared between views; never modified below its length
	active segView
}

func (s *segList) numSegments() int { return len(s.sealed) + 1 }

func (s *segList) segment(i int) *segView {
	if i < len(s.sealed) {
		return &s.sealed[i]
	}
	return &s.active
}

// segmentIndex returns the index of the segment that holds offset: the
// last one whose base offset is not above it.
func (s *segList) segmentIndex(offset int64) int {
	return sort.Search(s.numSegments(), func(i int) bool { return s.segment(i).seg.base > offset }) - 1
}

// locate returns the segment and batch that contain offset, which must be
// in [start, end) of the list.
func (s *segList) locate(offset int64) (*segView, int) {
	sv := s.segment(s.segmentIndex(offset))
	return sv, sv.find(offset)
}

// readView runs f on the current view until no file was truncated or
// deleted while it ran (see the Log's concurrency contract).
func readView[T any](l *Log, f func(*view) (T, error)) (T, error) {
	for {
		v := l.view.Load()
		r, err := f(v)
		if l.gen.Load() == v.gen {
			return r, err
		}
		runtime.Gosched()
	}
}

// publish makes the appender's current state visible to readers.
func (l *Log) publish() {
	v := &view{
		gen:     l.gen.Load(),
		start:   l.start,
		end:     l.hw,
		written: l.act.end,
		whole:   l.segments(),
		files:   &l.act.files,
	}
	v.size = l.sealedBytes + v.whole.active.size
	v.stateStart = min(l.start, l.firstBase())
	v.segList = l.committed(v.whole)
	l.view.Store(v)
}

// segments returns the appender's segments, the active one as it is now.
func (l *Log) segments() segList {
	return segList{sealed: l.sealed, active: l.act.segView()}
}

// committed returns what readers see of all: the segments up to the one
// that holds the high watermark, which is cut at it and is the list's last.
// A segment that holds only uncommitted batches is left out, and a sealed
// segment that the high watermark cuts is the last one, so that nothing
// above the mark can be reached and nothing retention deletes is above it.
func (l *Log) committed(all segList) segList {
	if l.hw == all.active.end {
		return all
	}
	j := all.segmentIndex(l.hw)
	sv := all.segment(j)
	rel := uint32(l.hw - sv.seg.base)
	k := sort.Search(len(sv.dense), func(k int) bool { return sv.dense[k].rel >= rel })
	n := sort.Search(len(sv.times), func(i int) bool { return sv.times[i].rel >= rel })
	size := sv.size
	if k < len(sv.dense) {
		size = int64(sv.dense[k].pos)
	}
	return segList{sealed: all.sealed[:j:j], active: segView{
		seg: sv.seg, size: size, end: l.hw, dense: sv.dense[:k:k], times: sv.times[:n:n],
		maxTs: l.hwMaxTs, maxTsRel: l.hwMaxTsRel,
	}}
}

// setSealed replaces the list of sealed segments.
func (l *Log) setSealed(sealed []segView) {
	l.sealed, l.sealedBytes = sealed, 0
	for i := range sealed {
		l.sealedBytes += sealed[i].size
	}
}

// fail records the first failure that leaves the files in an unknown state,
// and shows readers a view of the current generation that they cannot read
// (ErrClosed): a truncation or deletion that failed half way has moved the
// generation on, and a reader waits in readView for a view of it. The
// group halts; its data is not served again until the broker restarts and
// Open has recovered the files.
func (l *Log) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrLogFailed, err)
	if l.failure.CompareAndSwap(nil, &err) && l.opts.writeErrors != nil {
		l.opts.writeErrors.Inc()
	}
	v := l.view.Load()
	l.view.Store(&view{gen: l.gen.Load(), closed: true, start: v.start, end: v.end, written: v.written})
	return *l.failure.Load()
}

// usable returns why the Log cannot be changed, if it cannot.
func (l *Log) usable() error {
	if l.closed {
		return ErrClosed
	}
	if p := l.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// LogStart is the first offset of the log: Kafka's log start offset.
func (l *Log) LogStart() int64 { return l.view.Load().start }

// LogEnd is the high watermark: the end of the committed batches, the
// end readers see (Kafka's high watermark, which a Fetch reads up to and
// ListOffsets answers for "latest").
func (l *Log) LogEnd() int64 { return l.view.Load().end }

// WrittenEnd is the offset the next Append must carry: the end of every
// batch written, the uncommitted tail included.
func (l *Log) WrittenEnd() int64 { return l.view.Load().written }

// Size is the number of bytes of the log's segment files, including any
// part of the first segment below the log start and the uncommitted tail,
// but not the retired segments wholly below the start.
func (l *Log) Size() int64 { return l.view.Load().size }

// Append writes a batch at the written end of the log, above the high
// watermark: readers do not see it until Commit. The batch must be stamped
// (SetBaseOffset, SetPartitionLeaderEpoch) with base offset WrittenEnd()
// and leader epoch raftTerm, the term of the Raft entry that carried it,
// and raftIndex must be above the Raft index of every batch in the
// segments. Otherwise Append changes nothing and returns an error:
// ErrAppendOrder for the offset or index, an error wrapping
// ErrCorruptBatch or ErrUnsupportedMagic for a batch that fails ParseBatch.
// Any of them means the partition's state machine diverged from its log
// and must halt.
//
// The active segment is rolled first when the batch would take it past
// SegmentBytes. Append does not sync: see Sync and Flush. After a failed
// write the Log refuses every change (ErrLogFailed).
func (l *Log) Append(batch []byte, raftIndex, raftTerm uint64) error {
	if err := l.usable(); err != nil {
		return err
	}
	h, err := ParseBatch(batch)
	if err != nil {
		return fmt.Errorf("append to %s: %w", l.opts.Dir, err)
	}
	return l.appendParsed(batch, h, raftIndex, raftTerm)
}

// AppendVerified is Append for a batch the caller has already verified
// with ParseBatch (h is its header): the leader appending a batch it
// checked, CRC included, when it was produced. A CRC pass over every batch
// costs a tenth of a broker's CPU.
func (l *Log) AppendVerified(batch []byte, h BatchHeader, raftIndex, raftTerm uint64) error {
	if err := l.usable(); err != nil {
		return err
	}
	return l.appendParsed(batch, h, raftIndex, raftTerm)
}

func (l *Log) appendParsed(batch []byte, h BatchHeader, raftIndex, raftTerm uint64) error {
	a := l.act
	switch {
	case h.BaseOffset != a.end:
		return fmt.Errorf("%w: batch base offset %d, written end %d", ErrAppendOrder, h.BaseOffset, a.end)
	case raftIndex <= l.lastRaft:
		return fmt.Errorf("%w: raft index %d, last %d", ErrAppendOrder, raftIndex, l.lastRaft)
	case raftTerm > math.MaxInt32 || h.PartitionLeaderEpoch != int32(raftTerm):
		return fmt.Errorf("append to %s: batch leader epoch %d is not the raft term %d", l.opts.Dir,
			h.PartitionLeaderEpoch, raftTerm)
	}
	if a.size > 0 && (a.size+int64(len(batch)) > l.opts.SegmentBytes || h.LastOffset()-a.seg.base > math.MaxUint32) {
		if err := l.roll(); err != nil {
			return err
		}
		a = l.act
	}
	if err := a.append(batch, h, raftIndex, uint32(raftTerm)); err != nil {
		return l.fail(err)
	}
	l.lastRaft = raftIndex
	l.tail.push(tailBatch{base: h.BaseOffset, maxTs: h.MaxTimestamp})
	l.publish()
	return nil
}

// Commit makes the batch at the high watermark visible: it must be the one
// that the Raft entry raftIndex carried. The high watermark moves to the
// batch's end, which Commit returns. Otherwise it returns an error wrapping
// ErrAppendOrder and changes nothing: the partition's state machine
// diverged from its log. The appender calls it as it applies each batch,
// in order; it does no I/O.
func (l *Log) Commit(raftIndex uint64) (int64, error) {
	if err := l.usable(); err != nil {
		return 0, err
	}
	all := l.segments()
	sv := all.segment(all.segmentIndex(l.hw))
	if l.hw == sv.end {
		return 0, fmt.Errorf("%w: commit raft index %d: nothing written above the high watermark %d",
			ErrAppendOrder, raftIndex, l.hw)
	}
	k := sv.find(l.hw)
	if got := sv.dense[k].index; got != raftIndex {
		return 0, fmt.Errorf("%w: commit raft index %d: the batch at the high watermark %d came from raft index %d",
			ErrAppendOrder, raftIndex, l.hw, got)
	}
	l.advance(sv, k)
	l.publish()
	return l.hw, nil
}

// advance moves the high watermark past the batch k of sv, which starts at
// it.
func (l *Log) advance(sv *segView, k int) {
	t := l.tail.batches()
	if len(t) == 0 || t[0].base != l.hw {
		panic(fmt.Sprintf("partition log %s: uncommitted batches out of step at the high watermark %d", l.opts.Dir, l.hw))
	}
	if ts := t[0].maxTs; ts > l.hwMaxTs {
		l.hwMaxTs, l.hwMaxTsRel = ts, lastRelOf(sv.dense, k, sv.endRel())
	}
	l.tail.pop()
	l.hw = sv.lastOffset(k) + 1
	if l.hw == sv.end && sv.seg != l.act.seg {
		// The mark is now the next segment's base: none of it is committed.
		l.hwMaxTs, l.hwMaxTsRel = noTimestamp, 0
	}
}

// append writes the batch and its index entries to the active segment.
func (a *activeSegment) append(batch []byte, h BatchHeader, raftIndex uint64, term uint32) error {
	pos := a.size
	if _, err := a.seg.log.WriteAt(batch, pos); err != nil {
		return fmt.Errorf("write %s: %w", a.seg.name(), err)
	}
	if err := startWriteback(a.seg.log, pos, int64(len(batch))); err != nil {
		return fmt.Errorf("start writeback of %s: %w", a.seg.name(), err)
	}
	rel := uint32(h.BaseOffset - a.seg.base)
	e := raftEntry{index: raftIndex, rel: rel, pos: uint32(pos), size: uint32(len(batch)), term: term}
	if err := a.writeRaftEntry(e); err != nil {
		return err
	}
	off, hasOff, t, hasTime := a.ix.add(pos, int64(len(batch)), rel+uint32(h.LastOffsetDelta), h.MaxTimestamp)
	if hasOff {
		if err := a.writeOffsetEntry(off); err != nil {
			return err
		}
	}
	if hasTime {
		if err := a.writeTimeEntry(t); err != nil {
			return err
		}
	}
	a.dense = append(a.dense, e)
	a.size += int64(len(batch))
	a.end = h.NextOffset()
	return nil
}

func (a *activeSegment) writeRaftEntry(e raftEntry) error {
	e.put(a.scratch[:])
	if _, err := a.files.raft.WriteAt(a.scratch[:raftEntrySize], a.raftBytes); err != nil {
		return fmt.Errorf("write %s: %w", segmentFileName(a.seg.base, raftIndexSuffix), err)
	}
	a.raftBytes += raftEntrySize
	return nil
}

func (a *activeSegment) writeOffsetEntry(e offsetEntry) error {
	e.put(a.scratch[:])
	if _, err := a.files.offset.WriteAt(a.scratch[:offsetEntrySize], a.offsetBytes); err != nil {
		return fmt.Errorf("write %s: %w", segmentFileName(a.seg.base, offsetIndexSuffix), err)
	}
	a.offsetBytes += offsetEntrySize
	return nil
}

func (a *activeSegment) writeTimeEntry(e timeEntry) error {
	e.put(a.scratch[:])
	if _, err := a.files.time.WriteAt(a.scratch[:timeEntrySize], a.timeBytes); err != nil {
		return fmt.Errorf("write %s: %w", segmentFileName(a.seg.base, timeIndexSuffix), err)
	}
	a.timeBytes += timeEntrySize
	a.times = append(a.times, e)
	return nil
}

// seal ends the time index with the segment's largest timestamp, so that a
// sealed segment's maximum is its time index's last entry.
func (a *activeSegment) seal() error {
	if t, ok := a.ix.seal(); ok {
		return a.writeTimeEntry(t)
	}
	return nil
}

// roll seals the active segment and starts a new one at the written end.
// The sealed segment is synced by the next Sync or Flush.
func (l *Log) roll() error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	old := l.act
	if err := old.seal(); err != nil {
		return l.fail(err)
	}
	next, err := createSegment(l.opts.Dir, old.end, int64(l.opts.IndexIntervalBytes))
	if err != nil {
		return l.fail(err)
	}
	sv := old.segView()
	// Drop the slices' spare capacity: nothing appends to them any more.
	sv.dense, sv.times = slices.Clip(slices.Clone(sv.dense)), slices.Clip(slices.Clone(sv.times))
	l.sealed = append(l.sealed, sv)
	l.sealedBytes += sv.size
	l.act = next
	if l.hw == next.seg.base {
		l.hwMaxTs, l.hwMaxTsRel = noTimestamp, 0
	}
	l.syncMu.Lock()
	l.unsynced = append(l.unsynced, pendingSync{seg: old.seg, files: old.files})
	l.dirDirty = true
	l.syncMu.Unlock()
	// Publish before a Flush can run: it must not see the old segment both
	// as pending and as the active one.
	l.publish()
	l.log.Info().Str("dir", l.opts.Dir).Str("segment", next.seg.name()).Int64("sealed_bytes", old.size).
		Msg("rolled segment")
	return nil
}

// createSegment creates the empty files of a new segment with base offset
// base, replacing any leftovers.
func createSegment(dir string, base, interval int64) (*activeSegment, error) {
	seg := &segment{base: base, dir: dir}
	f, err := osCreate(seg.path(logSuffix))
	if err != nil {
		return nil, err
	}
	seg.log = f
	files, err := openIndexFiles(seg)
	if err == nil {
		err = files.each(func(f *os.File) error { return f.Truncate(0) })
	}
	if err != nil {
		f.Close()
		files.close()
		return nil, fmt.Errorf("create segment %s: %w", seg.name(), err)
	}
	return &activeSegment{seg: seg, files: files, ix: newIndexer(interval), end: base}, nil
}

// Read returns whole batches starting with the one that contains offset, in
// order, as stored. It adds batches while the total stays within maxBytes,
// but always returns the first one whatever its size (KIP-74), so a
// consumer can always make progress. It reads from one segment only, so it
// may return less than maxBytes before the high watermark, and never
// returns a batch at or above it.
//
// offset == LogEnd() returns no bytes and no error; an offset outside
// [LogStart(), LogEnd()] returns ErrOffsetOutOfRange. The first batch may
// start before offset (and before the log start); Kafka clients skip the
// records before the offset they asked for. Safe for concurrent use.
func (l *Log) Read(offset int64, maxBytes int) ([]byte, error) {
	return l.ReadInto(offset, maxBytes, nil)
}

// ReadInto is Read with the batches read into a buffer of n bytes from
// alloc, whose content it overwrites, rather than a new one: a reader that
// serves many reads can reuse its buffers. A nil alloc allocates. alloc may
// be called more than once for one read (a read that raced with a segment
// change starts over); only the last buffer is returned, and only when the
// read succeeds.
func (l *Log) ReadInto(offset int64, maxBytes int, alloc func(n int) []byte) ([]byte, error) {
	return readView(l, func(v *view) ([]byte, error) { return v.read(offset, maxBytes, alloc) })
}

func (v *view) read(offset int64, maxBytes int, alloc func(n int) []byte) ([]byte, error) {
	if v.closed {
		return nil, ErrClosed
	}
	if offset < v.start || offset > v.end {
		return nil, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, offset, v.start, v.end)
	}
	if offset == v.end {
		return nil, nil
	}
	sv, k := v.locate(offset)
	total := int64(sv.dense[k].size)
	j := k + 1
	for j < len(sv.dense) && total+int64(sv.dense[j].size) <= int64(maxBytes) {
		total += int64(sv.dense[j].size)
		j++
	}
	return sv.readBatches(k, j, alloc)
}

// EntryByRaftIndex returns the batch that the Raft entry with index i
// carried, as stored (stamped), and that entry's term, so that the
// partition's raft.Storage can serve entries from the segments. Unlike the
// other reads it goes up to the written end: the partition gets back the
// bodies of persisted but uncommitted entries with it after a restart. It
// returns ErrRaftIndexNotInLog when no batch of the log came from that
// entry (see the error). Safe for concurrent use.
func (l *Log) EntryByRaftIndex(i uint64) (batch []byte, term uint64, err error) {
	type result struct {
		batch []byte
		term  uint64
	}
	r, err := readView(l, func(v *view) (result, error) {
		sv, k, err := v.findRaftIndex(i)
		if err != nil {
			return result{}, err
		}
		b, err := sv.readBatches(k, k+1, nil)
		return result{b, uint64(sv.dense[k].term)}, err
	})
	return r.batch, r.term, err
}

func (v *view) findRaftIndex(i uint64) (*segView, int, error) {
	if v.closed {
		return nil, 0, ErrClosed
	}
	all := &v.whole
	// An empty segment (only ever the last) sorts as if its entries were
	// above every index.
	n := sort.Search(all.numSegments(), func(j int) bool {
		d := all.segment(j).dense
		return len(d) == 0 || d[0].index > i
	}) - 1
	if n >= 0 {
		sv := all.segment(n)
		k := sort.Search(len(sv.dense), func(k int) bool { return sv.dense[k].index >= i })
		if k < len(sv.dense) && sv.dense[k].index == i && sv.lastOffset(k) >= v.start {
			return sv, k, nil
		}
	}
	return nil, 0, fmt.Errorf("%w: %d", ErrRaftIndexNotInLog, i)
}

// FirstRaftIndex is the Raft index of the first batch of the log (the one
// that contains the log start), or 0 if no batch is committed there.
func (l *Log) FirstRaftIndex() uint64 {
	v := l.view.Load()
	_, i, _ := v.batchAt(v.start)
	return i
}

// BatchAt returns the base offset and Raft index of the batch that contains
// offset; ok is false when no committed batch of the log does (offset
// outside [LogStart(), LogEnd())).
func (l *Log) BatchAt(offset int64) (base int64, raftIndex uint64, ok bool) {
	return l.view.Load().batchAt(offset)
}

func (v *view) batchAt(offset int64) (base int64, raftIndex uint64, ok bool) {
	if v.closed || offset < v.start || offset >= v.end {
		return 0, 0, false
	}
	sv, k := v.locate(offset)
	return sv.seg.base + int64(sv.dense[k].rel), sv.dense[k].index, true
}

// LastRaftIndex is the Raft index of the last batch below the high
// watermark, or 0 if there is none above the log start.
func (l *Log) LastRaftIndex() uint64 {
	v := l.view.Load()
	if v.closed || v.start == v.end {
		return 0
	}
	for i := v.numSegments() - 1; ; i-- {
		if d := v.segment(i).dense; len(d) > 0 {
			return d[len(d)-1].index
		}
	}
}
