package netactor

import (
	"reflect"
	"testing"
)

// TestMergeLeaders: leaderships waiting for the next frame keep every
// group's latest, whoever broadcast it.
func TestMergeLeaders(t *testing.T) {
	tests := []struct {
		name          string
		pending, next []LeaderInfo
		want          []LeaderInfo
	}{
		{"nothing pending", nil, []LeaderInfo{{Group: 1, Leader: 2, Term: 3}}, []LeaderInfo{{Group: 1, Leader: 2, Term: 3}}},
		{"another broadcaster's groups", []LeaderInfo{{Group: 100, Leader: 1, Term: 5}}, []LeaderInfo{{Group: 200, Leader: 1, Term: 5}},
			[]LeaderInfo{{Group: 100, Leader: 1, Term: 5}, {Group: 200, Leader: 1, Term: 5}}},
		{"a newer leadership of the same group", []LeaderInfo{{Group: 100, Leader: 1, Term: 5}, {Group: 101, Leader: 1, Term: 2}},
			[]LeaderInfo{{Group: 100, Leader: 1, Term: 6, ISR: []uint64{1, 2}}, {Group: 300, Leader: 1, Term: 1}},
			[]LeaderInfo{{Group: 100, Leader: 1, Term: 6, ISR: []uint64{1, 2}}, {Group: 101, Leader: 1, Term: 2}, {Group: 300, Leader: 1, Term: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mergeLeaders(tt.pending, tt.next); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("mergeLeaders = %+v, want %+v", got, tt.want)
			}
		})
	}
}
