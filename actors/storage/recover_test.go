package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// tail is a WAL whose last file ends with two records, A then B, built once
// and copied for every damage done to it.
type tail struct {
	dir            string
	startB, endB   int64 // B's bounds in the last file
	withA, withAB  map[uint64]*GroupState
	withAC, withBC map[uint64]*GroupState // after C is appended following recovery
}

// buildTail writes the prefix (in a file of its own when files is 2), then A,
// then B.
func buildTail(t *testing.T, files int) *tail {
	t.Helper()
	tl := &tail{dir: t.TempDir()}
	w, _ := mustOpen(t, tl.dir, testOptions())
	mustUpdate(t, w, 7, ents(1, 2, 1), nil, nil)
	if files == 2 {
		mustCommit(t, w)
		if err := w.roll(); err != nil {
			t.Fatal(err)
		}
	}
	mustUpdate(t, w, 1, ents(1, 3, 1), hardState(1, 1, 0), nil)
	mustCommit(t, w)
	tl.startB = w.current().size
	mustUpdate(t, w, 1, ents(4, 5, 1), hardState(1, 1, 3), nil)
	mustCommit(t, w)
	tl.endB = w.current().size
	mustClose(t, w)
	if n := len(walFiles(t, tl.dir)); n != files {
		t.Fatalf("built %d files, want %d", n, files)
	}

	prefix := &GroupState{Entries: ents(1, 2, 1)}
	tl.withA = map[uint64]*GroupState{7: prefix, 1: {HardState: hardState(1, 1, 0), Entries: ents(1, 3, 1)}}
	tl.withAB = map[uint64]*GroupState{7: prefix, 1: {HardState: hardState(1, 1, 3), Entries: ents(1, 5, 1)}}
	c := &GroupState{HardState: hardState(4, 0, 0), Entries: ents(1, 1, 4)}
	tl.withAC = maps.Clone(tl.withA)
	tl.withAC[2] = c
	tl.withBC = maps.Clone(tl.withAB)
	tl.withBC[2] = c
	return tl
}

// damaged copies the WAL into a new directory and applies damage to the
// bytes of its last file.
func (tl *tail) damaged(t *testing.T, damage func([]byte) []byte) (dir, last string) {
	t.Helper()
	dir = t.TempDir()
	names := walFiles(t, tl.dir)
	for i, name := range names {
		b, err := os.ReadFile(filepath.Join(tl.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if i == len(names)-1 {
			b = damage(b)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, filepath.Join(dir, names[len(names)-1])
}

// recoverAndAppend opens a damaged WAL, checks what it recovered and the
// size of the last file, appends C, and checks that a second Open sees it.
func recoverAndAppend(t *testing.T, dir, last string, opts Options, want, wantAfterC map[uint64]*GroupState, wantSize int64) {
	t.Helper()
	w, got := mustOpen(t, dir, opts)
	requireStates(t, want, got)
	if size := fileSize(t, last); size != wantSize {
		t.Fatalf("last file is %d bytes on disk, want %d", size, wantSize)
	}
	mustUpdate(t, w, 2, ents(1, 1, 4), hardState(4, 0, 0), nil)
	mustCommit(t, w)
	mustClose(t, w)
	_, got = mustOpen(t, dir, opts)
	requireStates(t, wantAfterC, got)
}

func TestRecoverTornTail(t *testing.T) {
	for _, files := range []int{1, 2} {
		tl := buildTail(t, files)
		// Every length B could have been cut to by a crash, including
		// none of it.
		for off := tl.startB; off < tl.endB; off++ {
			dir, last := tl.damaged(t, func(b []byte) []byte { return b[:off] })
			recoverAndAppend(t, dir, last, testOptions(), tl.withA, tl.withAC, tl.startB)
		}
	}
}

// frame builds a record around an arbitrary payload, with a correct CRC.
func frame(payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

func TestRecoverCorruptTail(t *testing.T) {
	tl := buildTail(t, 2)
	s, e := int(tl.startB), int(tl.endB)
	flip := func(i int) func([]byte) []byte {
		return func(b []byte) []byte { b[i] ^= 0x5a; return b }
	}
	tests := []struct {
		name   string
		damage func([]byte) []byte
		keepB  bool
	}{
		{"payload first byte", flip(s + headerSize), false},
		{"payload middle byte", flip((s + headerSize + e) / 2), false},
		{"payload last byte", flip(e - 1), false},
		{"crc", flip(s + 4), false},
		{"length high byte", flip(s), false},
		{"length one longer", func(b []byte) []byte { b[s+3]++; return b }, false},
		{"length one shorter", func(b []byte) []byte { b[s+3]--; return b }, false},
		{"length zero", func(b []byte) []byte { copy(b[s:], []byte{0, 0, 0, 0}); return b }, false},
		{"valid CRC, unknown record type", func(b []byte) []byte { return append(b[:s], frame([]byte{9, 1, 0, 0})...) }, false},
		{"valid CRC, truncated entry", func(b []byte) []byte { return append(b[:s], frame([]byte{recordUpdate, 1, 1, 50, 1})...) }, false},
		{"zeros after the last record", func(b []byte) []byte { return append(b, make([]byte, 100)...) }, true},
		{"a torn header after the last record", func(b []byte) []byte { return append(b, 0, 0, 1) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, last := tl.damaged(t, tt.damage)
			var logs bytes.Buffer
			opts := testOptions()
			opts.Log = zerolog.New(&logs)
			want, wantC, wantSize := tl.withA, tl.withAC, tl.startB
			if tt.keepB {
				want, wantC, wantSize = tl.withAB, tl.withBC, tl.endB
			}
			recoverAndAppend(t, dir, last, opts, want, wantC, wantSize)
			requireTruncationLogged(t, logs.String(), filepath.Base(last), wantSize)
		})
	}
}

// requireTruncationLogged checks that the first Open warned once, naming the
// file and the offset.
func requireTruncationLogged(t *testing.T, logs, file string, offset int64) {
	t.Helper()
	var warnings int
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var ev struct {
			Level  string `json:"level"`
			File   string `json:"file"`
			Offset int64  `json:"offset"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if ev.Level != "warn" {
			continue
		}
		warnings++
		if ev.File != file || ev.Offset != offset {
			t.Errorf("warning names %s at %d, want %s at %d", ev.File, ev.Offset, file, offset)
		}
	}
	if warnings != 1 {
		t.Errorf("%d warnings logged, want 1:\n%s", warnings, logs)
	}
}

func TestRecoverCorruptionBeforeTheLastFileIsAnError(t *testing.T) {
	tl := buildTail(t, 2)
	tests := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"flipped payload byte", func(b []byte) []byte { b[headerSize+2] ^= 1; return b }},
		{"torn last record", func(b []byte) []byte { return b[:len(b)-1] }},
		{"garbage after the last record", func(b []byte) []byte { return append(b, 1, 2, 3) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := tl.damaged(t, func(b []byte) []byte { return b })
			first := filepath.Join(dir, walFiles(t, dir)[0])
			b, err := os.ReadFile(first)
			if err != nil {
				t.Fatal(err)
			}
			b = tt.damage(b)
			if err := os.WriteFile(first, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err = Open(dir, testOptions())
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Open: got %v, want a *CorruptError", err)
			}
			if ce.File != filepath.Base(first) {
				t.Errorf("error names %s, want %s", ce.File, filepath.Base(first))
			}
			if size := fileSize(t, first); size != int64(len(b)) {
				t.Errorf("the damaged file was changed: %d bytes, want %d", size, len(b))
			}
		})
	}
}

func TestRecoverMissingFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentBytes = 1 // one record per file
	w, _ := mustOpen(t, dir, opts)
	for i := uint64(1); i <= 3; i++ {
		mustUpdate(t, w, 1, ents(i, i, 1), nil, nil)
	}
	mustClose(t, w)
	names := walFiles(t, dir)
	if len(names) != 3 {
		t.Fatalf("%d files, want 3", len(names))
	}
	if err := os.Remove(filepath.Join(dir, names[1])); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(dir, opts); err == nil || !strings.Contains(err.Error(), names[1]) {
		t.Fatalf("Open: got %v, want an error naming %s", err, names[1])
	}
}
