package partition

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// A segment is a group of files named after the segment's base offset,
// zero-padded to 20 digits so that names sort like numbers (Kafka's layout).
const (
	logSuffix         = ".log"       // the record batches, byte for byte
	offsetIndexSuffix = ".index"     // sparse: last offset -> position
	timeIndexSuffix   = ".timeindex" // sparse: running max timestamp -> last offset
	raftIndexSuffix   = ".raft"      // dense: one entry per batch, with its Raft index and term
)

// Sizes of the index entries on disk; every field is big-endian.
const (
	offsetEntrySize = 8  // relative offset uint32, position uint32
	timeEntrySize   = 12 // timestamp int64, relative offset uint32
	raftEntrySize   = 24 // raft index uint64, relative offset, position, size, term: uint32 each
)

// segmentFileName returns the name of the segment file with base offset base
// and the given suffix.
func segmentFileName(base int64, suffix string) string {
	return fmt.Sprintf("%020d%s", base, suffix)
}

// parseSegmentFileName splits a segment file name into its base offset and
// suffix; ok is false for any other file.
func parseSegmentFileName(name string) (base int64, suffix string, ok bool) {
	dot := strings.IndexByte(name, '.')
	if dot != 20 {
		return 0, "", false
	}
	switch suffix = name[dot:]; suffix {
	case logSuffix, offsetIndexSuffix, timeIndexSuffix, raftIndexSuffix:
	default:
		return 0, "", false
	}
	base, err := strconv.ParseInt(name[:dot], 10, 64)
	if err != nil || base < 0 {
		return 0, "", false
	}
	return base, suffix, true
}

// raftEntry locates one batch of a segment and says which Raft entry it came
// from. Positions and offsets are relative to the segment, so they fit in 32
// bits (segments are at most math.MaxInt32 bytes and roll before their
// relative offsets would overflow).
type raftEntry struct {
	index uint64 // Raft index of the entry that carried the batch
	rel   uint32 // base offset of the batch, minus the segment's base offset
	pos   uint32 // position of the batch in the .log file
	size  uint32 // size of the batch in bytes
	term  uint32 // Raft term of that entry
}

func (e raftEntry) put(b []byte) {
	binary.BigEndian.PutUint64(b[0:], e.index)
	binary.BigEndian.PutUint32(b[8:], e.rel)
	binary.BigEndian.PutUint32(b[12:], e.pos)
	binary.BigEndian.PutUint32(b[16:], e.size)
	binary.BigEndian.PutUint32(b[20:], e.term)
}

func getRaftEntry(b []byte) raftEntry {
	return raftEntry{
		index: binary.BigEndian.Uint64(b[0:]),
		rel:   binary.BigEndian.Uint32(b[8:]),
		pos:   binary.BigEndian.Uint32(b[12:]),
		size:  binary.BigEndian.Uint32(b[16:]),
		term:  binary.BigEndian.Uint32(b[20:]),
	}
}

// end is the position just after the batch.
func (e raftEntry) end() int64 { return int64(e.pos) + int64(e.size) }

// offsetEntry is an entry of the sparse offset index: the batch at position
// pos ends at relative offset rel (Kafka indexes a batch by its last offset).
type offsetEntry struct {
	rel uint32
	pos uint32
}

func (e offsetEntry) put(b []byte) {
	binary.BigEndian.PutUint32(b[0:], e.rel)
	binary.BigEndian.PutUint32(b[4:], e.pos)
}

// getOffsetEntryPos returns the position of an encoded offset index entry.
func getOffsetEntryPos(b []byte) int64 { return int64(binary.BigEndian.Uint32(b[4:])) }

// timeEntry is an entry of the sparse time index: ts is the largest
// maxTimestamp of the segment's batches up to the index point, and rel the
// last offset (relative) of the first batch that reached it. So every batch
// before that one has a smaller maxTimestamp, which is what makes a lookup
// by timestamp correct.
type timeEntry struct {
	ts  int64
	rel uint32
}

func (e timeEntry) put(b []byte) {
	binary.BigEndian.PutUint64(b[0:], uint64(e.ts))
	binary.BigEndian.PutUint32(b[8:], e.rel)
}

func getTimeEntry(b []byte) timeEntry {
	return timeEntry{ts: int64(binary.BigEndian.Uint64(b[0:])), rel: binary.BigEndian.Uint32(b[8:])}
}

// noTimestamp is Kafka's RecordBatch.NO_TIMESTAMP: a batch or segment
// without one.
const noTimestamp = -1

// indexer decides, batch by batch, where the sparse indexes get entries. It
// follows Kafka's LogSegment.append: an index point is a batch that starts
// more than interval bytes after the previous index point (so the first batch
// of a segment never is one); at an index point the offset index gets the
// batch and the time index gets the running maximum timestamp if it grew.
// Append and the rebuilding of an index both use it, so a rebuilt index is
// byte-for-byte the one appends would have written.
type indexer struct {
	interval   int64
	bytesSince int64 // bytes appended since the last index point, including it

	maxTs    int64  // running maximum of the batches' maxTimestamp; noTimestamp if none
	maxTsRel uint32 // last offset (relative) of the first batch that reached maxTs

	lastIndexedTs int64 // timestamp of the last time index entry; noTimestamp if none
}

func newIndexer(interval int64) indexer {
	return indexer{interval: interval, maxTs: noTimestamp, lastIndexedTs: noTimestamp}
}

// add accounts for one more batch, at position pos, of size bytes, whose
// last relative offset is lastRel and whose maxTimestamp is maxTs. It returns
// the index entries to append for it, if any.
func (x *indexer) add(pos, size int64, lastRel uint32, maxTs int64) (off offsetEntry, hasOff bool, t timeEntry, hasTime bool) {
	if maxTs > x.maxTs {
		x.maxTs, x.maxTsRel = maxTs, lastRel
	}
	if x.bytesSince > x.interval {
		off, hasOff = offsetEntry{rel: lastRel, pos: uint32(pos)}, true
		t, hasTime = x.seal()
		x.bytesSince = 0
	}
	x.bytesSince += size
	return off, hasOff, t, hasTime
}

// seal returns the time index entry that makes the index's last entry the
// segment's maximum, if it is not already; it is appended when a segment
// stops being written (roll, Close), so that a sealed segment's largest
// timestamp is its time index's last entry.
func (x *indexer) seal() (timeEntry, bool) {
	if x.maxTs <= x.lastIndexedTs {
		return timeEntry{}, false
	}
	x.lastIndexedTs = x.maxTs
	return timeEntry{ts: x.maxTs, rel: x.maxTsRel}, true
}

// batchInfo is what the index builders need to know about a batch.
type batchInfo struct {
	pos, size int64
	lastRel   uint32
	maxTs     int64
}

// buildIndexes returns the offset and time index files, and the indexer
// state after the last batch, that appending the given batches one by one
// would have produced. When sealed is set the time index ends with the seal
// entry.
func buildIndexes(batches []batchInfo, interval int64, sealed bool) (offIdx, timeIdx []byte, x indexer) {
	x = newIndexer(interval)
	var buf [timeEntrySize]byte
	for _, b := range batches {
		off, hasOff, t, hasTime := x.add(b.pos, b.size, b.lastRel, b.maxTs)
		if hasOff {
			off.put(buf[:])
			offIdx = append(offIdx, buf[:offsetEntrySize]...)
		}
		if hasTime {
			t.put(buf[:])
			timeIdx = append(timeIdx, buf[:timeEntrySize]...)
		}
	}
	if sealed {
		if t, ok := x.seal(); ok {
			t.put(buf[:])
			timeIdx = append(timeIdx, buf[:timeEntrySize]...)
		}
	}
	return offIdx, timeIdx, x
}

// batchInfos describes the batches of a segment from its dense index alone,
// with maxTs unknown (noTimestamp): enough to build the offset index.
func batchInfos(dense []raftEntry, endRel uint32) []batchInfo {
	out := make([]batchInfo, len(dense))
	for k, e := range dense {
		out[k] = batchInfo{pos: int64(e.pos), size: int64(e.size), lastRel: lastRelOf(dense, k, endRel), maxTs: noTimestamp}
	}
	return out
}

// lastRelOf is the last relative offset of batch k of a segment whose
// batches end at relative offset endRel (exclusive).
func lastRelOf(dense []raftEntry, k int, endRel uint32) uint32 {
	if k+1 < len(dense) {
		return dense[k+1].rel - 1
	}
	return endRel - 1
}

// decodeTimeIndex parses a time index file and checks what can be checked
// without reading the log: whole entries, strictly increasing timestamps,
// non-decreasing offsets, each the last offset of one of the segment's
// batches. It returns nil, false if the file fails.
func decodeTimeIndex(b []byte, dense []raftEntry, endRel uint32) ([]timeEntry, bool) {
	if len(b)%timeEntrySize != 0 {
		return nil, false
	}
	out := make([]timeEntry, 0, len(b)/timeEntrySize)
	for i := 0; i < len(b); i += timeEntrySize {
		e := getTimeEntry(b[i:])
		if n := len(out); n > 0 && (e.ts <= out[n-1].ts || e.rel < out[n-1].rel) {
			return nil, false
		}
		k := batchContaining(dense, e.rel)
		if k < 0 || e.rel >= endRel || lastRelOf(dense, k, endRel) != e.rel {
			return nil, false
		}
		out = append(out, e)
	}
	return out, true
}

// batchContaining returns the index in dense of the batch that contains the
// relative offset rel: the last one starting at or before it, or -1.
func batchContaining(dense []raftEntry, rel uint32) int {
	return sort.Search(len(dense), func(i int) bool { return dense[i].rel > rel }) - 1
}

// timeIndexFloor returns the index of the last time entry whose timestamp is
// at most ts, or -1.
func timeIndexFloor(times []timeEntry, ts int64) int {
	return sort.Search(len(times), func(i int) bool { return times[i].ts > ts }) - 1
}
