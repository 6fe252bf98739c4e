package partition

import (
	"bytes"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

func TestDecodeEntry(t *testing.T) {
	batch := mkBatch(t, spec{records: 3, valueSize: 10})
	SetBaseOffset(batch, maxRawBatchOffset-1)
	start := logStartEntry(42, entryID{}, false)
	expire := expireProducersEntry(-5)
	tests := []struct {
		name    string
		data    []byte
		typ     byte
		body    []byte
		wantErr bool
	}{
		{name: "raw batch", data: batch, typ: entryBatch, body: batch},
		{name: "batch with its type byte", data: batchEntry(batch), typ: entryBatch, body: batch},
		{name: "log start", data: start, typ: entryLogStart, body: start[1:]},
		{name: "empty", data: nil, wantErr: true},
		{name: "unknown type", data: []byte{3, 0, 0}, wantErr: true},
		{name: "log start of a wrong size", data: []byte{entryLogStart, 0, 0}, wantErr: true},
		{name: "producer expiry", data: expire, typ: entryExpireProducers, body: expire[1:]},
		{name: "producer expiry of a wrong size", data: append(expire, 0), wantErr: true},
		{name: "a type from a later version", data: []byte{entryExpireProducers + 1, 0, 0, 0, 0, 0, 0, 0, 0}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, body, err := decodeEntry(tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if typ != tt.typ || !bytes.Equal(body, tt.body) {
				t.Fatalf("got type %d, %d-byte body; want type %d, %d bytes", typ, len(body), tt.typ, len(tt.body))
			}
		})
	}
}

// TestRawAndTypedBatchesApply: a replica applies batches proposed without
// a type byte (what leaders propose) and with one (what the cold log serves
// and what older leaders wrote to their WALs) alike.
func TestRawAndTypedBatchesApply(t *testing.T) {
	r := newReplica(t, t.TempDir())
	r.empty(1)
	var want [][]byte
	for i := range 6 {
		b := mkBatch(t, spec{records: 2, valueSize: 50, baseTs: int64(i)})
		SetBaseOffset(b, r.m.log.LogEnd())
		SetPartitionLeaderEpoch(b, 1)
		data := b
		if i%2 == 1 {
			data = batchEntry(b)
		}
		r.step(&pb.Entry{Index: new(r.next()), Term: new(uint64(1)), Type: pb.EntryNormal.Enum(), Data: data})
		want = append(want, b)
	}
	got, err := r.m.log.Read(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Join(want, nil)) {
		t.Fatalf("log holds %d bytes, want the %d bytes of the batches applied", len(got), len(bytes.Join(want, nil)))
	}
}
