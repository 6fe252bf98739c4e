package storage

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Defaults for the zero values of Options.
const (
	DefaultSegmentBytes int64 = 64 << 20
	DefaultBudgetBytes  int64 = 1 << 30
)

// DirName is the name of the WAL directory inside a broker's data directory.
const DirName = "wal"

// segmentSuffix ends every WAL file name; the name before it is the file's
// sequence number, zero-padded to 20 digits so that names sort like numbers.
const segmentSuffix = ".wal"

// writeBufferBytes is the size of the buffered writer in front of the current
// file: large enough that a typical group commit reaches the OS in a few
// write calls.
const writeBufferBytes = 1 << 20

// directWriteBytes is the size from which an entry's data goes to the file
// without a copy into the encoding buffer and the buffered writer (see
// encodeRecord): one more write call is cheaper than copying it twice.
const directWriteBytes = 64 << 10

// Options configure a WAL.
type Options struct {
	// SegmentBytes is the size past which the WAL starts a new file.
	// Zero means DefaultSegmentBytes.
	SegmentBytes int64
	// BudgetBytes is the total size past which the groups holding back the
	// oldest file are asked to checkpoint. Zero means DefaultBudgetBytes.
	BudgetBytes int64
	// Fsync makes the WAL fsync files and the directory. Without it the WAL
	// only hands writes to the OS: a process crash loses nothing, a machine
	// crash may lose anything. Only tests and throwaway brokers turn it off.
	Fsync bool
	// Log receives the WAL's events: files rolled, deleted and repaired.
	Log zerolog.Logger
	// Metrics, when not nil, receives the WAL's metrics.
	Metrics *Metrics

	// now is the clock the stuck-group report measures with (nil:
	// time.Now); tests set it.
	now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.BudgetBytes <= 0 {
		o.BudgetBytes = DefaultBudgetBytes
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o
}

// Dir returns the WAL directory inside the data directory dataDir.
func Dir(dataDir string) string {
	return filepath.Join(dataDir, DirName)
}

// errClosed is the sticky error of a closed WAL.
var errClosed = errors.New("WAL closed")

// WAL is the node's write-ahead log: one sequence of files shared by every
// Raft group. Records are appended to a buffered writer and made durable by
// Commit, so many appends share one write and one fsync; the storage actor
// pipelines its fsyncs instead (sync.go).
//
// A WAL is owned by one goroutine (the storage actor); only Fsyncs may be
// called from others. The one fsync in flight runs on a goroutine of its own
// and touches nothing of the WAL but the file it syncs.
type WAL struct {
	dir     string
	opts    Options
	log     zerolog.Logger
	metrics *Metrics

	segs  []*segment // oldest first; the last one is being written
	f     *os.File   // the last segment
	bw    *bufio.Writer
	total int64 // bytes in all segments, buffered ones included
	kept  int64 // bytes the segments' groups kept elsewhere (countKept)

	scratch []byte   // encoding buffer, reused between records
	splices []splice // the large entries of the record in scratch

	// synced is the position up to which every byte is fsynced (with
	// Options.Fsync on). appended counts the records appended and
	// syncedRecords how many of them an fsync has covered.
	synced        position
	appended      uint64
	syncedRecords uint64
	// syncing is the fsync in flight, nil when none; jobs numbers them.
	syncing *syncJob
	jobs    uint64
	notify  func(id uint64)
	reaped  []*syncJob // jobs with Syncs of also, reaped and not yet taken (takeReaped)
	// settled are the checkpoints that became durable and were not yet
	// taken (takeSettled).
	settled []pendingCheckpoint
	// syncFile fsyncs a WAL file: (*os.File).Sync, which tests wrap to
	// hold an fsync back or fail it.
	syncFile func(*os.File) error
	// remover removes the files retention released (retention.go),
	// started with the first; removeFile is os.Remove, which tests wrap.
	remover    *remover
	removeFile func(path string) error

	// hardStates is the latest hard state appended for each group; a
	// checkpoint repeats it so that older files can go.
	hardStates map[uint64]*pb.HardState
	// closeErr is the outcome of Close, once it ran.
	closeErr error
	// snapIndexes is, per group, the index of the latest snapshot appended
	// (a leader's or a checkpoint's): replay's GroupState.Snapshot. A
	// leader's snapshot above it replaces the group's whole log.
	snapIndexes map[uint64]uint64
	// rewrites is, per group, its last rewrite not yet followed by a
	// checkpoint (AppendRewrite): its file and the index below its first
	// entry.
	rewrites map[uint64]checkpointMark
	// checkpoints is the durable checkpoint with the highest index per
	// group, and pending the checkpoints and tombstones appended but not
	// yet durable, in order: a file may be deleted only for a checkpoint
	// that is on disk.
	checkpoints map[uint64]checkpointMark
	pending     []pendingCheckpoint
	// forgotten maps each group with a durable tombstone to the file the
	// tombstone is in: no file before that one is held back by the group,
	// and that one only by the records after the tombstone. A tombstone in
	// the oldest file has nothing left to release and goes
	// (dropForgotten).
	forgotten map[uint64]uint64

	// err is sticky: after a failed write or fsync the state of the file is
	// unknown (a failed fsync may have dropped dirty pages), so the WAL
	// refuses everything rather than acknowledge writes it cannot vouch for.
	err error

	fsyncs atomic.Uint64
}

// checkpointMark locates a checkpoint: the file it is in and its snapshot
// index.
type checkpointMark struct {
	seq, index uint64
}

type pendingCheckpoint struct {
	group  uint64
	mark   checkpointMark
	at     position // the end of its record
	forget bool     // a tombstone rather than a checkpoint
	// rewrite is the group's rewrite (AppendRewrite) appended before the
	// checkpoint and after the one before, if any: its file and the index
	// below its first entry. It counts once the checkpoint is durable.
	rewrite *checkpointMark
}

// segment is the bookkeeping of one WAL file.
type segment struct {
	seq  uint64
	size int64 // bytes in the file, buffered ones included
	kept int64 // bytes its records' groups kept elsewhere (Persist.KeptBytes)
	// groups holds, for every group with a record in the file, the highest
	// raft index those records mention (entries, snapshots, checkpoints).
	// A group that only wrote hard states is present with index 0.
	groups map[uint64]uint64
}

func newSegment(seq uint64) *segment {
	return &segment{seq: seq, groups: make(map[uint64]uint64)}
}

func (s *segment) note(group, index uint64) {
	s.groups[group] = max(s.groups[group], index)
}

// lower records that the group's records in the file matter only below
// first: the group's entries from first on are replaced.
func (s *segment) lower(group, first uint64) {
	if hi, ok := s.groups[group]; ok && hi >= first {
		s.groups[group] = first - 1
	}
}

func segmentName(seq uint64) string {
	return fmt.Sprintf("%020d%s", seq, segmentSuffix)
}

// parseSegmentName returns the sequence number of a WAL file name, and false
// for names that are not WAL files.
func parseSegmentName(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(base) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(base, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}

func (w *WAL) path(seq uint64) string {
	return filepath.Join(w.dir, segmentName(seq))
}

func (w *WAL) current() *segment {
	return w.segs[len(w.segs)-1]
}

// AppendUpdate appends one group update: entries, then the hard state, then
// the snapshot, each optional, as a single record, so that recovery sees all
// of it or none of it. The record is durable only after Commit. An error
// that leaves the WAL intact (a record too large, entries out of order) is
// returned without failing the WAL.
func (w *WAL) AppendUpdate(group uint64, entries []*pb.Entry, hs *pb.HardState, snap *pb.Snapshot) error {
	return w.appendUpdate(group, entries, hs, snap, false)
}

// AppendRewrite appends entries the group persisted before, as they were
// persisted, in an update record of their own: a rewrite (raft-engine's
// name) of a group that cannot checkpoint past them, so that the older
// files holding them need only a checkpoint below them. The entries must be
// the group's whole log from their first index on, which replay then
// replaces with itself.
//
// Those files' hold on the group is lowered only once the group's next
// checkpoint, appended after the rewrite, is durable (settle), and with it
// the rewrite: a LogKeeper's references stand for bodies in its own files
// that only the flush before a checkpoint is sure to have made durable (a
// follower's entries that came behind a leader's snapshot reached the WAL
// whole and were never synced there). Until then the older files are what
// recovery has.
func (w *WAL) AppendRewrite(group uint64, entries []*pb.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := w.appendUpdate(group, entries, nil, nil, true); err != nil {
		return err
	}
	w.rewrites[group] = checkpointMark{seq: w.current().seq, index: entries[0].GetIndex() - 1}
	return nil
}

func (w *WAL) appendUpdate(group uint64, entries []*pb.Entry, hs *pb.HardState, snap *pb.Snapshot, rewrite bool) error {
	if w.err != nil {
		return w.err
	}
	if len(entries) == 0 && hs == nil && snap == nil {
		return nil
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].GetIndex() != entries[i-1].GetIndex()+1 {
			return fmt.Errorf("group %d: entry index %d does not follow %d",
				group, entries[i].GetIndex(), entries[i-1].GetIndex())
		}
	}
	rec, splices, err := encodeRecord(w.scratch[:0], w.splices[:0], directWriteBytes, recordUpdate, group, entries, hs, snap)
	if err != nil {
		return fmt.Errorf("group %d: %w", group, err)
	}
	var hi uint64
	snapIndex := snap.GetMetadata().GetIndex()
	if snap != nil && snapIndex > w.snapIndexes[group] {
		// Raft restored the leader's snapshot, which replaces its whole
		// log, and so does replay: what the older files hold of the group
		// above the snapshot is dropped, as if overwritten. They still go
		// only with a durable checkpoint at or above the snapshot, which
		// ends GroupState.Replaced too: until then recovery takes the
		// references the snapshot replaced from them.
		w.snapIndexes[group] = snapIndex
		w.overwrite(group, snapIndex+1, nil)
	}
	if n := len(entries); n > 0 {
		hi = entries[n-1].GetIndex()
		if !rewrite {
			w.overwrite(group, entries[0].GetIndex(), nil)
		}
	}
	err = w.write(rec, splices, group, max(hi, snapIndex))
	clear(splices) // the entries' data is raft's, not the WAL's to keep
	w.splices = splices[:0]
	if err != nil {
		return err
	}
	if hs != nil {
		w.hardStates[group] = hs
	}
	return nil
}

// overwrite records that the group's entries from index first on are
// replaced (raft's overwrite rule): in the files already written (and in
// cur, during replay), the group's records now only matter up to first-1,
// so a checkpoint there is enough to let them go. Without this, entries a
// new leader overwrote would hold their file back forever.
func (w *WAL) overwrite(group, first uint64, cur *segment) {
	for _, seg := range w.segs {
		seg.lower(group, first)
	}
	if cur != nil {
		cur.lower(group, first)
	}
}

// rewritten lowers, in the files before the one with sequence number seq,
// the group's records to first-1: a durable rewrite in that file holds the
// group's entries from first on.
func (w *WAL) rewritten(group, first, seq uint64) {
	for _, seg := range w.segs {
		if seg.seq >= seq {
			return
		}
		seg.lower(group, first)
	}
}

// AppendCheckpoint appends a checkpoint for group: snap, with the latest hard
// state appended for the group. Once Commit has made it durable, files whose
// records of the group are all at or below snap's index no longer hold the
// group back.
func (w *WAL) AppendCheckpoint(group uint64, snap *pb.Snapshot) error {
	if w.err != nil {
		return w.err
	}
	if snap == nil {
		return fmt.Errorf("group %d: checkpoint without a snapshot", group)
	}
	rec, err := appendRecord(w.scratch[:0], recordCheckpoint, group, nil, w.hardStates[group], snap)
	if err != nil {
		return fmt.Errorf("group %d: %w", group, err)
	}
	index := snap.GetMetadata().GetIndex()
	if err := w.write(rec, nil, group, index); err != nil {
		return err
	}
	w.snapIndexes[group] = max(w.snapIndexes[group], index)
	p := pendingCheckpoint{group: group, mark: checkpointMark{seq: w.current().seq, index: index}, at: w.end()}
	if r, ok := w.rewrites[group]; ok {
		p.rewrite = &r
		delete(w.rewrites, group)
	}
	w.pending = append(w.pending, p)
	return nil
}

// AppendForget appends a tombstone for group. Once Commit has made it
// durable, recovery no longer returns the group and none of its records
// hold back the deletion of a file.
func (w *WAL) AppendForget(group uint64) error {
	if w.err != nil {
		return w.err
	}
	rec, err := appendRecord(w.scratch[:0], recordForget, group, nil, nil, nil)
	if err != nil {
		return fmt.Errorf("group %d: %w", group, err)
	}
	if err := w.write(rec, nil, group, 0); err != nil {
		return err
	}
	w.forgetWritten(group, w.current())
	w.pending = append(w.pending, pendingCheckpoint{group: group, mark: checkpointMark{seq: w.current().seq}, at: w.end(), forget: true})
	return nil
}

// forgetWritten starts tracking group afresh after its tombstone in seg:
// the records after it are a new replica's (moved back to this node). The
// file's bookkeeping keeps only those, since the tombstone ends the old
// ones; and a checkpoint after it repeats only the new replica's hard
// state. The old checkpoint marks go only once the tombstone is durable
// (settle): until then the old records still count.
func (w *WAL) forgetWritten(group uint64, seg *segment) {
	delete(seg.groups, group)
	delete(w.hardStates, group)
	delete(w.snapIndexes, group)
	delete(w.rewrites, group)
}

// write appends one framed record for group, whose highest index is index,
// rolling to a new file first if the current one is full. The record is rec
// with the splices' data inserted (encodeRecord): that data goes to the OS
// now, after what is buffered, and the rest is buffered.
func (w *WAL) write(rec []byte, splices []splice, group, index uint64) error {
	if seg := w.current(); seg.size+seg.kept >= w.opts.SegmentBytes {
		if err := w.roll(); err != nil {
			return err
		}
	}
	failed := func(err error) error {
		return w.fail(fmt.Errorf("write %s: %w", segmentName(w.current().seq), err))
	}
	size, from := len(rec), 0
	for _, s := range splices {
		size += len(s.data)
		if _, err := w.bw.Write(rec[from:s.at]); err != nil {
			return failed(err)
		}
		from = s.at
		if err := w.bw.Flush(); err != nil {
			return failed(err)
		}
		if _, err := w.f.Write(s.data); err != nil {
			return failed(err)
		}
	}
	if _, err := w.bw.Write(rec[from:]); err != nil {
		return failed(err)
	}
	// A record that once needed a huge buffer should not pin it forever.
	if cap(rec) <= 4*writeBufferBytes {
		w.scratch = rec[:0]
	} else {
		w.scratch = nil
	}
	seg := w.current()
	seg.size += int64(size)
	seg.note(group, index)
	w.total += int64(size)
	w.appended++
	w.metrics.addBytes(size)
	return nil
}

// countKept adds n bytes, which a group kept in its own log in place of the
// record just appended, to the current file's weight and the WAL's.
func (w *WAL) countKept(n int64) {
	w.current().kept += n
	w.kept += n
}

// Commit makes every record appended so far reach the OS and, when sync is
// set (or a checkpoint is among them) and Options.Fsync is on, the disk. It
// is the group commit done synchronously: one write and at most one fsync
// for all of them, after the fsync in flight, if any, has ended.
func (w *WAL) Commit(sync bool) error {
	var err error
	// A checkpoint is only useful once durable, and it is rare: sync it.
	if (sync || len(w.pending) > 0) && w.opts.Fsync {
		err = w.syncNow()
	} else if err = w.wait(); err == nil {
		err = w.flush()
	}
	if err != nil {
		return err
	}
	w.metrics.setFiles(len(w.segs), w.total)
	return nil
}

// roll fsyncs and closes the current file and starts the next one. The
// old file is synced to its end, after the fsync in flight, before anything
// is written to the new one: a later fsync of the new file says nothing
// about the old one.
func (w *WAL) roll() error {
	old := w.current()
	var err error
	if w.opts.Fsync {
		err = w.syncNow()
	} else {
		err = w.flush()
	}
	if err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return w.fail(fmt.Errorf("close %s: %w", segmentName(old.seq), err))
	}
	seg := newSegment(old.seq + 1)
	f, err := os.OpenFile(w.path(seg.seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return w.fail(fmt.Errorf("create segment %s: %w", segmentName(seg.seq), err))
	}
	w.f = f
	w.bw.Reset(f)
	w.segs = append(w.segs, seg)
	if w.opts.Fsync {
		if err := w.syncDir(); err != nil {
			return w.fail(err)
		}
	}
	w.synced = w.end()
	w.metrics.setFiles(len(w.segs), w.total)
	w.log.Info().Str("file", segmentName(seg.seq)).Str("previous", segmentName(old.seq)).
		Int64("previous_bytes", old.size).Int("files", len(w.segs)).Int64("wal_bytes", w.total).
		Msg("rolled WAL file")
	return nil
}

// Close makes everything appended durable, closes the current file and
// waits for the removal of the files retention released. Afterwards every
// call fails, but Close, which returns the first Close's outcome again: the
// owner of a WAL that the storage actor closed as it stopped learns how
// that went.
func (w *WAL) Close() error {
	if w.f == nil {
		return w.closeErr
	}
	err := w.Commit(true)
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", segmentName(w.current().seq), cerr)
	}
	w.f = nil
	if w.remover != nil {
		// A file it could not remove is left for recovery, which copes.
		if rerr := w.remover.stop(); err == nil {
			err = rerr
		}
		w.remover = nil
	}
	if w.err == nil {
		w.err = errClosed
	}
	w.closeErr = err
	return err
}

// Fsyncs returns how many file fsyncs the WAL has done. It is safe to call
// from any goroutine.
func (w *WAL) Fsyncs() uint64 {
	return w.fsyncs.Load()
}

func (w *WAL) syncDir() error {
	return SyncDir(w.dir)
}

// SyncDir fsyncs a directory, which makes file creations, renames and
// removals in it durable. Every package that owns files on disk uses it.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// ReplaceFile writes b to a temporary file beside path (path + ".tmp"),
// syncs it with fsync and renames it over path: a crash leaves the old file
// or the new one, whole (the new one once the directory is synced,
// SyncDir). Its owner removes a temporary file a crash left behind, or
// overwrites it at the next replace.
func ReplaceFile(fsync func(*os.File) error, path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	return err
}

// fail makes err the WAL's sticky error, unless it already has one, and
// returns the sticky error.
func (w *WAL) fail(err error) error {
	if w.err == nil {
		w.err = err
		w.metrics.writeError()
	}
	return w.err
}
