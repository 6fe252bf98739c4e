package partition

import (
	"testing"

	"github.com/flotilla/flotilla/netactor"
)

// TestLeadersLeft: when a replica of this broker (1) stops, what its
// peers broadcast of the group's leadership stays while the group lives
// on elsewhere (moved away), so that Metadata here goes on naming its
// leader; it goes when the group went with its topic, and when it names
// this broker, which leads nothing it has no replica of. Dropping every
// group answered a partition that moved away from this broker without a
// leader change LEADER_NOT_AVAILABLE until its leader's next broadcast.
func TestLeadersLeft(t *testing.T) {
	const self, group = 1, 1030
	for _, tc := range []struct {
		name   string
		leader uint64
		lives  bool
		kept   bool
	}{
		{"moved away, led by a peer", 2, true, true},
		{"moved away, led here before", self, true, false},
		{"topic deleted", 2, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLeaders()
			l.Note([]netactor.LeaderInfo{{Group: group, Leader: tc.leader, Term: 3, ISR: []uint64{tc.leader}}})
			l.left(group, self, tc.lives)
			if _, ok := l.Get(group); ok != tc.kept {
				t.Errorf("broadcast of broker %d's leadership known after the replica stopped: %v, want %v", tc.leader, ok, tc.kept)
			}
		})
	}
}
