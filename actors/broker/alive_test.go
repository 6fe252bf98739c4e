package broker

import (
	"slices"
	"testing"
	"time"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/netactor"
)

// TestAliveFencesNobodyWhenCutOff: a broker that hears from fewer than a
// majority of the controller's voters, itself included, is the one cut
// off, and fences nobody; otherwise the dead are dead. A stopping broker
// stays alive (it may still lead) but never staying, for the controller.
func TestAliveFencesNobodyWhenCutOff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		voters   []uint64
		heard    []uint64 // of the peers, those heard from lately
		stopping []uint64 // of the peers, those that announced they are stopping
		alive    map[uint64]bool
	}{
		{"all heard", []uint64{1, 2, 3}, []uint64{2, 3}, nil, map[uint64]bool{2: true, 3: true}},
		{"one of three dead", []uint64{1, 2, 3}, []uint64{2}, nil, map[uint64]bool{2: true, 3: false}},
		{"cut off from both others", []uint64{1, 2, 3}, nil, nil, map[uint64]bool{2: true, 3: true}},
		{"two of five dead", []uint64{1, 2, 3, 4, 5}, []uint64{2, 3}, nil, map[uint64]bool{4: false, 5: false}},
		{"three of five dead", []uint64{1, 2, 3, 4, 5}, []uint64{2}, nil, map[uint64]bool{3: true, 4: true, 5: true}},
		{"no voters known yet", nil, nil, nil, map[uint64]bool{2: true}},
		{"one of three stopping", []uint64{1, 2, 3}, []uint64{2, 3}, []uint64{3}, map[uint64]bool{2: true, 3: true}},
		{"stopping while cut off from the rest", []uint64{1, 2, 3}, nil, []uint64{3}, map[uint64]bool{2: true, 3: true}},
		{"stopping and dead", []uint64{1, 2, 3}, []uint64{2}, []uint64{3}, map[uint64]bool{2: true, 3: false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			l := netactor.NewLiveness(1, time.Second, func() time.Time { return now })
			now = now.Add(2 * time.Second) // past the grace period
			for _, id := range tc.heard {
				l.Heard(id)
			}
			for _, id := range tc.stopping {
				l.MarkStopping(id)
			}
			view := &controller.State{Voters: tc.voters}
			alive := aliveFunc(l, 1, func() *controller.State { return view })
			staying := stayingFunc(l, alive)
			for id, want := range tc.alive {
				if got := alive(id); got != want {
					t.Errorf("alive(%d) = %v, want %v", id, got, want)
				}
				wantStaying := want && !slices.Contains(tc.stopping, id)
				if got := staying(id); got != wantStaying {
					t.Errorf("staying(%d) = %v, want %v", id, got, wantStaying)
				}
			}
		})
	}
}
