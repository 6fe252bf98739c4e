package partition

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStartWriteback(t *testing.T) {
	dir := t.TempDir()
	written, err := os.Create(filepath.Join(dir, "written.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer written.Close()
	if _, err := written.Write(make([]byte, 3*4096+17)); err != nil {
		t.Fatal(err)
	}
	closed, err := os.Create(filepath.Join(dir, "closed.log"))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()

	for _, tc := range []struct {
		name    string
		f       *os.File
		off, n  int64
		wantErr bool
	}{
		{"written range", written, 4096, 2*4096 + 17, false},
		{"range past the end", written, 1 << 20, 4096, false},
		{"closed file", closed, 0, 4096, true},
		{"pipe", w, 0, 4096, true}, // ESPIPE: the error comes back, it is not dropped
		// A range that fills no page is left to the fsync: not even a
		// closed file is touched.
		{"inside one page", closed, 100, 3000, false},
		{"the rest of a page", closed, 4000, 96, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := startWriteback(tc.f, tc.off, tc.n)
			if (err != nil) != tc.wantErr {
				t.Fatalf("startWriteback = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestWritebackRange(t *testing.T) {
	for _, tc := range []struct {
		name             string
		off, n, from, to int64
	}{
		{"inside one page", 100, 3000, 0, 0},
		{"fills the page it starts in", 100, 4000, 0, 4096},
		{"from the page the last call left", 4100, 9000, 4096, 12288},
		{"a large batch takes its last page too", 4100, wholeTailBytes, 4096, 4100 + wholeTailBytes},
		{"page-aligned", 8192, 8192, 8192, 16384},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if from, to := writebackRange(tc.off, tc.n); from != tc.from || to != tc.to {
				t.Fatalf("writebackRange(%d, %d) = [%d, %d), want [%d, %d)", tc.off, tc.n, from, to, tc.from, tc.to)
			}
		})
	}
}
