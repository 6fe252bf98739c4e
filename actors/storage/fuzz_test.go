package storage

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// validWAL returns the bytes of a small WAL file with every kind of record.
func validWAL(f *testing.F) []byte {
	f.Helper()
	dir := f.TempDir()
	w, _ := mustOpen(f, dir, testOptions())
	mustUpdate(f, w, 1, ents(1, 5, 1), hardState(1, 1, 0), nil)
	mustUpdate(f, w, 2, ents(1, 2, 1), nil, nil)
	mustUpdate(f, w, 1, ents(4, 6, 2), hardState(2, 1, 3), nil)
	if err := w.AppendCheckpoint(1, snapshot(4, 2)); err != nil {
		f.Fatal(err)
	}
	mustUpdate(f, w, 2, ents(8, 9, 3), hardState(3, 2, 2), snapshot(7, 3))
	mustClose(f, w)
	b, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// unframe turns a WAL file into the fuzzer's "payloads" form: each payload
// preceded by its uvarint length.
func unframe(file []byte) []byte {
	var out []byte
	for len(file) >= headerSize {
		n := int(binary.BigEndian.Uint32(file))
		payload := file[headerSize : headerSize+n]
		out = binary.AppendUvarint(out, uint64(n))
		out = append(out, payload...)
		file = file[headerSize+n:]
	}
	return out
}

// reframe is the inverse of unframe for arbitrary input: it frames every
// payload with its correct length and CRC, so that the fuzzer gets past the
// CRC check and exercises decoding and replay. A last, short payload is
// framed as it is.
func reframe(data []byte) []byte {
	var out []byte
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		if k <= 0 {
			break
		}
		data = data[k:]
		payload := data[:min(n, uint64(len(data)))]
		out = append(out, frame(payload)...)
		data = data[len(payload):]
	}
	return out
}

// FuzzRecover writes arbitrary bytes as the only WAL file: raw, or, when
// payloads is set, read as a sequence of length-prefixed payloads framed
// with valid CRCs. Being the last file, any damage in it is a tail to cut:
// Open must succeed, leave the file ending at a record boundary with
// well-formed group states, and a second Open must find exactly the same.
func FuzzRecover(f *testing.F) {
	valid := validWAL(f)
	if !bytes.Equal(reframe(unframe(valid)), valid) {
		f.Fatal("reframe(unframe(file)) is not the file")
	}
	f.Add(valid, false)
	f.Add(valid[:len(valid)-3], false)
	f.Add(valid[:len(valid)/2], false)
	f.Add(append(append([]byte{}, valid...), 0, 0, 0, 9, 1, 2, 3, 4), false)
	flipped := append([]byte{}, valid...)
	flipped[20] ^= 0xff
	f.Add(flipped, false)
	f.Add([]byte{}, false)
	f.Add(unframe(valid), true)
	f.Add([]byte{4, recordCheckpoint, 1, 0, 0}, true)
	f.Fuzz(func(t *testing.T, data []byte, payloads bool) {
		if payloads {
			data = reframe(data)
		}
		dir := t.TempDir()
		path := filepath.Join(dir, segmentName(1))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		w, states, err := Open(dir, testOptions())
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		size := fileSize(t, path)
		if size > int64(len(data)) || w.total != size {
			t.Fatalf("file is %d bytes, WAL counts %d, input was %d", size, w.total, len(data))
		}
		for g, st := range states {
			prev := st.Snapshot.GetMetadata().GetIndex()
			for _, e := range st.Entries {
				if e.GetIndex() <= prev {
					t.Fatalf("group %d: entries out of order or under the snapshot: %s", g, describe(st))
				}
				prev = e.GetIndex()
			}
		}
		mustClose(t, w)
		_, again := mustOpen(t, dir, testOptions())
		requireStates(t, states, again)
		if got := fileSize(t, path); got != size {
			t.Fatalf("the second Open changed the file: %d -> %d bytes", size, got)
		}
	})
}
