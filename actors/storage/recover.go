package storage

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"sort"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// readBufferBytes is the read-ahead used while replaying a file.
const readBufferBytes = 1 << 20

// GroupState is what the WAL holds for one group: its latest hard state, its
// latest snapshot (from a checkpoint or from the leader) and the entries
// after that snapshot, in index order.
type GroupState struct {
	HardState *pb.HardState // nil if the WAL has none
	Snapshot  *pb.Snapshot  // nil if the WAL has none
	Entries   []*pb.Entry
	// Replaced are the entries a leader's snapshot replaced, as the group
	// had them, until the group's next checkpoint. Raft never gets them
	// back, but a LogKeeper finds its own batches by them: its index of
	// those batches may not be durable yet (a checkpoint makes it so), and
	// the snapshot took their references from Entries.
	Replaced []*pb.Entry
}

// CorruptError reports a record that failed verification in a WAL file that
// is not the last one, where it cannot be a torn write and dropping it would
// silently lose the records after it.
type CorruptError struct {
	File   string
	Offset int64
	Reason string
}

// Error implements error.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("WAL file %s is corrupt at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Open recovers the WAL in dir (created if missing; by convention
// Dir(dataDir)) and opens it for appending. It returns the state of every
// group that has records.
//
// Every record of every file is verified. A torn or corrupt tail of the last
// file (the only place a crash can leave one) is truncated on disk at the
// last good record, with a warning; a bad record anywhere else, or a missing
// file in the sequence, is an error and nothing is changed.
func Open(dir string, opts Options) (*WAL, map[uint64]*GroupState, error) {
	start := time.Now()
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create WAL directory: %w", err)
	}
	seqs, err := listSegments(dir)
	if err != nil {
		return nil, nil, err
	}
	w := &WAL{
		dir:         dir,
		opts:        opts,
		log:         opts.Log,
		metrics:     opts.Metrics,
		hardStates:  make(map[uint64]*pb.HardState),
		snapIndexes: make(map[uint64]uint64),
		rewrites:    make(map[uint64]checkpointMark),
		checkpoints: make(map[uint64]checkpointMark),
		forgotten:   make(map[uint64]uint64),
		syncFile:    (*os.File).Sync,
		removeFile:  os.Remove,
	}
	states := make(map[uint64]*GroupState)
	for i, seq := range seqs {
		seg, err := w.replay(seq, i == len(seqs)-1, states)
		if err != nil {
			return nil, nil, err
		}
		w.segs = append(w.segs, seg)
		w.total += seg.size
	}
	if err := w.openTail(); err != nil {
		return nil, nil, err
	}
	w.synced = w.end()
	for group, st := range states {
		if st.HardState != nil {
			w.hardStates[group] = st.HardState
		}
		if i := st.snapshotIndex(); i > 0 {
			w.snapIndexes[group] = i
		}
	}
	w.metrics.setFiles(len(w.segs), w.total)
	w.log.Info().Str("dir", dir).Int("files", len(w.segs)).Int64("bytes", w.total).
		Int("raft_group_count", len(states)).Dur("took_ms", time.Since(start)).Msg("recovered WAL")
	return w, states, nil
}

// listSegments returns the sequence numbers of the WAL files in dir, in
// order, and fails if one is missing between the first and the last:
// deletion only ever removes the oldest, so a gap means lost data.
func listSegments(dir string) ([]uint64, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read WAL directory: %w", err)
	}
	var seqs []uint64
	for _, de := range des {
		if seq, ok := parseSegmentName(de.Name()); ok && de.Type().IsRegular() {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			return nil, fmt.Errorf("WAL file %s is missing (found %s and %s)",
				segmentName(seqs[i-1]+1), segmentName(seqs[i-1]), segmentName(seqs[i]))
		}
	}
	return seqs, nil
}

// openTail opens the last file for appending, or creates the first one.
func (w *WAL) openTail() error {
	if len(w.segs) == 0 {
		seg := newSegment(1)
		f, err := os.OpenFile(w.path(seg.seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("create segment %s: %w", segmentName(seg.seq), err)
		}
		if w.opts.Fsync {
			if err := w.syncDir(); err != nil {
				f.Close()
				return err
			}
		}
		w.segs = append(w.segs, seg)
		w.f = f
	} else {
		name := segmentName(w.current().seq)
		f, err := os.OpenFile(w.path(w.current().seq), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("open segment %s: %w", name, err)
		}
		// A process that crashed may have left records the OS has but the
		// disk may not; recovery hands them to the groups as durable.
		if w.opts.Fsync {
			if err := f.Sync(); err != nil {
				f.Close()
				return fmt.Errorf("fsync segment %s: %w", name, err)
			}
		}
		w.f = f
	}
	w.bw = bufio.NewWriterSize(w.f, writeBufferBytes)
	return nil
}

// replay reads one file, applies its records to states and rebuilds its
// bookkeeping. In the last file a bad record ends the file: it is truncated
// there.
func (w *WAL) replay(seq uint64, last bool, states map[uint64]*GroupState) (*segment, error) {
	name := segmentName(seq)
	path := w.path(seq)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open segment %s: %w", name, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat segment %s: %w", name, err)
	}
	size := info.Size()
	seg := newSegment(seq)
	rr := recordReader{r: bufio.NewReaderSize(f, readBufferBytes)}
	var off int64
	for off < size {
		rec, n, reason, err := rr.next(size - off)
		if err != nil {
			return nil, fmt.Errorf("read segment %s at offset %d: %w", name, off, err)
		}
		if reason != "" {
			if !last {
				return nil, &CorruptError{File: name, Offset: off, Reason: reason}
			}
			if err := truncateFile(path, off); err != nil {
				return nil, err
			}
			w.log.Warn().Str("file", name).Int64("offset", off).Int64("dropped_bytes", size-off).
				Str("reason", reason).Msg("truncated torn or corrupt WAL tail")
			size = off
			break
		}
		if rec.typ == recordForget {
			delete(states, rec.group)
			delete(w.checkpoints, rec.group)
			w.forgotten[rec.group] = seq
			delete(seg.groups, rec.group) // later records are a new replica's

			off += n
			continue
		}
		st := states[rec.group]
		if st == nil {
			st = &GroupState{}
			states[rec.group] = st
		}
		// A leader's snapshot that replaces the group's state drops its
		// whole log, as entries drop those from their first index on
		// (AppendUpdate).
		if snapIndex := rec.snapshot.GetMetadata().GetIndex(); rec.replaces(st) {
			w.overwrite(rec.group, snapIndex+1, seg)
		}
		st.apply(&rec)
		if rec.typ == recordUpdate && len(rec.entries) > 0 {
			w.overwrite(rec.group, rec.entries[0].GetIndex(), seg)
		}
		seg.note(rec.group, rec.lastIndex())
		if rec.typ == recordCheckpoint {
			index := rec.snapshot.GetMetadata().GetIndex()
			if m, ok := w.checkpoints[rec.group]; !ok || index >= m.index {
				w.checkpoints[rec.group] = checkpointMark{seq: seq, index: index}
			}
		}
		off += n
	}
	seg.size = size
	return seg, nil
}

// recordReader reads framed records from a file, reusing its buffer.
type recordReader struct {
	r   *bufio.Reader
	buf []byte
}

// next reads the record at the reader's position, with remaining bytes left
// in the file. It returns the record and its framed size, or a non-empty
// reason why the bytes there are not a record; err is for I/O failures only.
func (rr *recordReader) next(remaining int64) (rec record, n int64, reason string, err error) {
	if remaining < headerSize {
		return rec, 0, fmt.Sprintf("torn header: %d bytes", remaining), nil
	}
	var hdr [headerSize]byte
	if _, err := io.ReadFull(rr.r, hdr[:]); err != nil {
		return rec, 0, "", err
	}
	length := binary.BigEndian.Uint32(hdr[:4])
	sum := binary.BigEndian.Uint32(hdr[4:])
	if length == 0 || length > maxRecordBytes {
		return rec, 0, fmt.Sprintf("bad record length %d", length), nil
	}
	if int64(length) > remaining-headerSize {
		return rec, 0, fmt.Sprintf("torn record: length %d, %d bytes left", length, remaining-headerSize), nil
	}
	if cap(rr.buf) < int(length) {
		rr.buf = make([]byte, length)
	}
	payload := rr.buf[:length]
	if _, err := io.ReadFull(rr.r, payload); err != nil {
		return rec, 0, "", err
	}
	if got := crc32.Checksum(payload, castagnoli); got != sum {
		return rec, 0, fmt.Sprintf("CRC mismatch: stored %#08x, computed %#08x", sum, got), nil
	}
	rec, derr := decodeRecord(payload)
	if derr != nil {
		return rec, 0, "undecodable record: " + derr.Error(), nil
	}
	return rec, headerSize + int64(length), "", nil
}

// truncateFile cuts the file at size and makes that durable before anything
// is appended after it.
func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s to truncate: %w", path, err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("truncate %s at %d: %w", path, size, err)
	}
	return nil
}

// apply replays one record of the group.
func (s *GroupState) apply(r *record) {
	snapIndex := r.snapshot.GetMetadata().GetIndex()
	switch r.typ {
	case recordUpdate:
		// A snapshot in a Ready means raft restored it because its log
		// did not hold the snapshot's entry: the whole log is replaced,
		// including any (conflicting) entries above the snapshot.
		if r.replaces(s) {
			s.Snapshot = r.snapshot
			s.Replaced = append(s.Replaced, s.Entries...)
			s.Entries = nil
		}
		if len(r.entries) > 0 {
			s.appendEntries(r.entries)
		}
	case recordCheckpoint:
		// A checkpoint only says that the state up to its index is
		// captured; the entries after it stay.
		if snapIndex > s.snapshotIndex() {
			s.Snapshot = r.snapshot
			k := sort.Search(len(s.Entries), func(i int) bool { return s.Entries[i].GetIndex() > snapIndex })
			s.Entries = slices.Delete(s.Entries, 0, k)
			s.Replaced = nil // the checkpoint's Flush made the keeper's index durable
		}
	}
	if r.hardState != nil {
		s.HardState = r.hardState
	}
}

// replaces reports whether r, an update, carries a leader's snapshot that
// replaces s's snapshot and whole log.
func (r *record) replaces(s *GroupState) bool {
	return r.typ == recordUpdate && r.snapshot != nil && r.snapshot.GetMetadata().GetIndex() > s.snapshotIndex()
}

// appendEntries applies raft's overwrite rule: entries starting at index i
// replace every entry at or above i. Entries the snapshot covers are dropped.
func (s *GroupState) appendEntries(ents []*pb.Entry) {
	first := ents[0].GetIndex()
	k := sort.Search(len(s.Entries), func(i int) bool { return s.Entries[i].GetIndex() >= first })
	s.Entries = slices.Delete(s.Entries, k, len(s.Entries))
	snapIndex := s.snapshotIndex()
	for _, e := range ents {
		if e.GetIndex() > snapIndex {
			s.Entries = append(s.Entries, e)
		}
	}
}

func (s *GroupState) snapshotIndex() uint64 {
	return s.Snapshot.GetMetadata().GetIndex()
}
