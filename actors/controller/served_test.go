package controller

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// TestServed: a new partition counts as served, for CreateTopics and
// CreatePartitions to answer, once this broker's own replica leads and
// serves, or once the leader said it serves, in a term no older than this
// broker's replica knows; not when this broker's follower merely knows
// who leads, which it learns before the leader serves.
func TestServed(t *testing.T) {
	said := func(leader, term uint64) *netactor.LeaderInfo {
		return &netactor.LeaderInfo{Group: 7, Leader: leader, Term: term, ISR: []uint64{leader}}
	}
	for _, tt := range []struct {
		name   string
		local  *raftactor.GroupStatus // this broker's replica (node 1); nil: none
		serves bool                   // its machine serves
		said   *netactor.LeaderInfo   // what the leader announced; nil: nothing
		want   bool
	}{
		{"leads and serves here", &raftactor.GroupStatus{Role: "leader", Term: 2, Leader: 1}, true, nil, true},
		{"leads here, not serving yet", &raftactor.GroupStatus{Role: "leader", Term: 2, Leader: 1}, false, nil, false},
		{"a follower knows the leader, who said nothing", &raftactor.GroupStatus{Role: "follower", Term: 2, Leader: 2}, false, nil, false},
		{"a follower, and the leader said it serves", &raftactor.GroupStatus{Role: "follower", Term: 2, Leader: 2}, false, said(2, 2), true},
		{"a follower of a later term than what was said", &raftactor.GroupStatus{Role: "follower", Term: 3, Leader: 3}, false, said(2, 2), false},
		{"a halted replica, and the leader said it serves", &raftactor.GroupStatus{Role: "halted", Halted: "disk"}, false, said(2, 2), true},
		// This broker's own word counts only while its replica still leads
		// (found by review): Metadata names no leader then either.
		{"stepped down in the term this broker said it served", &raftactor.GroupStatus{Role: "follower", Term: 2}, false, said(1, 2), false},
		{"halted after this broker said it served", &raftactor.GroupStatus{Role: "halted", Halted: "disk"}, false, said(1, 2), false},
		{"not hosted, nothing said", nil, false, nil, false},
		{"not hosted, the leader said it serves", nil, false, said(3, 2), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			board := raftactor.NewStatusBoard()
			p := Partition{Index: 0, Group: 7, Replicas: []uint64{2, 3}}
			if tt.local != nil {
				st := *tt.local
				st.Group = 7
				board.Publish(&st)
				p.Replicas = []uint64{2, 1}
			}
			c := NewActor(Options{NodeID: 1, Board: board, Log: zerolog.Nop(),
				LeaderServes: func(*Topic, Partition) bool { return tt.serves },
				Announced: func(group uint64) (netactor.LeaderInfo, bool) {
					if tt.said == nil || group != tt.said.Group {
						return netactor.LeaderInfo{}, false
					}
					return *tt.said, true
				},
			})().(*controllerActor)
			if got := c.served(&Topic{Name: "t"}, p); got != tt.want {
				t.Fatalf("served = %v, want %v", got, tt.want)
			}
		})
	}
}
