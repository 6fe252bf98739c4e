package partition

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// pageSize is the unit the kernel writes back; a page still being filled
// is left to the fsync, since writing it now would write it twice.
const pageSize = 4096

// startWriteback asks the kernel to start writing back the whole pages of
// [off, off+n) of f, from the page that holds off (the previous call left
// it, as it was not full then) to the last page the range fills. A group
// commit's fsync then finds most of the bytes appended since the last one
// on their way already and waits only for the rest: on one broker it
// halved the segment fsync (docs/BENCHMARKS.md). RocksDB's bytes_per_sync
// does the same.
//
// It does not wait for the writes, though it may block while it submits
// them (a full request queue, a page another fsync holds). Its CPU is the
// write-back's, moved from the group commit's fsync to the appender. Only
// SYNC_FILE_RANGE_WRITE, never a WAIT flag: waiting would consume the
// file's writeback error, which the next fsync must still report. ENOMEM
// and EAGAIN leave the pages dirty for the fsync to write, so they are not
// errors here; any other error is, as the pages may be gone.
func startWriteback(f *os.File, off, n int64) error {
	from, to := off&^(pageSize-1), (off+n)&^(pageSize-1)
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
