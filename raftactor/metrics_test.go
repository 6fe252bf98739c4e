package raftactor

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// A topic deleted and re-created under the same name: the old partition's
// group is still on the board (its actor is stopping) when the new group
// publishes. The scrape must not fail, and must show the new group.
func TestCollectorSameNameTwoGroups(t *testing.T) {
	tests := []struct {
		name    string
		publish []*GroupStatus
		term    float64
	}{
		{"old first", []*GroupStatus{
			{Group: 1024, Name: "t/0", Role: "follower", Term: 7},
			{Group: 1337, Name: "t/0", Role: "leader", Term: 1},
		}, 1},
		{"new first", []*GroupStatus{
			{Group: 1337, Name: "t/0", Role: "leader", Term: 1},
			{Group: 1024, Name: "t/0", Role: "follower", Term: 7},
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewStatusBoard()
			for _, s := range tt.publish {
				b.Publish(s)
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(NewCollector(b))
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatalf("gather: %v", err)
			}
			var terms []*dto.Metric
			for _, mf := range mfs {
				if mf.GetName() == "flotilla_raft_term" {
					terms = mf.GetMetric()
				}
			}
			if len(terms) != 1 || terms[0].GetGauge().GetValue() != tt.term {
				t.Fatalf("flotilla_raft_term = %v, want one series with value %v", terms, tt.term)
			}
		})
	}
}
