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
