package storage

import (
	"fmt"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

// step is one append to the WAL: an update, or a checkpoint when ckpt is set.
type step struct {
	group   uint64
	entries []*pb.Entry
	hs      *pb.HardState
	snap    *pb.Snapshot
	ckpt    bool
}

func concat(parts ...[]*pb.Entry) []*pb.Entry {
	var out []*pb.Entry
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestReplayRules(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  *GroupState
	}{
		{
			name:  "appends",
			steps: []step{{entries: ents(1, 3, 1)}, {entries: ents(4, 6, 1), hs: hardState(1, 1, 3)}},
			want:  &GroupState{HardState: hardState(1, 1, 3), Entries: ents(1, 6, 1)},
		},
		{
			name:  "overwrite in the middle",
			steps: []step{{entries: ents(1, 10, 1)}, {entries: ents(6, 8, 2)}},
			want:  &GroupState{Entries: concat(ents(1, 5, 1), ents(6, 8, 2))},
		},
		{
			name:  "overwrite from the first entry",
			steps: []step{{entries: ents(1, 5, 1)}, {entries: ents(1, 2, 2)}},
			want:  &GroupState{Entries: ents(1, 2, 2)},
		},
		{
			name:  "later hard state wins, an update without one keeps it",
			steps: []step{{hs: hardState(1, 1, 0)}, {hs: hardState(2, 3, 4)}, {entries: ents(1, 1, 2)}},
			want:  &GroupState{HardState: hardState(2, 3, 4), Entries: ents(1, 1, 2)},
		},
		{
			name:  "checkpoint at 50 drops entries up to 50",
			steps: []step{{entries: ents(1, 100, 1)}, {snap: snapshot(50, 1), ckpt: true}},
			want:  &GroupState{Snapshot: snapshot(50, 1), Entries: ents(51, 100, 1)},
		},
		{
			name: "checkpoint then overwrite",
			steps: []step{
				{entries: ents(1, 60, 1)}, {snap: snapshot(50, 1), ckpt: true}, {entries: ents(55, 58, 2)},
			},
			want: &GroupState{Snapshot: snapshot(50, 1), Entries: concat(ents(51, 54, 1), ents(55, 58, 2))},
		},
		{
			name: "older checkpoint is ignored, its hard state is not",
			steps: []step{
				{entries: ents(1, 100, 1), hs: hardState(1, 1, 90)},
				{snap: snapshot(50, 1), ckpt: true},
				{snap: snapshot(40, 1), ckpt: true},
			},
			want: &GroupState{HardState: hardState(1, 1, 90), Snapshot: snapshot(50, 1), Entries: ents(51, 100, 1)},
		},
		{
			name: "leader snapshot replaces the log",
			steps: []step{
				{entries: ents(1, 20, 1)},
				{snap: snapshot(30, 2), entries: ents(31, 32, 2), hs: hardState(2, 2, 30)},
			},
			want: &GroupState{HardState: hardState(2, 2, 30), Snapshot: snapshot(30, 2), Entries: ents(31, 32, 2), Replaced: ents(1, 20, 1)},
		},
		{
			name:  "leader snapshot drops a conflicting tail above it",
			steps: []step{{entries: ents(1, 40, 1)}, {snap: snapshot(30, 3)}},
			want:  &GroupState{Snapshot: snapshot(30, 3), Replaced: ents(1, 40, 1)},
		},
		{
			name: "a later checkpoint ends what a leader snapshot replaced",
			steps: []step{
				{entries: ents(1, 20, 1)}, {snap: snapshot(30, 2)}, {entries: ents(31, 40, 2)},
				{snap: snapshot(35, 2), ckpt: true},
			},
			want: &GroupState{Snapshot: snapshot(35, 2), Entries: ents(36, 40, 2)},
		},
		{
			name: "an older checkpoint leaves what a leader snapshot replaced",
			steps: []step{
				{entries: ents(1, 20, 1)}, {snap: snapshot(30, 2)}, {snap: snapshot(10, 1), ckpt: true},
			},
			want: &GroupState{Snapshot: snapshot(30, 2), Replaced: ents(1, 20, 1)},
		},
		{
			name: "entries the snapshot covers are dropped",
			steps: []step{
				{snap: snapshot(10, 1), ckpt: true}, {entries: ents(8, 12, 1)},
			},
			want: &GroupState{Snapshot: snapshot(10, 1), Entries: ents(11, 12, 1)},
		},
	}
	for _, tt := range tests {
		for _, segBytes := range []int64{1 << 20, 1} { // one file; a file per record
			t.Run(fmt.Sprintf("%s/segment_bytes=%d", tt.name, segBytes), func(t *testing.T) {
				dir := t.TempDir()
				opts := testOptions()
				opts.SegmentBytes = segBytes
				w, _ := mustOpen(t, dir, opts)
				for _, s := range tt.steps {
					var err error
					if s.ckpt {
						err = w.AppendCheckpoint(s.group, s.snap)
					} else {
						err = w.AppendUpdate(s.group, s.entries, s.hs, s.snap)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				mustClose(t, w)
				_, got := mustOpen(t, dir, opts)
				requireStates(t, map[uint64]*GroupState{0: tt.want}, got)
			})
		}
	}
}

func TestAppendUpdateRejectsGaps(t *testing.T) {
	w, _ := mustOpen(t, t.TempDir(), testOptions())
	defer w.Close()
	err := w.AppendUpdate(1, []*pb.Entry{ent(1, 1), ent(3, 1)}, nil, nil)
	if err == nil {
		t.Fatal("entries 1, 3 were accepted")
	}
	// Not a WAL failure: the next update goes through.
	mustUpdate(t, w, 1, ents(1, 2, 1), nil, nil)
	mustCommit(t, w)
}

func TestSegmentNames(t *testing.T) {
	tests := []struct {
		name string
		seq  uint64
		ok   bool
	}{
		{"00000000000000000001.wal", 1, true},
		{"00000000000000001234.wal", 1234, true},
		{"00000000000000000000.wal", 0, false},
		{"0000000000000000001.wal", 0, false},
		{"00000000000000000001.wal.tmp", 0, false},
		{"0000000000000000000x.wal", 0, false},
	}
	for _, tt := range tests {
		seq, ok := parseSegmentName(tt.name)
		if seq != tt.seq || ok != tt.ok {
			t.Errorf("parseSegmentName(%q) = %d, %v; want %d, %v", tt.name, seq, ok, tt.seq, tt.ok)
		}
	}
	if got := segmentName(1); got != "00000000000000000001.wal" {
		t.Errorf("segmentName(1) = %q", got)
	}
}
