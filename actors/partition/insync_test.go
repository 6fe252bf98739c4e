package partition

import (
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
