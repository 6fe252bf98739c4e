package raftactor

import (
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

func TestNextStep(t *testing.T) {
	cs := func(voters, learners []uint64) *pb.ConfState {
		return &pb.ConfState{Voters: voters, Learners: learners}
	}
	// upTo gives every listed member the match and activity; the leader's
	// commit is 100 in every case.
	upTo := func(match uint64, active bool, ids ...uint64) []peerProgress {
		var out []peerProgress
		for _, id := range ids {
			out = append(out, peerProgress{id: id, match: match, active: active, reachable: active})
		}
		return out
	}
	join := func(ps ...[]peerProgress) []peerProgress {
		var out []peerProgress
		for _, p := range ps {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name     string
		cs       *pb.ConfState
		self     uint64
		replicas []uint64
		removing []uint64
		peers    []peerProgress
		want     step
	}{
		{"no reassignment", cs([]uint64{1, 2, 3}, nil), 1, []uint64{1, 2, 3}, nil, upTo(100, true, 1, 2, 3), step{}},
		{"move starts: add the new replica as a learner", cs([]uint64{1, 2, 3}, nil), 2,
			[]uint64{2, 3, 4, 1}, []uint64{1}, upTo(100, true, 1, 2, 3), step{stepAddLearner, 4}},
		{"learner behind: wait", cs([]uint64{1, 2, 3}, []uint64{4}), 2,
			[]uint64{2, 3, 4, 1}, []uint64{1}, join(upTo(100, true, 1, 2, 3), upTo(40, true, 4)), step{}},
		{"learner caught up but silent: wait", cs([]uint64{1, 2, 3}, []uint64{4}), 2,
			[]uint64{2, 3, 4, 1}, []uint64{1}, join(upTo(100, true, 1, 2, 3), upTo(100, false, 4)), step{}},
		{"learner caught up: promote", cs([]uint64{1, 2, 3}, []uint64{4}), 2,
			[]uint64{2, 3, 4, 1}, []uint64{1}, join(upTo(100, true, 1, 2, 3), upTo(100, true, 4)), step{stepPromote, 4}},
		{"every target replica votes: remove the leaving one", cs([]uint64{1, 2, 3, 4}, nil), 2,
			[]uint64{2, 3, 4, 1}, []uint64{1}, upTo(100, true, 1, 2, 3, 4), step{stepRemove, 1}},
		{"a target replica still a learner: keep the leaving one", cs([]uint64{1, 2, 3, 5}, []uint64{4}), 2,
			[]uint64{2, 3, 4, 5, 1}, []uint64{1}, join(upTo(100, true, 1, 2, 3, 5), upTo(10, true, 4)), step{}},
		{"leader leaving: transfer to the first target replica", cs([]uint64{1, 2, 3, 4}, nil), 1,
			[]uint64{2, 3, 4, 1}, []uint64{1}, upTo(100, true, 1, 2, 3, 4), step{stepTransfer, 2}},
		{"leader leaving, first target behind: the next caught-up one", cs([]uint64{1, 2, 3, 4}, nil), 1,
			[]uint64{2, 3, 4, 1}, []uint64{1}, join(upTo(100, true, 1, 3, 4), upTo(90, true, 2)), step{stepTransfer, 3}},
		{"leader leaving, others first", cs([]uint64{1, 2, 3, 4, 5, 6}, nil), 1,
			[]uint64{4, 5, 6, 1, 2, 3}, []uint64{1, 2, 3}, upTo(100, true, 1, 2, 3, 4, 5, 6), step{stepRemove, 2}},
		{"reached", cs([]uint64{2, 3, 4}, nil), 2, []uint64{2, 3, 4, 1}, []uint64{1}, upTo(100, true, 2, 3, 4), step{}},
		{"cancelled add: remove the learner", cs([]uint64{1, 2, 3}, []uint64{4}), 1,
			[]uint64{1, 2, 3}, nil, upTo(100, true, 1, 2, 3, 4), step{stepRemove, 4}},
		{"cancelled after promotion: remove the stale voter", cs([]uint64{1, 2, 3, 4}, nil), 1,
			[]uint64{1, 2, 3}, nil, upTo(100, true, 1, 2, 3, 4), step{stepRemove, 4}},
		{"stale members first, then additions", cs([]uint64{1, 2, 5}, nil), 1,
			[]uint64{1, 2, 3}, nil, upTo(100, true, 1, 2, 5), step{stepRemove, 5}},
		{"leader outside the replicas after a cancel: add, then hand over", cs([]uint64{2, 3, 4}, nil), 4,
			[]uint64{1, 2, 3}, nil, upTo(100, true, 2, 3, 4), step{stepAddLearner, 1}},
		{"leader outside the replicas, all voting: hand over", cs([]uint64{1, 2, 3, 4}, nil), 4,
			[]uint64{1, 2, 3}, nil, upTo(100, true, 1, 2, 3, 4), step{stepTransfer, 1}},
		{"single replica moves", cs([]uint64{1}, nil), 1, []uint64{2, 1}, []uint64{1}, upTo(100, true, 1), step{stepAddLearner, 2}},
		{"single replica: promoted target takes over", cs([]uint64{1, 2}, nil), 1, []uint64{2, 1}, []uint64{1}, upTo(100, true, 1, 2), step{stepTransfer, 2}},
		{"shrinking with a replica down: the down one goes first", cs([]uint64{1, 2, 3}, nil), 1,
			[]uint64{1, 2, 3}, []uint64{2, 3}, join(upTo(100, true, 1, 2), upTo(60, false, 3)), step{stepRemove, 3}},
		{"a target voter down: keep the live leaving one, which the quorum needs", cs([]uint64{1, 2, 3}, nil), 1,
			[]uint64{1, 3, 2}, []uint64{2}, join(upTo(100, true, 1, 2), upTo(60, false, 3)), step{}},
		{"leader leaving with a replica down: remove the down one, then hand over", cs([]uint64{1, 2, 3}, nil), 1,
			[]uint64{2, 1, 3}, []uint64{1, 3}, join(upTo(100, true, 1, 2), upTo(60, false, 3)), step{stepRemove, 3}},
		{"stale voter down: removed before the live one", cs([]uint64{1, 2, 3, 4, 5}, nil), 1,
			[]uint64{1, 2, 3}, nil, join(upTo(100, true, 1, 2, 3, 4), upTo(60, false, 5)), step{stepRemove, 5}},
		{"RecentActive just cleared: reachability decides", cs([]uint64{1, 2, 3}, nil), 1,
			[]uint64{1, 2, 3}, []uint64{2, 3}, []peerProgress{{id: 1, match: 100, active: true, reachable: true},
				{id: 2, match: 100, reachable: true}, {id: 3, match: 100}}, step{stepRemove, 3}},
		{"joint configuration: raft leaves it first", &pb.ConfState{Voters: []uint64{2, 3, 4}, VotersOutgoing: []uint64{1, 2, 3}}, 2,
			[]uint64{2, 3, 4, 1}, []uint64{1}, upTo(100, true, 1, 2, 3, 4), step{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextStep(tc.cs, tc.self, 100, tc.replicas, Target(tc.replicas, tc.removing), tc.peers); got != tc.want {
				t.Fatalf("nextStep = %v %d, want %v %d", got.kind, got.node, tc.want.kind, tc.want.node)
			}
		})
	}
}

func TestInConf(t *testing.T) {
	tests := []struct {
		cs     *pb.ConfState
		target []uint64
		want   bool
	}{
		{&pb.ConfState{Voters: []uint64{3, 1, 2}}, []uint64{1, 2, 3}, true},
		{&pb.ConfState{Voters: []uint64{1, 2, 3}}, []uint64{2, 3, 4}, false},
		{&pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}, []uint64{1, 2, 3}, false},
		{&pb.ConfState{Voters: []uint64{1, 2}}, []uint64{1, 2, 3}, false},
		{&pb.ConfState{Voters: []uint64{1, 2, 3}, VotersOutgoing: []uint64{1, 2}}, []uint64{1, 2, 3}, false},
		{&pb.ConfState{}, []uint64{1}, false},
	}
	for _, tc := range tests {
		if got := InConf(tc.cs, tc.target); got != tc.want {
			t.Errorf("InConf(%v, %v) = %v, want %v", tc.cs, tc.target, got, tc.want)
		}
	}
}

func TestShown(t *testing.T) {
	cs := &pb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{3}}
	tests := []struct {
		s    step
		want bool
	}{
		{step{stepAddLearner, 3}, true},
		{step{stepAddLearner, 4}, false},
		{step{stepPromote, 3}, false},
		{step{stepPromote, 2}, true},
		{step{stepRemove, 4}, true},
		{step{stepRemove, 3}, false},
		{step{stepTransfer, 2}, false},
	}
	for _, tc := range tests {
		if got := shown(cs, tc.s); got != tc.want {
			t.Errorf("shown(%v %d) = %v, want %v", tc.s.kind, tc.s.node, got, tc.want)
		}
	}
}
