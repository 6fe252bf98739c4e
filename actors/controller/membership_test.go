package controller

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
)

// confChange applies one conf change to sm as the raft group would, with
// the configuration it leads to.
func confChange(sm *StateMachine, index uint64, typ pb.ConfChangeType, id uint64, ctx []byte, voters, learners []uint64) {
	cc := &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(id)}}, Context: ctx}
	sm.ApplyConfChange(index, 1, cc, &pb.ConfState{Voters: voters, Learners: learners})
}

func TestMembershipApply(t *testing.T) {
	sm := NewStateMachine(zerolog.Nop())
	for i, id := range []uint64{1, 2, 3} {
		confChange(sm, uint64(i+1), pb.ConfChangeAddNode, id, nil, []uint64{1, 2, 3}[:i+1], nil)
	}
	join, _ := json.Marshal(JoinContext{NodeID: 4, RaftAddr: "r4", KafkaAddr: "k4"})
	confChange(sm, 4, pb.ConfChangeAddLearnerNode, 4, join, []uint64{1, 2, 3}, []uint64{4})
	v := sm.View()
	if !slices.Equal(v.Learners, []uint64{4}) || !v.IsMember(4) || v.Brokers[4].RaftAddr != "r4" || v.Brokers[4].KafkaAddr != "k4" {
		t.Fatalf("after join: learners %v, broker 4 %+v", v.Learners, v.Brokers[4])
	}
	if got := v.Placeable(); len(got) != 0 {
		t.Fatalf("placeable = %v: unregistered voters and learners are not", got)
	}
	confChange(sm, 5, pb.ConfChangeAddNode, 4, nil, []uint64{1, 2, 3, 4}, nil)

	sm.Apply(6, 1, (&Command{RemoveBroker: &RemoveBroker{NodeID: 1}}).Encode())
	sm.Apply(7, 1, (&Command{RemoveBroker: &RemoveBroker{NodeID: 9}}).Encode()) // not a member: no-op
	if v := sm.View(); !slices.Equal(v.Draining, []uint64{1}) || !v.IsDraining(1) {
		t.Fatalf("draining = %v, want [1]", v.Draining)
	}
	confChange(sm, 8, pb.ConfChangeRemoveNode, 1, nil, []uint64{2, 3, 4}, nil)
	v = sm.View()
	if !v.IsRemoved(1) || v.IsMember(1) || v.IsDraining(1) || !slices.Equal(v.Voters, []uint64{2, 3, 4}) {
		t.Fatalf("after removal: voters %v draining %v removed %v", v.Voters, v.Draining, v.Removed)
	}
	if _, ok := v.Brokers[1]; ok {
		t.Fatal("removed broker is still registered")
	}
	sm.Apply(9, 1, (&Command{RegisterBroker: &RegisterBroker{NodeID: 1, KafkaAddr: "k1", RaftAddr: "r1"}}).Encode())
	if _, ok := sm.View().Brokers[1]; ok {
		t.Fatal("a removed broker registered again")
	}

	// The last voter is never drained.
	sm2 := NewStateMachine(zerolog.Nop())
	confChange(sm2, 1, pb.ConfChangeAddNode, 1, nil, []uint64{1}, nil)
	sm2.Apply(2, 1, (&Command{RemoveBroker: &RemoveBroker{NodeID: 1}}).Encode())
	if d := sm2.View().Draining; len(d) != 0 {
		t.Fatalf("draining the last voter: %v", d)
	}
}

// withMembers returns a state machine whose controller group has voters
// 1 to n.
func withMembers(n int) *StateMachine {
	sm := NewStateMachine(zerolog.Nop())
	var voters []uint64
	for id := uint64(1); id <= uint64(n); id++ {
		voters = append(voters, id)
		confChange(sm, id, pb.ConfChangeAddNode, id, nil, slices.Clone(voters), nil)
	}
	return sm
}

func TestReassignApply(t *testing.T) {
	id := NewTopicID()
	founders := []uint64{1, 2, 3}
	part := func(replicas, adding, removing []uint64, moves, completed uint32) Partition {
		p := Partition{Index: 0, Group: firstPartitionGroup, Replicas: replicas, Adding: adding, Removing: removing,
			Moves: moves, Completed: completed, Founders: founders}
		if p.Reassigning() {
			p.Origin = founders
		}
		return p
	}
	cancelled := func(p Partition) Partition {
		p.Cancelled = true
		return p
	}
	reassign := func(target []uint64) []byte {
		return (&Command{Reassign: &Reassign{Topic: id, Partition: 0, Target: target}}).Encode()
	}
	complete := func(replicas []uint64, moves uint32) []byte {
		return (&Command{CompleteReassignment: &CompleteReassignment{Group: firstPartitionGroup, Replicas: replicas, Moves: moves}}).Encode()
	}
	tests := []struct {
		name    string
		entries [][]byte
		want    Partition
	}{
		{"move one replica", [][]byte{reassign([]uint64{2, 3, 4})},
			part([]uint64{2, 3, 4, 1}, []uint64{4}, []uint64{1}, 1, 0)},
		{"completed", [][]byte{reassign([]uint64{2, 3, 4}), complete([]uint64{2, 3, 4}, 1)},
			part([]uint64{2, 3, 4}, nil, nil, 1, 1)},
		{"completion of another target ignored", [][]byte{reassign([]uint64{2, 3, 4}), complete([]uint64{2, 3, 5}, 1)},
			part([]uint64{2, 3, 4, 1}, []uint64{4}, []uint64{1}, 1, 0)},
		{"completion of an earlier move ignored", [][]byte{reassign([]uint64{2, 3, 4}), reassign([]uint64{2, 3, 5}), reassign([]uint64{2, 3, 4}), complete([]uint64{2, 3, 4}, 1)},
			part([]uint64{2, 3, 4, 5, 1}, []uint64{4}, []uint64{5, 1}, 3, 0)},
		// A changed target keeps the original order for a cancellation, and
		// every replica that may be in the group until it completes.
		{"changed target", [][]byte{reassign([]uint64{2, 3, 4}), reassign([]uint64{5, 2, 3})},
			part([]uint64{5, 2, 3, 4, 1}, []uint64{5}, []uint64{4, 1}, 2, 0)},
		{"cancelled", [][]byte{reassign([]uint64{2, 3, 4}), reassign(nil)},
			cancelled(part([]uint64{1, 2, 3, 4}, nil, []uint64{4}, 2, 0))},
		{"cancelled, then asked again", [][]byte{reassign([]uint64{2, 3, 4}), reassign(nil), reassign([]uint64{1, 2, 3, 4})},
			part([]uint64{1, 2, 3, 4}, []uint64{4}, nil, 3, 0)},
		{"cancelled and completed", [][]byte{reassign([]uint64{2, 3, 4}), reassign(nil), complete([]uint64{1, 2, 3}, 2)},
			part([]uint64{1, 2, 3}, nil, nil, 2, 1)},
		{"reorder only is no move", [][]byte{reassign([]uint64{3, 2, 1})},
			part([]uint64{3, 2, 1}, nil, nil, 0, 0)},
		{"shrink", [][]byte{reassign([]uint64{2, 3})},
			part([]uint64{2, 3, 1}, nil, []uint64{1}, 1, 0)},
		{"target outside the cluster ignored", [][]byte{reassign([]uint64{2, 3, 9})},
			part([]uint64{1, 2, 3}, nil, nil, 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sm := withMembers(5)
			base := sm.View().Applied
			sm.Apply(base+1, 1, (&Command{CreateTopic: &CreateTopic{Name: "t", ID: id, Replicas: [][]uint64{founders}}}).Encode())
			for i, e := range tc.entries {
				sm.Apply(base+uint64(i+2), 1, e)
			}
			got := sm.View().Topics["t"].Partitions[0]
			got.MoveSeq = 0
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("partition = %+v, want %+v", got, tc.want)
			}
			if sm.View().TopicByID(id) != sm.View().Topics["t"] {
				t.Fatal("id index not rebuilt")
			}
		})
	}
}

func TestPartitionBootstraps(t *testing.T) {
	p := Partition{Replicas: []uint64{2, 3, 4, 1}, Founders: []uint64{1, 2, 3}, Moves: 1}
	if !p.Bootstraps(1) || !p.Bootstraps(2) || p.Bootstraps(4) {
		t.Fatal("creation replicas found the group until a move completes, others never")
	}
	p.Completed = 1
	if p.Bootstraps(1) || p.Bootstraps(2) {
		t.Fatal("after a completed move no replica founds the group")
	}
}

func TestActiveMoves(t *testing.T) {
	sm := withMembers(3)
	id := NewTopicID()
	replicas := make([][]uint64, 6)
	for i := range replicas {
		replicas[i] = []uint64{1}
	}
	sm.Apply(11, 1, (&Command{CreateTopic: &CreateTopic{Name: "t", ID: id, Replicas: replicas}}).Encode())
	// Partitions 5, 4, 0, 1, 2 start moving in that order; 3 does not.
	for i, p := range []int32{5, 4, 0, 1, 2} {
		sm.Apply(uint64(i+12), 1, (&Command{Reassign: &Reassign{Topic: id, Partition: p, Target: []uint64{2}}}).Encode())
	}
	groups := func(ps ...int32) map[uint64]bool {
		out := map[uint64]bool{}
		for _, p := range ps {
			out[sm.View().Topics["t"].Partitions[p].Group] = true
		}
		return out
	}
	active := sm.View().ActiveMoves()
	if want := groups(5, 4, 0, 1); !reflect.DeepEqual(active, want) {
		t.Fatalf("active = %v, want %v", active, want)
	}
	// A waiting move is carried out as the assignment it had; a running one
	// as it is.
	parts := sm.View().Topics["t"].Partitions
	if held := parts[2].InEffect(active); !slices.Equal(held.Replicas, []uint64{1}) || held.Reassigning() {
		t.Fatalf("waiting move in effect as %+v", held)
	}
	if running := parts[5].InEffect(active); !reflect.DeepEqual(running, parts[5]) {
		t.Fatalf("running move in effect as %+v, want %+v", running, parts[5])
	}
	// A changed target keeps its turn; a finished move makes room.
	sm.Apply(17, 1, (&Command{Reassign: &Reassign{Topic: id, Partition: 4, Target: []uint64{3}}}).Encode())
	p5 := sm.View().Topics["t"].Partitions[5]
	sm.Apply(18, 1, (&Command{CompleteReassignment: &CompleteReassignment{Group: p5.Group, Replicas: []uint64{2}, Moves: p5.Moves}}).Encode())
	if got, want := sm.View().ActiveMoves(), groups(4, 0, 1, 2); !reflect.DeepEqual(got, want) {
		t.Fatalf("active = %v, want %v", got, want)
	}
}
