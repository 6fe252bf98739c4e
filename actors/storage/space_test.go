package storage

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestSpaceCheck walks a Space through readings of the filesystem: each
// step sets what statfs answers, makes the last reading stale, and checks
// what Check answers.
func TestSpaceCheck(t *testing.T) {
	const mib = 1 << 20
	type step struct {
		free    int64
		err     error // of statfs
		wantLow bool
	}
	tests := []struct {
		name    string
		reserve int64
		steps   []step
	}{
		{"room", 100 * mib, []step{{free: 500 * mib}, {free: 101 * mib}, {free: 100 * mib}}},
		{"below the reserve, then back", 100 * mib, []step{
			{free: 500 * mib}, {free: 99 * mib, wantLow: true}, {free: 0, wantLow: true}, {free: 300 * mib}}},
		{"a failed reading keeps the last one", 100 * mib, []step{
			{free: 50 * mib, wantLow: true}, {err: errors.New("injected"), wantLow: true},
			{free: 200 * mib}, {err: errors.New("injected")}}},
		{"no reserve", 0, []step{{free: 0}, {free: 500 * mib}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var free int64 = 1 << 40
			var statErr error
			s := &Space{dir: "/data", reserve: tt.reserve, log: zerolog.Nop(), start: time.Now(),
				statfs: func(string) (int64, error) { return free, statErr }}
			for i, st := range tt.steps {
				free, statErr = st.free, st.err
				s.checked.Store(-int64(spaceCheckEvery)) // stale: the next Check reads again
				err := s.Check()
				if low := errors.Is(err, ErrLowSpace); low != st.wantLow {
					t.Fatalf("step %d (free %d, statfs error %v): Check() = %v, want low %v", i, st.free, st.err, err, st.wantLow)
				}
				if err != nil && !strings.Contains(err.Error(), "storage.min_free_bytes") {
					t.Fatalf("step %d: %q does not name the setting", i, err)
				}
			}
		})
	}
}

// TestSpaceReadsAtMostEveryInterval: Checks within spaceCheckEvery of a
// reading use it rather than call statfs again.
func TestSpaceReadsAtMostEveryInterval(t *testing.T) {
	calls := 0
	s, err := newSpace("/data", 1, func(string) (int64, error) { calls++; return 10, nil }, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
	}
	// NewSpace read once; a slow machine may cross one interval.
	if calls > 2 {
		t.Fatalf("statfs called %d times for 1000 Checks in a row", calls)
	}
}

// TestNilSpaceHasRoom: a broker built without a guard (tests, tools)
// checks a nil *Space.
func TestNilSpaceHasRoom(t *testing.T) {
	var s *Space
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestNewSpaceReadsTheDirectory: the real statfs of a real directory, and
// a missing one refused at once.
func TestNewSpaceReadsTheDirectory(t *testing.T) {
	s, err := NewSpace(t.TempDir(), 1, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if s.free.Load() <= 0 {
		t.Fatalf("free bytes %d on the test's temp dir", s.free.Load())
	}
	if _, err := NewSpace(t.TempDir()+"/missing", 1, zerolog.Nop()); err == nil {
		t.Fatal("NewSpace of a missing directory succeeded")
	}
}
