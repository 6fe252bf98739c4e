package storage

import (
	"fmt"
	"slices"
	"testing"
)

// TestForget: a tombstoned group disappears from recovery and stops holding
// old files back, while the other groups keep theirs.
func TestForget(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentBytes = 1 << 10
	w, _ := mustOpen(t, dir, opts)
	// Group 5 writes into the first files; group 6 keeps writing after and
	// checkpoints, so only group 5 can hold the oldest files back.
	for i := uint64(1); i <= 40; i++ {
		mustUpdate(t, w, 5, ents(i, i, 1), hardState(1, 1, i), nil)
		mustCommit(t, w)
	}
	outrun(t, w)
	removeCovered(t, w)
	before := len(walFiles(t, dir))
	if before < 3 {
		t.Fatalf("want several files before forgetting, have %d", before)
	}
	if got := w.holdingBack(); len(got) != 1 || got[0] != 5 {
		t.Fatalf("holding back: %v, want [5]", got)
	}

	if err := w.AppendForget(5); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, w)
	mustUpdate(t, w, 6, ents(62, 62, 1), hardState(1, 1, 62), nil)
	mustCommit(t, w)
	removeCovered(t, w)
	after := len(walFiles(t, dir))
	if after >= before {
		t.Fatalf("files: %d before forgetting group 5, %d after", before, after)
	}
	mustClose(t, w)

	w, states := mustOpen(t, dir, opts)
	defer mustClose(t, w)
	if _, ok := states[5]; ok {
		t.Fatalf("forgotten group 5 recovered: %s", describe(states[5]))
	}
	st := states[6]
	if st == nil || st.Snapshot.GetMetadata().GetIndex() != 60 || len(st.Entries) != 2 || st.HardState.GetCommit() != 62 {
		t.Fatalf("group 6 after recovery: %s", describe(st))
	}
}

// TestForgottenDroppedWithTheirFiles: the WAL remembers a tombstone only
// while files older than the tombstone's are left for it to release; with
// every deleted replica remembered forever, the map would grow without
// bound. Recovery still forgets the group while the tombstone's file is on
// disk, and has nothing of it once that file is gone.
func TestForgottenDroppedWithTheirFiles(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentBytes = 1 << 10
	w, _ := mustOpen(t, dir, opts)
	for i := uint64(1); i <= 40; i++ {
		mustUpdate(t, w, 5, ents(i, i, 1), hardState(1, 1, i), nil)
		mustCommit(t, w)
	}
	if err := w.AppendForget(5); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, w)
	tombstone := w.current().seq
	if err := w.roll(); err != nil {
		t.Fatal(err)
	}
	outrun(t, w)
	removeCovered(t, w)
	if w.segs[0].seq <= tombstone {
		t.Fatalf("the tombstone's file %d still held back by %v", tombstone, w.holdingBack())
	}
	if len(w.forgotten) != 0 {
		t.Fatalf("forgotten %v after the tombstone's file %d went", w.forgotten, tombstone)
	}
	mustClose(t, w)
	w, states := mustOpen(t, dir, opts)
	defer mustClose(t, w)
	if _, ok := states[5]; ok {
		t.Fatalf("forgotten group 5 recovered: %s", describe(states[5]))
	}
}

// TestOverwrittenEntriesDoNotHoldFiles: entries a new leader overwrote are
// covered by a checkpoint at the group's real last index, before and after
// a restart.
func TestOverwrittenEntriesDoNotHoldFiles(t *testing.T) {
	for _, reopen := range []bool{false, true} {
		dir := t.TempDir()
		opts := testOptions()
		opts.SegmentBytes = 1 << 10
		w, _ := mustOpen(t, dir, opts)
		for i := uint64(1); i <= 20; i++ {
			mustUpdate(t, w, 1, ents(i, i, 1), hardState(1, 1, 10), nil)
			mustCommit(t, w)
		}
		if err := w.roll(); err != nil {
			t.Fatal(err)
		}
		// A new leader replaced 11.. with its own, shorter log.
		mustUpdate(t, w, 1, ents(11, 12, 2), hardState(2, 2, 12), nil)
		mustCommit(t, w)
		if reopen {
			mustClose(t, w)
			w, _ = mustOpen(t, dir, opts)
		}
		if err := w.AppendCheckpoint(1, snapshot(12, 2)); err != nil {
			t.Fatal(err)
		}
		mustCommit(t, w)
		if err := w.roll(); err != nil {
			t.Fatal(err)
		}
		mustUpdate(t, w, 1, ents(13, 13, 2), hardState(2, 2, 13), nil)
		mustCommit(t, w)
		if n := removeCovered(t, w); n == 0 {
			t.Fatalf("reopen=%v: deleted %d files; held back by %v", reopen, n, w.holdingBack())
		}
		mustClose(t, w)
		w, states := mustOpen(t, dir, opts)
		st := states[1]
		if st.Snapshot.GetMetadata().GetIndex() != 12 || len(st.Entries) != 1 || st.HardState.GetTerm() != 2 {
			t.Fatalf("reopen=%v: recovered %s", reopen, describe(st))
		}
		mustClose(t, w)
	}
}

// TestForgetThenWriteAgain: a group forgotten and then written again (its
// replica moved back to this node) is tracked afresh. Its new records,
// written in the same commit as the tombstone and in the tombstone's file,
// hold that file back until a checkpoint of the new replica covers them,
// and that checkpoint carries the new replica's hard state, so that the
// group recovers with its entries and hard state after every older file
// is gone.
func TestForgetThenWriteAgain(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentBytes = 1 << 10
	w, _ := mustOpen(t, dir, opts)
	// The old replica of group 5, with a checkpoint far ahead of what the
	// new one will write.
	for i := uint64(1); i <= 40; i++ {
		mustUpdate(t, w, 5, ents(i, i, 1), hardState(1, 1, i), nil)
		mustCommit(t, w)
	}
	if err := w.AppendCheckpoint(5, snapshot(40, 1)); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, w)
	// The tombstone, and in the same commit the new replica's first
	// entries and hard state (term 3, voted for 2).
	if err := w.AppendForget(5); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, w, 5, ents(1, 3, 3), hardState(3, 2, 3), nil)
	mustCommit(t, w)
	// Group 6 fills later files and checkpoints, so only group 5 can hold
	// files back.
	outrun(t, w)
	removeCovered(t, w)
	if got := w.holdingBack(); len(got) != 1 || got[0] != 5 {
		t.Fatalf("holding back: %v, want [5] (the new replica's uncovered entries)", got)
	}
	// The new replica checkpoints: now its file may go.
	if err := w.AppendCheckpoint(5, snapshot(3, 3)); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, w)
	mustUpdate(t, w, 6, ents(62, 62, 1), hardState(1, 1, 62), nil)
	mustCommit(t, w)
	removeCovered(t, w)
	if got := w.holdingBack(); len(got) != 0 {
		t.Fatalf("holding back after the new replica's checkpoint: %v", got)
	}
	mustClose(t, w)

	w, states := mustOpen(t, dir, opts)
	defer mustClose(t, w)
	st := states[5]
	if st == nil || st.Snapshot.GetMetadata().GetIndex() != 3 || st.HardState.GetTerm() != 3 || st.HardState.GetVote() != 2 {
		t.Fatalf("group 5 after recovery: %s; want the new replica's checkpoint at 3 with term 3, vote 2", describe(st))
	}
}

// outrun has group 6 write 60 entries, one commit each, checkpoint past
// them and write one more: it fills later files and holds none back.
func outrun(t *testing.T, w *WAL) {
	t.Helper()
	for i := uint64(1); i <= 60; i++ {
		mustUpdate(t, w, 6, ents(i, i, 1), hardState(1, 1, i), nil)
		mustCommit(t, w)
	}
	if err := w.AppendCheckpoint(6, snapshot(60, 1)); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, w)
	mustUpdate(t, w, 6, ents(61, 61, 1), hardState(1, 1, 61), nil)
	mustCommit(t, w)
}

// TestLeaderSnapshotReleasesReplacedEntries: a follower's divergent entries
// 1..100 (file 1) are replaced by a leader's snapshot at 50 that nothing
// follows (the leader is idle). Raft's restore drops the whole log, so once
// a checkpoint at 50 is durable in a later file, file 1 goes; until then it
// stays, since recovery hands its references to the keeper as Replaced. A
// snapshot that replaces nothing (not above the group's checkpoint) lowers
// nothing. The same holds after a restart, from replay's bookkeeping.
func TestLeaderSnapshotReleasesReplacedEntries(t *testing.T) {
	tests := []struct {
		name        string
		ckpt        uint64 // a checkpoint before the snapshot; 0: none
		snap, after uint64 // the leader's snapshot, and the checkpoint after it
		released    bool
	}{
		{name: "snapshot replaces the log", snap: 50, after: 50, released: true},
		{name: "stale snapshot replaces nothing", ckpt: 60, snap: 50, after: 60, released: false},
	}
	for _, tt := range tests {
		for _, reopen := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reopen=%v", tt.name, reopen), func(t *testing.T) {
				dir := t.TempDir()
				opts := testOptions()
				w, _ := mustOpen(t, dir, opts)
				mustUpdate(t, w, 1, ents(1, 100, 1), hardState(1, 1, 10), nil)
				mustCommit(t, w)
				if err := w.roll(); err != nil {
					t.Fatal(err)
				}
				if tt.ckpt > 0 {
					if err := w.AppendCheckpoint(1, snapshot(tt.ckpt, 1)); err != nil {
						t.Fatal(err)
					}
				}
				mustUpdate(t, w, 1, nil, hardState(2, 2, tt.snap), snapshot(tt.snap, 2))
				mustCommit(t, w)
				if err := w.roll(); err != nil {
					t.Fatal(err)
				}
				if removeCovered(t, w) != 0 {
					t.Fatalf("a file went before a checkpoint at or above the snapshot: %v", walFiles(t, dir))
				}
				if reopen {
					mustClose(t, w)
					var states map[uint64]*GroupState
					w, states = mustOpen(t, dir, opts)
					if tt.ckpt == 0 && len(states[1].Replaced) != 100 {
						t.Fatalf("recovered %s, want the 100 replaced entries", describe(states[1]))
					}
				}
				if err := w.AppendCheckpoint(1, snapshot(tt.after, 2)); err != nil {
					t.Fatal(err)
				}
				mustCommit(t, w)
				if err := w.roll(); err != nil {
					t.Fatal(err)
				}
				removeCovered(t, w)
				if got := slices.Contains(walFiles(t, dir), segmentName(1)); got == tt.released {
					t.Fatalf("file 1 on disk: %v, want %v (held back by %v)", got, !tt.released, w.holdingBack())
				}
				mustClose(t, w)
				w, states := mustOpen(t, dir, opts)
				if n := len(states[1].Entries); !tt.released && n != 40 {
					t.Fatalf("recovered %s, want entries 61-100", describe(states[1]))
				}
				mustClose(t, w)
			})
		}
	}
}
