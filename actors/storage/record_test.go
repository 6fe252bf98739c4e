package storage

import (
	"bytes"
	"math"
	"path/filepath"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// bigEnt is an entry with size bytes of data.
func bigEnt(index, term uint64, size int) *pb.Entry {
	e := ent(index, term)
	e.Data = bytes.Repeat([]byte{byte(index)}, size)
	return e
}

// join is the record encodeRecord describes: rec with the splices inserted.
func join(rec []byte, splices []splice) []byte {
	var out []byte
	from := 0
	for _, s := range splices {
		out = append(append(out, rec[from:s.at]...), s.data...)
		from = s.at
	}
	return append(out, rec[from:]...)
}

// TestEncodeRecordSplices: a record encoded with its large entries left out
// is, once they are put back, byte for byte the record appendRecord makes,
// so the format on disk does not change.
func TestEncodeRecordSplices(t *testing.T) {
	unknown := bigEnt(9, 2, 100)
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 15, protowire.VarintType), 7))
	empty := ent(10, 2)
	empty.Data = nil
	tests := []struct {
		name        string
		entries     []*pb.Entry
		hs          *pb.HardState
		snap        *pb.Snapshot
		large       int
		wantSplices int
	}{
		{name: "small entries stay in the buffer", entries: ents(1, 3, 1), hs: hardState(1, 1, 1), large: 1000},
		{name: "large ones are spliced", entries: []*pb.Entry{bigEnt(1, 1, 1000), bigEnt(2, 1, 5000)}, large: 1000, wantSplices: 2},
		{name: "mixed, with hard state and snapshot", entries: []*pb.Entry{ent(1, 1), bigEnt(2, 1, 3000), ent(3, 1), bigEnt(4, 1, 999), bigEnt(5, 1, 1000)}, hs: hardState(1, 1, 4), snap: snapshot(0, 0), large: 1000, wantSplices: 2},
		{name: "every entry with data", entries: []*pb.Entry{ent(1, 1), empty}, large: 1, wantSplices: 1},
		{name: "an entry with fields the head would lose is copied", entries: []*pb.Entry{unknown, bigEnt(10, 2, 100)}, large: 50, wantSplices: 1},
		{name: "nothing spliced", entries: []*pb.Entry{bigEnt(1, 1, 1<<17)}, large: math.MaxInt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := appendRecord(nil, recordUpdate, 7, tt.entries, tt.hs, tt.snap)
			if err != nil {
				t.Fatal(err)
			}
			prefix := []byte("earlier records")
			rec, splices, err := encodeRecord(bytes.Clone(prefix), []splice{{at: 3, data: []byte("x")}}, tt.large, recordUpdate, 7, tt.entries, tt.hs, tt.snap)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rec[:len(prefix)], prefix) || len(splices) == 0 || splices[0].at != 3 {
				t.Fatal("encodeRecord changed what dst and splices held before")
			}
			splices = splices[1:]
			if len(splices) != tt.wantSplices {
				t.Fatalf("%d splices, want %d", len(splices), tt.wantSplices)
			}
			for i := range splices {
				splices[i].at -= len(prefix)
			}
			if got := join(rec[len(prefix):], splices); !bytes.Equal(got, want) {
				t.Fatalf("joined record differs from appendRecord's:\ngot  %x\nwant %x", got, want)
			}
		})
	}
}

// TestLargeEntriesRoundTrip: entries written past the buffer (at least
// directWriteBytes), mixed with small ones, across file rolls and commits,
// come back from the WAL as they went in, and the files hold exactly the
// bytes the WAL counted.
func TestLargeEntriesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentBytes = 3 * directWriteBytes
	w, _ := mustOpen(t, dir, opts)
	var all []*pb.Entry
	sizes := []int{10, directWriteBytes, 3, directWriteBytes + 1, 2 * directWriteBytes, 100, directWriteBytes - 1}
	index := uint64(1)
	for round := range 4 {
		var batch []*pb.Entry
		for _, size := range sizes[round:] {
			batch = append(batch, bigEnt(index, 1, size))
			index++
		}
		mustUpdate(t, w, 1, batch, hardState(1, 1, index-1), nil)
		mustUpdate(t, w, 2, []*pb.Entry{bigEnt(uint64(round+1), 1, directWriteBytes)}, nil, nil)
		all = append(all, batch...)
		if round%2 == 1 {
			mustCommit(t, w)
		}
	}
	total := w.total
	mustClose(t, w)
	var onDisk int64
	for _, name := range walFiles(t, dir) {
		onDisk += fileSize(t, filepath.Join(dir, name))
	}
	if onDisk != total {
		t.Fatalf("files hold %d bytes, the WAL counted %d", onDisk, total)
	}
	w, states := mustOpen(t, dir, opts)
	defer mustClose(t, w)
	requireState(t, 1, &GroupState{HardState: hardState(1, 1, index-1), Entries: all}, states[1])
	if got := len(states[2].Entries); got != 4 {
		t.Fatalf("group 2 has %d entries, want 4", got)
	}
	if len(walFiles(t, dir)) < 2 {
		t.Fatal("the WAL never rolled: the test does not cover large entries across files")
	}
}
