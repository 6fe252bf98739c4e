package controller

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
)

func request(id, by uint64) []byte {
	return (&Command{RemovalRequest: &RemovalRequest{NodeID: id, By: by}}).Encode()
}

func withdraw(id, by uint64) []byte {
	return (&Command{RemovalRequest: &RemovalRequest{NodeID: id, By: by, Withdraw: true}}).Encode()
}

func removeBroker(id uint64) []byte {
	return (&Command{RemoveBroker: &RemoveBroker{NodeID: id}}).Encode()
}

// TestRemovalRequestApply: requests are recorded per requester and
// withdrawn; a RemoveBroker (the leader's, or one an older version
// proposed on a reload) starts the drain at once, as it always did, and
// ends the requests for that broker; the removal itself forgets the
// removed broker's requests too.
func TestRemovalRequestApply(t *testing.T) {
	tests := []struct {
		name     string
		entries  [][]byte
		requests map[uint64][]uint64
		draining []uint64
	}{
		{"one request", [][]byte{request(3, 1)}, map[uint64][]uint64{3: {1}}, nil},
		{"requesters in order, repeats ignored", [][]byte{request(3, 2), request(3, 1), request(3, 2)}, map[uint64][]uint64{3: {1, 2}}, nil},
		{"own removal, non-member target or requester ignored", [][]byte{request(3, 3), request(9, 1), request(3, 9)}, nil, nil},
		{"withdrawn", [][]byte{request(3, 1), request(3, 2), withdraw(3, 1)}, map[uint64][]uint64{3: {2}}, nil},
		{"last withdrawal drops the entry", [][]byte{request(3, 1), withdraw(3, 1), withdraw(3, 2)}, nil, nil},
		{"a started removal ends its requests", [][]byte{request(3, 1), request(3, 2), request(2, 1), removeBroker(3)}, map[uint64][]uint64{2: {1}}, []uint64{3}},
		{"no request for a draining broker", [][]byte{removeBroker(3), request(3, 1)}, nil, []uint64{3}},
		{"an entry of the old kind drains at once", [][]byte{removeBroker(2)}, nil, []uint64{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sm := withMembers(4)
			base := sm.View().Applied
			for i, e := range tc.entries {
				sm.Apply(base+uint64(i+1), 1, e)
			}
			v := sm.View()
			if !reflect.DeepEqual(v.RemovalRequests, tc.requests) || !slices.Equal(v.Draining, tc.draining) {
				t.Fatalf("requests %v draining %v, want %v and %v", v.RemovalRequests, v.Draining, tc.requests, tc.draining)
			}
			data, err := sm.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			sm2 := NewStateMachine(zerolog.Nop())
			if err := sm2.Restore(&pb.Snapshot{Data: data}); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sm2.View().RemovalRequests, v.RemovalRequests) {
				t.Fatalf("restored requests %v, want %v", sm2.View().RemovalRequests, v.RemovalRequests)
			}
		})
	}

	// The removal forgets the requests for the removed broker and its own.
	sm := withMembers(4)
	for i, e := range [][]byte{request(4, 1), request(2, 4), request(2, 1), removeBroker(4)} {
		sm.Apply(uint64(10+i), 1, e)
	}
	confChange(sm, 20, pb.ConfChangeRemoveNode, 4, nil, []uint64{1, 2, 3}, nil)
	if got, want := sm.View().RemovalRequests, map[uint64][]uint64{2: {1}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after removing 4: requests %v, want %v", got, want)
	}

	// A snapshot written before requests existed reads as having none.
	var old State
	if err := json.Unmarshal([]byte(`{"cluster_id":"c","brokers":{},"voters":[1,2,3],"draining":[3]}`), &old); err != nil {
		t.Fatal(err)
	}
	if agreed, _ := old.RemovalAgreed(2); agreed || len(old.RemovalRequests) != 0 || !old.IsDraining(3) {
		t.Fatalf("old snapshot: %+v", old)
	}
}

// TestRemovalAgreed: a removal starts once a majority of the voters that
// stay without the broker asked for it.
func TestRemovalAgreed(t *testing.T) {
	tests := []struct {
		name     string
		voters   []uint64
		learners []uint64
		draining []uint64
		id       uint64
		asked    []uint64
		agreed   bool
		missing  []uint64
	}{
		{"one of three asks", []uint64{1, 2, 3}, nil, nil, 3, []uint64{1}, false, []uint64{2}},
		{"both that stay ask", []uint64{1, 2, 3}, nil, nil, 3, []uint64{1, 2}, true, nil},
		{"the leaving broker's own request does not count", []uint64{1, 2, 3}, nil, nil, 2, []uint64{1, 2}, false, []uint64{3}},
		{"the other of two", []uint64{1, 2}, nil, nil, 2, []uint64{1}, true, nil},
		{"the last voter", []uint64{1}, nil, nil, 1, nil, false, nil},
		{"two of four that stay", []uint64{1, 2, 3, 4, 5}, nil, nil, 5, []uint64{1, 2}, false, []uint64{3, 4}},
		{"three of four that stay", []uint64{1, 2, 3, 4, 5}, nil, nil, 5, []uint64{1, 2, 3}, true, []uint64{4}},
		{"a draining voter does not stay", []uint64{1, 2, 3, 4, 5}, nil, []uint64{4}, 5, []uint64{1, 2, 4}, true, []uint64{3}},
		{"a learner does not count", []uint64{1, 2, 3}, []uint64{4}, nil, 3, []uint64{1, 4}, false, []uint64{2}},
		{"a learner is removed by the voters", []uint64{1, 2, 3}, []uint64{4}, nil, 4, []uint64{1, 2}, true, []uint64{3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &State{Voters: tc.voters, Learners: tc.learners, Draining: tc.draining, RemovalRequests: map[uint64][]uint64{tc.id: tc.asked}}
			agreed, missing := s.RemovalAgreed(tc.id)
			if agreed != tc.agreed || !slices.Equal(missing, tc.missing) {
				t.Fatalf("RemovalAgreed(%d) with %v asking = %v, missing %v; want %v, missing %v", tc.id, tc.asked, agreed, missing, tc.agreed, tc.missing)
			}
		})
	}
}

// TestRemovalQuorum: a broker is removed (and its drain started) only
// while the voters left without it, and those that stay for good, have a
// live majority.
func TestRemovalQuorum(t *testing.T) {
	tests := []struct {
		name     string
		voters   []uint64
		draining []uint64
		dead     []uint64
		id       uint64
		ok       bool
	}{
		{"all alive", []uint64{1, 2, 3}, nil, nil, 2, true},
		{"another voter dead", []uint64{1, 2, 3}, nil, []uint64{3}, 2, false},
		{"the dead one leaves", []uint64{1, 2, 3}, nil, []uint64{3}, 3, true},
		{"the other of two, dead", []uint64{1, 2}, nil, []uint64{2}, 2, true},
		{"two of five dead, a live one leaves", []uint64{1, 2, 3, 4, 5}, nil, []uint64{4, 5}, 3, false},
		{"two of five dead, one of them leaves", []uint64{1, 2, 3, 4, 5}, nil, []uint64{4, 5}, 5, true},
		{"the group left behind keeps a draining live voter", []uint64{1, 2, 3, 4, 5}, []uint64{4, 5}, []uint64{3}, 4, true},
		{"the group left behind has no live majority", []uint64{1, 2, 3, 4, 5}, []uint64{4, 5}, []uint64{3, 5}, 4, false},
		{"those that stay have no live majority", []uint64{1, 2, 3, 4, 5}, []uint64{4}, []uint64{2, 3}, 5, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &State{Voters: tc.voters, Draining: tc.draining}
			err := s.removalQuorum(tc.id, func(id uint64) bool { return !slices.Contains(tc.dead, id) })
			if (err == nil) != tc.ok {
				t.Fatalf("removalQuorum(%d) with %v dead = %v, want ok %v", tc.id, tc.dead, err, tc.ok)
			}
		})
	}
	if err := (&State{Voters: []uint64{1, 2, 3}}).removalQuorum(2, nil); err != nil {
		t.Fatalf("without liveness every broker counts alive: %v", err)
	}
}

// TestDrainReplacement: a drained replica moves to the live broker with
// the fewest replicas; without one it is dropped only if the partition
// keeps min.insync.replicas and a live majority of what remains.
func TestDrainReplacement(t *testing.T) {
	tests := []struct {
		name     string
		voters   []uint64
		dead     []uint64
		replicas []uint64
		configs  map[string]string
		id       uint64
		want     []uint64
		err      string
	}{
		{"moved to the spare broker", []uint64{1, 2, 3, 4}, nil, []uint64{1, 2, 3}, nil, 2, []uint64{1, 4, 3}, ""},
		{"dead spare not used", []uint64{1, 2, 3, 4}, []uint64{4}, []uint64{1, 2, 3}, nil, 2, []uint64{1, 3}, ""},
		{"dropped, the rest alive", []uint64{1, 2, 3}, nil, []uint64{1, 2, 3}, nil, 2, []uint64{1, 3}, ""},
		{"dropped, the drained one dead", []uint64{1, 2, 3}, []uint64{2}, []uint64{1, 2, 3}, nil, 2, []uint64{1, 3}, ""},
		{"not dropped: half of the rest dead", []uint64{1, 2, 3}, []uint64{3}, []uint64{1, 2, 3}, nil, 2, nil, "only [1] are alive"},
		{"not dropped: the only one left dead", []uint64{2, 3}, []uint64{3}, []uint64{2, 3}, nil, 2, nil, "only [] are alive"},
		{"not dropped: below min.insync.replicas", []uint64{1, 2, 3}, nil, []uint64{1, 2, 3}, map[string]string{"min.insync.replicas": "3"}, 2, nil, "below min.insync.replicas"},
		{"not dropped: none left", []uint64{2}, nil, []uint64{2}, nil, 2, nil, "would keep 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			view := &State{Voters: tc.voters, Draining: []uint64{tc.id}, Brokers: map[uint64]Broker{}}
			for _, id := range tc.voters {
				view.Brokers[id] = Broker{NodeID: id}
			}
			c := &controllerActor{o: Options{Alive: func(id uint64) bool { return !slices.Contains(tc.dead, id) }}}
			topic := &Topic{Name: "t", Configs: tc.configs, Partitions: []Partition{{Replicas: tc.replicas}}}
			got, err := c.replacement(view, topic, topic.Partitions[0], tc.id, replicaCounts(view))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("replacement = %v, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("replacement = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestRemovalLive: a removal counts a member dead when the brokers'
// liveness does, or, on the controller's leader, once raft has not seen it
// active in the controller group for movedSilentTicks, which comes well
// before the session timeout.
func TestRemovalLive(t *testing.T) {
	const now = 1000
	tests := []struct {
		name     string
		id       uint64
		dead     []uint64 // by the brokers' liveness
		activeAt map[uint64]uint64
		want     bool
	}{
		{"active in raft and heard", 2, nil, map[uint64]uint64{2: now - 1}, true},
		{"silent in raft, still heard", 2, nil, map[uint64]uint64{2: now - movedSilentTicks}, false},
		{"active in raft, not heard", 2, []uint64{2}, map[uint64]uint64{2: now}, false},
		{"not looked at by raft: liveness decides", 3, nil, map[uint64]uint64{2: now}, true},
		{"itself", 1, nil, map[uint64]uint64{1: 0}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &controllerActor{o: Options{NodeID: 1, Alive: func(id uint64) bool { return !slices.Contains(tc.dead, id) }}}
			c.mb.activeAt, c.ticks = tc.activeAt, now
			if got := c.removalLive(tc.id); got != tc.want {
				t.Fatalf("removalLive(%d) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}
