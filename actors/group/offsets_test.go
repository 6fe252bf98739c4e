package group

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestExpiredOffsets(t *testing.T) {
	const cutoff = 1_000_000
	meta := func(emptySince int64, members int) *kmsg.GroupMetadataValue {
		v := kmsg.NewGroupMetadataValue()
		v.ProtocolType, v.CurrentStateTimestamp = "consumer", emptySince
		for range members {
			v.Members = append(v.Members, kmsg.NewGroupMetadataValueMember())
		}
		return &v
	}
	committedAt := func(ts int64) kmsg.OffsetCommitValue {
		v := kmsg.NewOffsetCommitValue()
		v.Offset, v.CommitTimestamp = 5, ts
		return v
	}
	tp0, tp1 := TopicPartition{"t", 0}, TopicPartition{"t", 1}
	m := NewMachine(MachineOptions{Tick: 50 * time.Millisecond})
	m.store = store{
		// Empty long enough: everything goes, the group too.
		"old-empty": {meta: meta(cutoff-1, 0), offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(cutoff + 5)}},
		// Empty, but not for long enough.
		"new-empty": {meta: meta(cutoff+1, 0), offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(0)}},
		// Standalone consumers: per offset, by commit time.
		"simple": {offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(cutoff - 1), tp1: committedAt(cutoff)}},
		// Stored long ago, but live with members now.
		"active": {meta: meta(cutoff-100, 1), offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(0)}},
	}
	m.groups = map[string]*group{"active": {name: "active", state: stateStable, members: map[string]*member{"m": {}}}}
	// A commit in flight: its group waits for the next round.
	m.store["committing"] = &stored{offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(0)}}
	m.beginCommit("committing", map[TopicPartition]int16{tp1: -1})

	w := m.expired(cutoff)
	if err := m.store.applyRecords(w.b); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.store["old-empty"]; ok {
		t.Error("a group empty for longer than the retention was kept")
	}
	if g := m.store["new-empty"]; g == nil || len(g.offsets) != 1 {
		t.Error("a recently emptied group lost its offsets")
	}
	if g := m.store["simple"]; g == nil || len(g.offsets) != 1 || g.offsets[tp1].Offset != 5 {
		t.Errorf("standalone offsets after expiry: %+v, want only t/1", g)
	}
	if g := m.store["active"]; g == nil || len(g.offsets) != 1 {
		t.Error("an active group lost its offsets")
	}
	if g := m.store["committing"]; g == nil || len(g.offsets) != 1 {
		t.Error("a group with a commit in flight lost its offsets")
	}
	if w := m.expired(cutoff); len(w.b) != 0 {
		t.Errorf("a second pass found %d more bytes to expire", len(w.b))
	}
	// Once the commit is answered, the group's old offset goes.
	m.endCommit("committing", map[TopicPartition]int16{tp1: -1})
	if err := m.store.applyRecords(m.expired(cutoff).b); err != nil {
		t.Fatal(err)
	}
	if g := m.store["committing"]; g != nil && len(g.offsets) != 0 {
		t.Errorf("after the commit was answered: %+v, want its expired offset gone", g)
	}
}

// TestCommitCheck follows Kafka's ClassicGroup.validateOffsetCommit: simple
// commits to a group without members, then membership, then the
// generation, and REBALANCE_IN_PROGRESS only for a valid commit while the
// group completes a rebalance.
func TestCommitCheck(t *testing.T) {
	inst := "i1"
	completing := newGroup("completing")
	completing.state, completing.generation = stateCompletingRebalance, 5
	completing.members["m2"] = &member{id: "m2", instance: &inst}
	completing.static[inst] = "m2"
	stable := newGroup("stable")
	stable.state, stable.generation = stateStable, 5
	stable.members["m2"] = &member{id: "m2"}
	empty := newGroup("empty")
	empty.state, empty.generation = stateEmpty, 3
	for _, tc := range []struct {
		name     string
		g        *group
		member   string
		gen      int32
		instance *string
		want     *kerr.Error
	}{
		{"simple commit, empty group", empty, "", -1, nil, nil},
		{"simple commit naming a member, empty group", empty, "x", -1, nil, nil},
		{"a generation, empty group", empty, "x", 3, nil, kerr.UnknownMemberID},
		{"anonymous commit, live group", stable, "", -1, nil, kerr.UnknownMemberID},
		{"member of the generation", stable, "m2", 5, nil, nil},
		{"stale generation", stable, "m2", 4, nil, kerr.IllegalGeneration},
		{"valid commit while completing a rebalance", completing, "m2", 5, &inst, kerr.RebalanceInProgress},
		{"stale generation while completing a rebalance", completing, "m2", 4, nil, kerr.IllegalGeneration},
		{"unknown member while completing a rebalance", completing, "zombie", 5, nil, kerr.UnknownMemberID},
		{"fenced static instance while completing a rebalance", completing, "m1-old", 5, &inst, kerr.FencedInstanceID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := kmsg.NewPtrOffsetCommitRequest()
			req.MemberID, req.Generation, req.InstanceID = tc.member, tc.gen, tc.instance
			want := int16(0)
			if tc.want != nil {
				want = tc.want.Code
			}
			if code, _ := tc.g.commitCheck(req); code != want {
				t.Fatalf("commitCheck = %v, want %v", kerr.ErrorForCode(code), tc.want)
			}
		})
	}
}
