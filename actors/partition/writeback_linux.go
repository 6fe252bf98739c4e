package partition

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// pageSize is the unit the kernel writes back.
const pageSize = 4096

// wholeTailBytes is the batch size from which the last, partial page is
// written back too. Left to the fsync, that page costs the group commit a
// write round trip of its own (0.7-0.8 ms of a 3 ms segment sync on three
// brokers, in one pair of runs); written now, it is written again with the
// next batch, which for a batch this large adds at most a sixteenth to the
// bytes written, but for 1 KB batches doubles them.
const wholeTailBytes = 64 << 10

// startWriteback asks the kernel to start writing back [off, off+n) of f,
// from the page that holds off: a group commit's fsync then finds most of
// the bytes appended since the last one on their way already and waits
// only for the rest; on one broker it halved the segment fsync
// (docs/BENCHMARKS.md). RocksDB's bytes_per_sync does the same. A range
// shorter than wholeTailBytes stops at its last whole page, the rest being
// left for the next call or the fsync.
//
// It does not wait for the writes, though it may block while it submits
// them (a full request queue, a page another fsync holds). Its CPU is the
// write-back's, moved from the group commit's fsync to the appender. Only
// SYNC_FILE_RANGE_WRITE, never a WAIT flag: waiting would consume the
// file's writeback error, which the next fsync must still report. ENOMEM
// and EAGAIN leave the pages dirty for the fsync to write, so they are not
// errors here; any other error is, as the pages may be gone.
func startWriteback(f *os.File, off, n int64) error {
	from, to := writebackRange(off, n)
	if to <= from {
		return nil
	}
	c, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SyncFileRange(int(fd), from, to-from, unix.SYNC_FILE_RANGE_WRITE)
	}); err != nil {
		return err
	}
	if errors.Is(serr, unix.ENOMEM) || errors.Is(serr, unix.EAGAIN) {
		return nil
	}
	return serr
}

// writebackRange is the range startWriteback writes back for [off, off+n).
func writebackRange(off, n int64) (from, to int64) {
	from, to = off&^(pageSize-1), off+n
	if n < wholeTailBytes {
		to &^= pageSize - 1
	}
	return from, to
}
