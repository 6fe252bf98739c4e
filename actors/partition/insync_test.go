package partition

import (
	"slices"
	"testing"
)

func TestMatchedIndex(t *testing.T) {
	for _, tc := range []struct {
		name    string
		matches []uint64
		n       int
		want    uint64
	}{
		{"all three match", []uint64{7, 7, 7}, 3, 7},
		{"one behind, all needed", []uint64{9, 4, 9}, 3, 4},
		{"one behind, two needed", []uint64{9, 4, 9}, 2, 9},
		{"two behind, four of five needed", []uint64{12, 3, 12, 8, 12}, 4, 8},
		{"fewer replicas than needed", []uint64{9, 9}, 3, 0},
		{"none", nil, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := matchedIndex(tc.matches, tc.n); got != tc.want {
				t.Fatalf("matchedIndex(%v, %d) = %d, want %d", tc.matches, tc.n, got, tc.want)
			}
		})
	}
}

func TestSettle(t *testing.T) {
	held := func(indexes ...uint64) []*inflight {
		var out []*inflight
		for _, i := range indexes {
			out = append(out, &inflight{index: i})
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		held        []*inflight
		matched     uint64
		isr, quorum int
		done        int
		fail        bool
	}{
		{"nothing matched yet", held(5, 6, 7), 4, 3, 3, 0, false},
		{"a prefix matched", held(5, 6, 7), 6, 3, 3, 2, false},
		{"all matched", held(5, 6, 7), 9, 3, 3, 3, false},
		{"ISR shrank: the unmatched fail", held(5, 6, 7), 5, 2, 3, 1, true},
		{"ISR shrank after all matched", held(5), 5, 2, 3, 1, true},
		{"empty", nil, 9, 3, 3, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done, fail := settle(tc.held, tc.matched, tc.isr, tc.quorum)
			if done != tc.done || fail != tc.fail {
				t.Fatalf("settle = (%d, %v), want (%d, %v)", done, fail, tc.done, tc.fail)
			}
		})
	}
}

// TestCaughtUpTracker drives the ISR's time rule through samples 5 ticks
// apart while the leader (1) appends 10 entries per sample, and reports
// whether follower 2 is still in the ISR after 100 samples (500 ticks,
// with a lag bound of 200).
func TestCaughtUpTracker(t *testing.T) {
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
		{"caught up again in time", func(i int, end, _ uint64) (uint64, bool) {
			if i > samples-30 {
				return end, true
			}
			return 0, true
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c caughtUpTracker
			var end, prevEnd uint64
			var isr []uint64
			for i := range samples {
				prevEnd, end = end, end+10
				match, active := tt.follower(i, end, prevEnd)
				progress := []replicaProgress{{id: 1, match: end, active: true}, {id: 2, match: match, active: active}, {id: 3, match: 0, active: false}}
				isr = c.sample(uint64(i*every), 1, []uint64{1, 2, 3}, progress, lag)
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

// TestCaughtUpTrackerReset: a new leadership counts no replica in sync on
// the strength of an earlier sample or of an end it has not seen.
func TestCaughtUpTrackerReset(t *testing.T) {
	var c caughtUpTracker
	progress := []replicaProgress{{id: 1, match: 100, active: true}, {id: 2, match: 100, active: true}}
	if isr := c.sample(10, 1, []uint64{1, 2}, progress, 200); !slices.Equal(isr, []uint64{1, 2}) {
		t.Fatalf("ISR %v, want [1 2]", isr)
	}
	c.reset()
	progress = []replicaProgress{{id: 1, match: 200, active: true}, {id: 2, match: 100, active: true}}
	if isr := c.sample(20, 1, []uint64{1, 2}, progress, 200); !slices.Equal(isr, []uint64{1}) {
		t.Fatalf("ISR %v after reset, want [1]: follower 2 has not reached the new leader's end", isr)
	}
}

// TestCaughtUpTrackerStopping: a replica whose broker stops cleanly leaves
// the ISR at once, however caught up it is.
func TestCaughtUpTrackerStopping(t *testing.T) {
	var c caughtUpTracker
	progress := []replicaProgress{{id: 1, match: 100, active: true}, {id: 2, match: 100, active: true}}
	if isr := c.sample(10, 1, []uint64{1, 2}, progress, 200); !slices.Equal(isr, []uint64{1, 2}) {
		t.Fatalf("ISR %v, want [1 2]", isr)
	}
	progress[1].stopping = true
	if isr := c.sample(15, 1, []uint64{1, 2}, progress, 200); !slices.Equal(isr, []uint64{1}) {
		t.Fatalf("ISR %v with broker 2 stopping, want [1]", isr)
	}
}
