package storage

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Preallocation. An fsync of a file that grew has to commit the file's new
// size and block allocation to the filesystem's journal as well as write the
// data: on ext4 that is a second write and cache flush per commit. So the
// WAL writes each new file in full (zeros, SegmentBytes of them) and fsyncs
// it on a goroutine of its own before the file is needed, and at the roll
// renames it into place. Records then overwrite blocks that exist, the size
// does not change, and a commit needs only fdatasync. (fallocate alone would
// not do: its blocks are marked unwritten, and the first write to each is a
// journaled metadata change again.)
//
// The zeros never count as records. The last file's recovery reads up to
// the first bad record as always, and a tail of zeros after it is the clean
// end of a preallocated file (logged as such, not as damage); a torn record
// followed by zeros is a torn tail as before. Either way the file is cut
// there. Only the last file may have such a tail: a roll cuts the old file
// to its records and fsyncs it before the new one gets its name.

// preparedName is the name of the next file while it is being prepared. It
// is not a WAL file name, so recovery ignores it; Open removes a stale one.
const preparedName = "next.wal.tmp"

// prepared is the preparation of the next file, running or done: once done
// is closed, f is the file, fully written and fsynced, or err says why
// not.
type prepared struct {
	done chan struct{}
	f    *os.File
	err  error
}

// prepareNext starts preparing the next file unless a preparation is
// already running or done, or the WAL does not fsync (then preallocation
// saves nothing).
func (w *WAL) prepareNext() {
	if w.next != nil || !w.opts.Fsync {
		return
	}
	p := &prepared{done: make(chan struct{})}
	w.next = p
	path, size := filepath.Join(w.dir, preparedName), w.opts.SegmentBytes
	go func() {
		defer close(p.done)
		p.f, p.err = preallocate(path, size)
	}()
}

// takePrepared returns the prepared file if it is ready, renamed to the WAL
// file seq, and how many bytes it holds; nil if it is not ready or failed
// (then the roll creates an empty file as before, and the failure is
// logged).
func (w *WAL) takePrepared(seq uint64) (*os.File, int64) {
	p := w.next
	if p == nil {
		return nil, 0
	}
	select {
	case <-p.done:
	default:
		return nil, 0 // still writing; the roll after this one takes it
	}
	w.next = nil
	if p.err != nil {
		w.log.Warn().Err(p.err).Msg("preallocating the next WAL file failed; appending to a new empty file")
		return nil, 0
	}
	// Reopened under its new name, so that errors and logs name it.
	p.f.Close()
	path := w.path(seq)
	if err := os.Rename(p.f.Name(), path); err != nil {
		w.log.Warn().Err(err).Msg("renaming the preallocated WAL file failed; appending to a new empty file")
		return nil, 0
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		// Its name is taken now: the roll's O_EXCL create fails with it.
		w.log.Warn().Err(err).Msg("opening the preallocated WAL file failed")
		return nil, 0
	}
	return f, w.opts.SegmentBytes
}

// dropPrepared waits for the preparation, if any, and removes its file.
func (w *WAL) dropPrepared() {
	p := w.next
	if p == nil {
		return
	}
	w.next = nil
	<-p.done
	if p.err == nil {
		p.f.Close()
		os.Remove(p.f.Name())
	}
}

// preallocate creates the file at path with size zero bytes, fsyncs it and
// returns it, open.
func preallocate(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	err = writeZeros(f, size)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("preallocate %s: %w", path, err)
	}
	return f, nil
}

func writeZeros(f *os.File, size int64) error {
	zeros := make([]byte, min(size, writeBufferBytes))
	for size > 0 {
		n, err := f.Write(zeros[:min(size, int64(len(zeros)))])
		if err != nil {
			return err
		}
		size -= int64(n)
	}
	return nil
}

// zeroTail reports whether the file at path holds only zero bytes from off
// to size.
func zeroTail(path string, off, size int64) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, min(size-off, readBufferBytes))
	for off < size {
		n, err := f.ReadAt(buf[:min(size-off, int64(len(buf)))], off)
		if err != nil && (err != io.EOF || n == 0) {
			return false, err
		}
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
		off += int64(n)
	}
	return true, nil
}
