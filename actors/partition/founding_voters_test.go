package partition

import (
	"slices"
	"testing"

	"github.com/flotilla/flotilla/actors/controller"
)

// TestFoundersFoundWithTheCreationReplicas: a founder that starts its
// replica for the first time while the partition's first reassignment is
// under way (its broker was down or behind when the topic was created)
// still founds the group, and with the voters every other founder used,
// the creation replicas, not the move's Replicas (target, then the
// replicas leaving): its bootstrap entries would differ from theirs at the
// same index and term, and it would never catch up (found by review).
func TestFoundersFoundWithTheCreationReplicas(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    controller.Partition
		want []uint64
	}{
		{"no move", controller.Partition{Group: 9, Founders: []uint64{1, 2, 3}, Replicas: []uint64{1, 2, 3}}, []uint64{1, 2, 3}},
		{"first move under way", controller.Partition{Group: 9, Founders: []uint64{1, 2, 3}, Origin: []uint64{1, 2, 3},
			Replicas: []uint64{1, 2, 4, 3}, Adding: []uint64{4}, Removing: []uint64{3}, Moves: 1}, []uint64{1, 2, 3}},
		{"a state from before Founders", controller.Partition{Group: 9, Replicas: []uint64{2, 3, 1}}, []uint64{2, 3, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := RaftSettings{ElectionTicks: 10, HeartbeatTicks: 1}.Config(tc.p, "t/0", 1)
			if !cfg.Bootstrap {
				t.Fatal("the founder does not found")
			}
			if !slices.Equal(cfg.Peers, tc.want) {
				t.Fatalf("founds with voters %v, want %v", cfg.Peers, tc.want)
			}
		})
	}
}
