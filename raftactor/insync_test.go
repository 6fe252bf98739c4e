package raftactor

import (
	"slices"
	"testing"
)

// TestInSyncTracker drives the ISR's time rule through samples 5 ticks
// apart while the leader (1) appends 10 entries per sample, and reports
// whether follower 2 is still in the ISR after 100 samples (500 ticks,
// with a lag bound of 200).
func TestInSyncTracker(t *testing.T) {
	const lag, every, samples = 200, 5, 100
	tests := []struct {
		name string
		// follower returns follower 2's match and activity at sample i,
		// given the leader's durable end at samples i and i-1.
		follower func(i int, end, prevEnd uint64) (uint64, bool)
		want     bool
	}{
		{"at the end", func(_ int, end, _ uint64) (uint64, bool) { return end, true }, true},
		{"a round trip behind", func(_ int, end, prevEnd uint64) (uint64, bool) { return prevEnd + (end-prevEnd)/2, true }, true},
		{"two samples behind", func(i int, end, _ uint64) (uint64, bool) { return max(end, 20) - 20, true }, false},
		{"stopped", func(i int, end, _ uint64) (uint64, bool) { return min(end, 100), true }, false},
		{"silent at the end", func(_ int, end, _ uint64) (uint64, bool) { return end, false }, false},
		// CheckQuorum clears RecentActive at every election timeout: a
		// sample may meet a healthy follower not yet heard from again.
		{"at the end, seen active at every other sample", func(i int, end, _ uint64) (uint64, bool) { return end, i%2 == 0 }, true},
		{"caught up again in time", func(i int, end, _ uint64) (uint64, bool) {
			if i > samples-30 {
				return end, true
			}
			return 0, true
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c InSyncTracker
			var end, prevEnd uint64
			var isr []uint64
			for i := range samples {
				prevEnd, end = end, end+10
				match, active := tt.follower(i, end, prevEnd)
				progress := []ReplicaProgress{{ID: 1, Match: end, Active: true}, {ID: 2, Match: match, Active: active}, {ID: 3, Match: 0, Active: false}}
				isr = c.Observe(uint64(i*every), 1, []uint64{1, 2, 3}, progress, lag)
			}
			if got := slices.Contains(isr, 2); got != tt.want {
				t.Fatalf("follower 2 in the ISR %v after %d samples: %v, want %v", isr, samples, got, tt.want)
			}
			if !slices.Contains(isr, 1) || slices.Contains(isr, 3) {
				t.Fatalf("ISR %v: want the leader and not the silent replica 3", isr)
			}
		})
	}
}

// TestInSyncTrackerReset: a new leadership counts no replica in sync on
// the strength of an earlier sample or of an end it has not seen.
func TestInSyncTrackerReset(t *testing.T) {
	var c InSyncTracker
	progress := []ReplicaProgress{{ID: 1, Match: 100, Active: true}, {ID: 2, Match: 100, Active: true}}
	if isr := c.Observe(10, 1, []uint64{1, 2}, progress, 200); !slices.Equal(isr, []uint64{1, 2}) {
		t.Fatalf("ISR %v, want [1 2]", isr)
	}
	c.Reset()
	progress = []ReplicaProgress{{ID: 1, Match: 200, Active: true}, {ID: 2, Match: 100, Active: true}}
	if isr := c.Observe(20, 1, []uint64{1, 2}, progress, 200); !slices.Equal(isr, []uint64{1}) {
		t.Fatalf("ISR %v after reset, want [1]: follower 2 has not reached the new leader's end", isr)
	}
}

// TestInSyncTrackerStopping: a replica whose broker stops cleanly leaves
// the ISR at once, however caught up it is.
func TestInSyncTrackerStopping(t *testing.T) {
	var c InSyncTracker
	progress := []ReplicaProgress{{ID: 1, Match: 100, Active: true}, {ID: 2, Match: 100, Active: true}}
	if isr := c.Observe(10, 1, []uint64{1, 2}, progress, 200); !slices.Equal(isr, []uint64{1, 2}) {
		t.Fatalf("ISR %v, want [1 2]", isr)
	}
	progress[1].Stopping = true
	if isr := c.Observe(15, 1, []uint64{1, 2}, progress, 200); !slices.Equal(isr, []uint64{1}) {
		t.Fatalf("ISR %v with broker 2 stopping, want [1]", isr)
	}
}

// TestInSyncTrackerRestart: a replica whose broker restarted leaves the
// ISR at once, however recently its previous process caught up, and comes
// back once it has the leader's end; a restart the tracker has no earlier
// sample to compare with is not one.
func TestInSyncTrackerRestart(t *testing.T) {
	const lag = 200
	// sample is follower 2's match and its broker's restarts at a sample,
	// and whether it is in the ISR after; the leader's end is 100 at the
	// first sample and moves by 10 at each.
	type sample struct {
		match, restarts uint64
		in              bool
	}
	tests := []struct {
		name    string
		samples []sample
	}{
		{"restarted behind, then caught up", []sample{{100, 0, true}, {110, 0, true}, {110, 1, false}, {110, 1, false}, {140, 1, true}}},
		// Its match reached the previous end, which would count it caught
		// up at the previous sample: that sample predates the restart.
		{"restarted at the previous end", []sample{{100, 0, true}, {110, 0, true}, {110, 1, false}}},
		{"restarted and already at the end", []sample{{100, 0, true}, {110, 1, true}}},
		{"restarted before the first sample", []sample{{100, 3, true}, {110, 3, true}}},
		{"no restart", []sample{{100, 2, true}, {105, 2, true}, {115, 2, true}, {125, 2, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c InSyncTracker
			for i, s := range tt.samples {
				end := uint64(100 + 10*i)
				progress := []ReplicaProgress{{ID: 1, Match: end, Active: true}, {ID: 2, Match: s.match, Active: true, Restarts: s.restarts}}
				isr := c.Observe(uint64(10+5*i), 1, []uint64{1, 2}, progress, lag)
				if got := slices.Contains(isr, 2); got != s.in {
					t.Fatalf("sample %d (end %d, follower 2 at %d, restarts %d): ISR %v, want follower 2 in it: %v", i, end, s.match, s.restarts, isr, s.in)
				}
			}
		})
	}
}

// TestInSyncTrackerReplicaAddedBack: a replica that a reassignment took
// out of the group (gone from the progress) and then added back starts
// empty, and is in sync only once it has caught up again, not on the
// strength of a sample from before it left.
func TestInSyncTrackerReplicaAddedBack(t *testing.T) {
	var c InSyncTracker
	all := []uint64{1, 2, 3}
	if isr := c.Observe(10, 1, all, []ReplicaProgress{{ID: 1, Match: 100, Active: true}, {ID: 2, Match: 100, Active: true}, {ID: 3, Match: 100, Active: true}}, 200); !slices.Equal(isr, all) {
		t.Fatalf("ISR %v, want %v", isr, all)
	}
	if isr := c.Observe(15, 1, all, []ReplicaProgress{{ID: 1, Match: 110, Active: true}, {ID: 2, Match: 110, Active: true}}, 200); !slices.Equal(isr, []uint64{1, 2}) {
		t.Fatalf("ISR %v with replica 3 out of the group, want [1 2]", isr)
	}
	if isr := c.Observe(20, 1, all, []ReplicaProgress{{ID: 1, Match: 120, Active: true}, {ID: 2, Match: 120, Active: true}, {ID: 3, Match: 0, Active: true}}, 200); !slices.Equal(isr, []uint64{1, 2}) {
		t.Fatalf("ISR %v with replica 3 added back empty, want [1 2]", isr)
	}
	if isr := c.Observe(25, 1, all, []ReplicaProgress{{ID: 1, Match: 130, Active: true}, {ID: 2, Match: 130, Active: true}, {ID: 3, Match: 130, Active: true}}, 200); !slices.Equal(isr, all) {
		t.Fatalf("ISR %v with replica 3 caught up again, want %v", isr, all)
	}
}
