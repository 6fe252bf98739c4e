package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// segment is the identity of one segment: its base offset and its open .log
// file. It never changes after it is created; what the segment holds at a
// given moment is a segView.
type segment struct {
	base int64
	dir  string
	log  *os.File // read with ReadAt by any goroutine; written only by the appender
}

// path returns the path of the segment's file with the given suffix.
func (s *segment) path(suffix string) string {
	return filepath.Join(s.dir, segmentFileName(s.base, suffix))
}

// name is the .log file's name, for messages.
func (s *segment) name() string { return segmentFileName(s.base, logSuffix) }

// indexFiles are the open index files of a segment that is being written, or
// that was sealed and is waiting for Flush to sync them.
type indexFiles struct {
	offset, time, raft *os.File
}

func (f indexFiles) each(fn func(*os.File) error) error {
	var first error
	for _, file := range []*os.File{f.offset, f.time, f.raft} {
		if file == nil {
			continue
		}
		if err := fn(file); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// appendTo appends the open index files to files.
func (f indexFiles) appendTo(files []*os.File) []*os.File {
	f.each(func(file *os.File) error {
		files = append(files, file)
		return nil
	})
	return files
}

func (f indexFiles) sync(fsync func(*os.File) error) error { return f.each(fsync) }
func (f indexFiles) close() error                          { return f.each((*os.File).Close) }

// openIndexFiles opens (creating them if needed) the index files of the
// segment for writing.
func openIndexFiles(s *segment) (indexFiles, error) {
	var f indexFiles
	for _, x := range []struct {
		dst    **os.File
		suffix string
	}{{&f.offset, offsetIndexSuffix}, {&f.time, timeIndexSuffix}, {&f.raft, raftIndexSuffix}} {
		file, err := os.OpenFile(s.path(x.suffix), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			f.close()
			return indexFiles{}, fmt.Errorf("open %s: %w", segmentFileName(s.base, x.suffix), err)
		}
		*x.dst = file
	}
	return f, nil
}

// segView is what one segment holds as of one published view. Everything it
// points to is immutable: the slices are only ever appended to beyond the
// lengths a published segView has, or replaced by copies.
type segView struct {
	seg  *segment
	size int64 // bytes of whole batches in the .log file; a reader never reads past it
	end  int64 // offset just after the last batch; seg.base when empty

	// dense has one entry per batch, in order. Kept in memory for every
	// segment: 24 bytes per batch, so a 1 GiB segment of 16 KiB batches
	// costs 1.5 MiB (0.15% of the log) and one of 1 KiB batches 24 MiB
	// (2.3%). It answers offset lookups (exact batch boundaries, no
	// scanning) and Raft index lookups.
	dense []raftEntry
	// times is the time index: at most one entry per IndexIntervalBytes of
	// log, 16 bytes each in memory (0.4% of the log at worst).
	times []timeEntry

	maxTs    int64  // largest maxTimestamp of the segment's batches; noTimestamp if none
	maxTsRel uint32 // last offset (relative) of the first batch with maxTs
}

// endRel is the segment's end offset relative to its base.
func (sv *segView) endRel() uint32 { return uint32(sv.end - sv.seg.base) }

// lastOffset is the last offset of the batch k.
func (sv *segView) lastOffset(k int) int64 {
	return sv.seg.base + int64(lastRelOf(sv.dense, k, sv.endRel()))
}

// find returns the index of the batch containing offset, which must be in
// [seg.base, end).
func (sv *segView) find(offset int64) int {
	return batchContaining(sv.dense, uint32(offset-sv.seg.base))
}

// readAt reads exactly len(b) bytes at pos of the .log file.
func (sv *segView) readAt(b []byte, pos int64) error {
	if _, err := sv.seg.log.ReadAt(b, pos); err != nil {
		return fmt.Errorf("read %s at position %d: %w", sv.seg.name(), pos, err)
	}
	return nil
}

// readBatches reads the batches k..j-1, which are contiguous in the file,
// into a buffer from alloc (nil: a new one).
func (sv *segView) readBatches(k, j int, alloc func(n int) []byte) ([]byte, error) {
	pos := int64(sv.dense[k].pos)
	n := int(sv.dense[j-1].end() - pos)
	var b []byte
	if alloc != nil {
		b = alloc(n)[:n]
	} else {
		b = make([]byte, n)
	}
	if err := sv.readAt(b, pos); err != nil {
		return nil, err
	}
	return b, nil
}

// readHeader reads and decodes the fixed header of the batch k, without
// verifying its CRC.
func (sv *segView) readHeader(k int) (BatchHeader, error) {
	var b [BatchHeaderSize]byte
	if err := sv.readAt(b[:], int64(sv.dense[k].pos)); err != nil {
		return BatchHeader{}, err
	}
	return decodeHeader(b[:]), nil
}

// decodeHeader decodes a batch header without validating anything; b must
// be at least BatchHeaderSize bytes.
func decodeHeader(b []byte) BatchHeader {
	return BatchHeader{
		BaseOffset:           int64(binary.BigEndian.Uint64(b[baseOffsetPos:])),
		BatchLength:          int32(binary.BigEndian.Uint32(b[batchLengthPos:])),
		PartitionLeaderEpoch: int32(binary.BigEndian.Uint32(b[partitionLeaderEpochPos:])),
		Magic:                int8(b[magicPos]),
		CRC:                  binary.BigEndian.Uint32(b[crcPos:]),
		Attributes:           int16(binary.BigEndian.Uint16(b[attributesPos:])),
		LastOffsetDelta:      int32(binary.BigEndian.Uint32(b[lastOffsetDeltaPos:])),
		BaseTimestamp:        int64(binary.BigEndian.Uint64(b[baseTimestampPos:])),
		MaxTimestamp:         int64(binary.BigEndian.Uint64(b[maxTimestampPos:])),
		ProducerID:           int64(binary.BigEndian.Uint64(b[producerIDPos:])),
		ProducerEpoch:        int16(binary.BigEndian.Uint16(b[producerEpochPos:])),
		BaseSequence:         int32(binary.BigEndian.Uint32(b[baseSequencePos:])),
		RecordCount:          int32(binary.BigEndian.Uint32(b[recordCountPos:])),
	}
}

// scanChunkBytes is how much a batchScanner reads at a time: enough for many
// small batches per system call.
const scanChunkBytes = 64 << 10

// batchScanner reads the batches of a .log file in order through a buffer.
// It checks only their framing; the caller validates each batch.
type batchScanner struct {
	r        io.ReaderAt
	name     string
	pos, end int64 // next batch position; end of the bytes to scan

	buf    []byte
	bufPos int64 // file position of buf[0]
}

func newBatchScanner(r io.ReaderAt, name string, pos, end int64) *batchScanner {
	return &batchScanner{r: r, name: name, pos: pos, end: end}
}

// next returns the batch at the scanner's position and advances past it. The
// bytes are valid until the next call. At the end it returns nil and an
// empty reason; where the bytes left are not a whole batch frame (a torn
// tail) it returns nil and the reason. err is for I/O failures only.
func (s *batchScanner) next() (pos int64, batch []byte, reason string, err error) {
	pos = s.pos
	left := s.end - pos
	if left == 0 {
		return pos, nil, "", nil
	}
	if left < BatchHeaderSize {
		return pos, nil, fmt.Sprintf("torn batch header: %d bytes left", left), nil
	}
	head, err := s.window(BatchHeaderSize)
	if err != nil {
		return pos, nil, "", err
	}
	length := int64(int32(binary.BigEndian.Uint32(head[batchLengthPos:])))
	if length < minBatchLength {
		return pos, nil, fmt.Sprintf("batchLength %d", length), nil
	}
	size := length + batchLengthOverhead
	if size > left {
		return pos, nil, fmt.Sprintf("torn batch: %d bytes, %d left", size, left), nil
	}
	batch, err = s.window(size)
	if err != nil {
		return pos, nil, "", err
	}
	s.pos += size
	return pos, batch, "", nil
}

// window returns n bytes at the scanner's position, reading if the buffer
// does not hold them.
func (s *batchScanner) window(n int64) ([]byte, error) {
	if off := s.pos - s.bufPos; s.buf != nil && off >= 0 && off+n <= int64(len(s.buf)) {
		return s.buf[off : off+n], nil
	}
	want := min(max(n, scanChunkBytes), s.end-s.pos)
	if int64(cap(s.buf)) < want {
		s.buf = make([]byte, want)
	}
	s.buf = s.buf[:want]
	if _, err := s.r.ReadAt(s.buf, s.pos); err != nil {
		s.buf = nil
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %s at position %d: %w", s.name, s.pos, err)
	}
	s.bufPos = s.pos
	return s.buf[:n], nil
}

// removeSegmentFiles deletes every file of the segment with base offset
// base; missing files are fine. The .log goes first, so that an interrupted
// removal leaves orphan indexes, which Open deletes, and never a .log
// without its .raft file, which Open cannot rebuild when no earlier
// segment bounds its Raft indexes (a released segment is the first one).
func removeSegmentFiles(dir string, base int64) error {
	var first error
	for _, suffix := range []string{logSuffix, raftIndexSuffix, timeIndexSuffix, offsetIndexSuffix} {
		err := os.Remove(filepath.Join(dir, segmentFileName(base, suffix)))
		if err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = fmt.Errorf("remove %s: %w", segmentFileName(base, suffix), err)
		}
	}
	return first
}

// rewriteFile replaces the contents of the file at path with b.
func rewriteFile(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// readFileIfExists returns the contents of the file at path, and whether it
// exists.
func readFileIfExists(path string) ([]byte, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	return b, true, nil
}
