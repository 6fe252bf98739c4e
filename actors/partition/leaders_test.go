package partition

import (
	"slices"
	"testing"

	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// TestLeadersLeft: when a replica of this broker (1) stops, what its
// peers broadcast of the group's leadership stays while the group lives
// on elsewhere (moved away), so that Metadata here goes on naming its
// leader; it goes when the group went with its topic. This broker's own
// leadership goes too, it leads nothing it has no replica of, and the
// successor its replica last saw takes its place, with the ISR it
// broadcast and the successor in it. Dropping every group answered a
// partition that moved away from this broker without a leader change
// LEADER_NOT_AVAILABLE until its leader's next broadcast, and dropping
// its own answered one whose leader moved away so until the successor's
// first broadcast.
func TestLeadersLeft(t *testing.T) {
	const self, group = 1, 1030
	follower := func(leader, term uint64) *raftactor.GroupStatus {
		return &raftactor.GroupStatus{Group: group, Role: "follower", Leader: leader, Term: term}
	}
	for _, tc := range []struct {
		name  string
		known *netactor.LeaderInfo // broadcast before, nil for none
		lives bool
		last  *raftactor.GroupStatus
		want  *netactor.LeaderInfo // nil for nothing known
	}{
		{"moved away, led by a peer", &netactor.LeaderInfo{Leader: 2, Term: 3, ISR: []uint64{1, 2}}, true, follower(2, 3),
			&netactor.LeaderInfo{Leader: 2, Term: 3, ISR: []uint64{1, 2}}},
		{"moved away, a peer's broadcast newer than the replica", &netactor.LeaderInfo{Leader: 2, Term: 5, ISR: []uint64{2, 3}}, true, follower(3, 4),
			&netactor.LeaderInfo{Leader: 2, Term: 5, ISR: []uint64{2, 3}}},
		{"moved away, the replica saw a later leader", &netactor.LeaderInfo{Leader: 2, Term: 3, ISR: []uint64{1, 2}}, true, follower(3, 4),
			&netactor.LeaderInfo{Leader: 3, Term: 4, ISR: []uint64{1, 2, 3}}},
		{"led here, handed over", &netactor.LeaderInfo{Leader: self, Term: 3, ISR: []uint64{1, 2, 3}}, true, follower(2, 4),
			&netactor.LeaderInfo{Leader: 2, Term: 4, ISR: []uint64{1, 2, 3}}},
		{"led here, handed over out of the ISR", &netactor.LeaderInfo{Leader: self, Term: 3, ISR: []uint64{1, 3}}, true, follower(4, 4),
			&netactor.LeaderInfo{Leader: 4, Term: 4, ISR: []uint64{1, 3, 4}}},
		{"led here, handing over", &netactor.LeaderInfo{Leader: self, Term: 3, ISR: []uint64{1, 2}}, true,
			&raftactor.GroupStatus{Group: group, Role: "follower", Term: 4, Outgoing: self, OutgoingTerm: 3}, nil},
		{"led here, still leading", &netactor.LeaderInfo{Leader: self, Term: 3, ISR: []uint64{1, 2}}, true,
			&raftactor.GroupStatus{Group: group, Role: "leader", Leader: self, Term: 3}, nil},
		{"led here, no status", &netactor.LeaderInfo{Leader: self, Term: 3, ISR: []uint64{1, 2}}, true, nil, nil},
		{"never broadcast, handed over", nil, true, follower(2, 2), &netactor.LeaderInfo{Leader: 2, Term: 2}},
		{"topic deleted", &netactor.LeaderInfo{Leader: 2, Term: 3, ISR: []uint64{2}}, false, follower(2, 3), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLeaders()
			if tc.known != nil {
				li := *tc.known
				li.Group = group
				l.Note([]netactor.LeaderInfo{li})
			}
			l.Left(group, self, tc.lives, tc.last)
			got, ok := l.Get(group)
			switch {
			case tc.want == nil && ok:
				t.Errorf("known after the replica stopped: %+v, want nothing", got)
			case tc.want != nil && !ok:
				t.Errorf("nothing known after the replica stopped, want leader %d term %d ISR %v", tc.want.Leader, tc.want.Term, tc.want.ISR)
			case tc.want != nil && (got.Leader != tc.want.Leader || got.Term != tc.want.Term || !slices.Equal(got.ISR, tc.want.ISR)):
				t.Errorf("leader %d term %d ISR %v after the replica stopped, want leader %d term %d ISR %v",
					got.Leader, got.Term, got.ISR, tc.want.Leader, tc.want.Term, tc.want.ISR)
			}
		})
	}
}
