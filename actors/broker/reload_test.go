package broker

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/configs"
)

// TestReloadWithoutPeersRefused: broker 1's config is reloaded after its
// peers block was lost. Validate fills the default, this node alone, which
// would read as "drop brokers 2 and 3": the reload must be refused with
// nothing changed, rather than drain and remove both for good.
func TestReloadWithoutPeersRefused(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()

	for _, peers := range [][]configs.Peer{nil, {}} {
		next := *c.cfgs[0]
		next.Peers = peers
		next.Kafka.LogRetentionMs = 1 // must not be applied either
		if err := next.Validate(); err != nil {
			t.Fatalf("Validate: %v", err)
		}
		err := c.brokers[0].Reload(&next)
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("reload with peers %v (validated as %v): err = %v, want refused", peers, next.Peers, err)
		}
		t.Logf("refused: %v", err)
	}
	if got := slices.Sorted(maps.Keys(*c.brokers[0].configPeers.Load())); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("config peers after a refused reload: %v, want [1 2 3]", got)
	}
	if d := *c.brokers[0].topicDefaults.Load(); d["retention.ms"] == "1" {
		t.Fatalf("a refused reload applied its topic defaults: %v", d)
	}
	if v := c.brokers[0].Controller().View(); len(v.Draining) > 0 || len(v.Removed) > 0 || len(v.Voters) != 3 {
		t.Fatalf("membership changed: voters %v draining %v removed %v", v.Voters, v.Draining, v.Removed)
	}

	// The broker still takes a reload that keeps its peers.
	next := *c.cfgs[0]
	next.Kafka.LogRetentionMs = 3_600_000
	if err := c.brokers[0].Reload(&next); err != nil {
		t.Fatalf("reload with the same peers: %v", err)
	}
}

func TestCheckPeerChange(t *testing.T) {
	view := func(voters []uint64, brokers ...uint64) *controller.State {
		s := &controller.State{Voters: voters, Brokers: map[uint64]controller.Broker{}}
		for _, id := range brokers {
			s.Brokers[id] = controller.Broker{NodeID: id}
		}
		return s
	}
	three := []uint64{1, 2, 3}
	five := []uint64{1, 2, 3, 4, 5}
	tests := []struct {
		name      string
		old, next []uint64
		defaulted bool // Validate filled next: the file gave no peers
		view      *controller.State
		refused   bool
	}{
		{"unchanged", three, three, false, view(three, three...), false},
		{"grow", three, []uint64{1, 2, 3, 4}, false, view(three, three...), false},
		{"drop one of three", three, []uint64{1, 2}, false, view(three, three...), false},
		{"drop one of four", []uint64{1, 2, 3, 4}, three, false, view([]uint64{1, 2, 3, 4}), false},
		{"drop two of five", five, three, false, view(five), false},
		{"drop two of four", []uint64{1, 2, 3, 4}, []uint64{1, 2}, false, view([]uint64{1, 2, 3, 4}), false},
		{"self alone of three", three, []uint64{1}, false, view(three, three...), true},
		{"drop the two others", three, []uint64{1, 4}, false, view(three), true},
		{"drop three of five", five, []uint64{1, 2}, false, view(five), true},
		{"self alone, controller not caught up", three, []uint64{1}, false, view(nil), true},
		{"shrink two to one", []uint64{1, 2}, []uint64{1}, false, view([]uint64{1, 2}, 1, 2), false},
		{"peers block lost, two brokers", []uint64{1, 2}, []uint64{1}, true, view([]uint64{1, 2}, 1, 2), true},
		{"peers block lost, others registered", []uint64{1}, []uint64{1}, true, view([]uint64{1, 2}, 1, 2), true},
		{"partial list kept, others registered", []uint64{1}, []uint64{1}, false, view([]uint64{1, 2}, 1, 2), false},
		{"one-node cluster", []uint64{1}, []uint64{1}, true, view([]uint64{1}, 1), false},
		{"others removed", []uint64{1, 2}, []uint64{1}, true, &controller.State{Voters: []uint64{1}, Removed: []uint64{2}}, false},
		{"joiner keeps its partial list", []uint64{1, 6}, []uint64{1, 6}, false, view(slices.Concat(five, []uint64{6})), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPeerChange(1, tt.old, tt.next, tt.defaulted, tt.view)
			if (err != nil) != tt.refused {
				t.Fatalf("checkPeerChange(old %v, next %v, voters %v) = %v, want refused %v", tt.old, tt.next, tt.view.Voters, err, tt.refused)
			}
		})
	}
}
