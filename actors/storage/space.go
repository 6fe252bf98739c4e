package storage

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// ErrLowSpace is what Space.Check answers while the data directory's
// filesystem has less free space than the reserve.
var ErrLowSpace = errors.New("free disk space below the reserve")

// spaceCheckEvery bounds how stale a Check's answer may be. At the disk
// rates seen here (about 1 GB/s) that is 100 MB written past a reading,
// well inside any sensible reserve.
const spaceCheckEvery = 100 * time.Millisecond

// Space guards the filesystem that holds a broker's data: new writes are
// refused while its free space is below a reserve. A write that fails half
// way for want of space halts its raft group until the broker restarts;
// refusing it beforehand keeps the group up, its data readable, and lets
// producers in again as soon as space comes back (retention, an operator).
// The reserve leaves room for what must still be written: the WAL, the
// checkpoints, consumer offsets and batches already accepted.
type Space struct {
	dir     string
	reserve int64
	statfs  func(dir string) (int64, error)
	log     zerolog.Logger

	mu  sync.Mutex // held by the Check that reads the filesystem
	low bool       // the last reading was below the reserve (under mu)
	// checked is when the last reading was taken, in nanoseconds after
	// start on the monotonic clock: a wall clock stepped back must not
	// stop the readings.
	start   time.Time
	checked atomic.Int64
	free    atomic.Int64
}

// NewSpace returns the guard of the filesystem holding dir, refusing writes
// below reserve free bytes (0: never). It reads the free space once, so a
// directory that cannot be examined is an error here rather than later.
func NewSpace(dir string, reserve int64, log zerolog.Logger) (*Space, error) {
	return newSpace(dir, reserve, freeBytes, log)
}

// newSpace is NewSpace reading the filesystem with statfs.
func newSpace(dir string, reserve int64, statfs func(string) (int64, error), log zerolog.Logger) (*Space, error) {
	s := &Space{dir: dir, reserve: reserve, statfs: statfs, log: log, start: time.Now()}
	free, err := s.statfs(dir)
	if err != nil {
		return nil, err
	}
	s.record(s.elapsed(), free)
	return s, nil
}

// Check returns nil when there is room for more writes, and an error
// wrapping ErrLowSpace, with the numbers, when there is not. It costs an
// atomic load, and a statfs at most every spaceCheckEvery; a nil Space
// always has room.
func (s *Space) Check() error {
	if s == nil || s.reserve <= 0 {
		return nil
	}
	now := s.elapsed()
	if now-s.checked.Load() >= int64(spaceCheckEvery) && s.mu.TryLock() {
		// A reading that fails keeps the last one: a broker that cannot
		// tell does not stop its producers for it.
		if free, err := s.statfs(s.dir); err == nil {
			s.record(now, free)
		} else {
			s.checked.Store(now)
			s.log.Warn().Err(err).Str("dir", s.dir).Msg("reading free disk space failed")
		}
		s.mu.Unlock()
	}
	if free := s.free.Load(); free < s.reserve {
		return fmt.Errorf("%w: %d MiB free on the filesystem of %s, storage.min_free_bytes keeps %d MiB",
			ErrLowSpace, free>>20, s.dir, s.reserve>>20)
	}
	return nil
}

// elapsed is the monotonic time since s was made, in nanoseconds.
func (s *Space) elapsed() int64 { return int64(time.Since(s.start)) }

// record stores a reading taken at now (elapsed) and logs a crossing of
// the reserve, once per crossing. The caller holds mu, or owns s
// (NewSpace).
func (s *Space) record(now, free int64) {
	s.free.Store(free)
	s.checked.Store(now)
	low := s.reserve > 0 && free < s.reserve
	if low == s.low {
		return
	}
	s.low = low
	if low {
		s.log.Error().Str("dir", s.dir).Int64("free_bytes", free).Int64("min_free_bytes", s.reserve).
			Msg("disk space below the reserve; refusing produce requests until it comes back")
	} else {
		s.log.Info().Str("dir", s.dir).Int64("free_bytes", free).Int64("min_free_bytes", s.reserve).
			Msg("disk space back above the reserve; accepting produce requests")
	}
}

// Collector returns the Prometheus gauge of the free bytes, read from the
// filesystem at each scrape.
func (s *Space) Collector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flotilla_storage_free_bytes",
		Help: "Free bytes on the filesystem holding the data directory, as an unprivileged process may use them.",
	}, func() float64 {
		free, err := s.statfs(s.dir)
		if err != nil {
			return -1
		}
		return float64(free)
	})
}

// freeBytes is the space an unprivileged process may still use on the
// filesystem holding dir.
func freeBytes(dir string) (int64, error) {
	_, usable, err := usage(dir)
	return usable, err
}

// usage is the size of the filesystem holding dir and the space an
// unprivileged process may still use on it.
func usage(dir string) (total, usable int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Blocks) * int64(st.Bsize), int64(st.Bavail) * int64(st.Bsize), nil
}

// Usage reads the size of the filesystem holding the data directory and
// the space an unprivileged process may still use on it, as Kafka's
// DescribeLogDirs reports them (FileStore's getTotalSpace and
// getUsableSpace). It reads the filesystem on each call.
func (s *Space) Usage() (total, usable int64, err error) { return usage(s.dir) }
