package controller

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

// moveStep is one entry of TestActiveMovesPerBroker, built from the state
// it is applied to.
type moveStep func(s *State) *Command

func moveTo(p int32, target ...uint64) moveStep {
	return func(s *State) *Command {
		return &Command{Reassign: &Reassign{Topic: s.Topics["t"].ID, Partition: p, Target: target}}
	}
}

func cancelMove(p int32) moveStep {
	return func(s *State) *Command {
		return &Command{Reassign: &Reassign{Topic: s.Topics["t"].ID, Partition: p}}
	}
}

// completeMove ends partition p's move, as its group's leader asks once
// the voters are the target.
func completeMove(p int32) moveStep {
	return func(s *State) *Command {
		part := s.Topics["t"].Partitions[p]
		return &Command{CompleteReassignment: &CompleteReassignment{Group: part.Group, Replicas: part.Target(), Moves: part.Moves}}
	}
}

func registerAt(id uint64, level int) moveStep {
	return func(*State) *Command {
		return &Command{RegisterBroker: &RegisterBroker{NodeID: id, KafkaAddr: fmt.Sprintf("k%d", id), RaftAddr: fmt.Sprintf("r%d", id), Level: level}}
	}
}

// createTopic creates topic t: ten partitions on brokers [1 2].
func createTopic(*State) *Command {
	replicas := make([][]uint64, 10)
	for i := range replicas {
		replicas[i] = []uint64{1, 2}
	}
	return &Command{CreateTopic: &CreateTopic{Name: "t", ID: NewTopicID(), Replicas: replicas}}
}

func deleteTopic(s *State) *Command {
	return &Command{DeleteTopic: &DeleteTopic{ID: s.Topics["t"].ID}}
}

// movesFrom moves partitions first to first+n-1 to target.
func movesFrom(first, n int32, target ...uint64) []moveStep {
	var out []moveStep
	for p := first; p < first+n; p++ {
		out = append(out, moveTo(p, target...))
	}
	return out
}

func steps(groups ...[]moveStep) []moveStep { return slices.Concat(groups...) }

// TestActiveMovesPerBroker: five members (broker 5 standing for a dead
// one), a topic of ten partitions on brokers [1 2]. From ClusterLevel 2 a
// move runs while each broker it adds a replica to has fewer than
// MaxMovesPerBroker running moves adding to it, oldest first; a move
// adding nobody runs at once; a running move is never held again. While a
// member registered a lower level, every broker runs the first
// MaxActiveMoves moves, as a broker of that level does.
func TestActiveMovesPerBroker(t *testing.T) {
	tests := []struct {
		name   string
		levels []int // of brokers 1 to 5
		steps  []moveStep
		active []int32
		level  int // ClusterLevel after the steps
	}{
		{"moves to a dead broker do not hold one elsewhere", nil,
			steps(movesFrom(0, 4, 1, 5), movesFrom(4, 1, 1, 4)), []int32{0, 1, 2, 3, 4}, 2},
		{"the fifth move to one broker waits", nil,
			movesFrom(0, 5, 1, 5), []int32{0, 1, 2, 3}, 2},
		{"a move adding two brokers waits for both, not others' moves", nil,
			steps(movesFrom(0, 4, 1, 5), movesFrom(4, 1, 4, 5), movesFrom(5, 1, 1, 4)), []int32{0, 1, 2, 3, 5}, 2},
		{"a shrink needs no turn", nil,
			steps(movesFrom(0, 4, 1, 5), movesFrom(4, 1, 1)), []int32{0, 1, 2, 3, 4}, 2},
		{"a cancelled move keeps running and frees its turn", nil,
			steps(movesFrom(0, 5, 1, 5), []moveStep{cancelMove(0)}), []int32{0, 1, 2, 3, 4}, 2},
		{"a completed move frees its turn, oldest waiting first", nil,
			steps(movesFrom(0, 6, 1, 5), []moveStep{completeMove(1)}), []int32{0, 2, 3, 4}, 2},
		{"a running move changed to a full broker keeps its turn", nil,
			steps(movesFrom(0, 4, 1, 5), movesFrom(4, 4, 1, 4), movesFrom(0, 1, 1, 4)), []int32{0, 1, 2, 3, 4, 5, 6, 7}, 2},
		{"a waiting move changed to a free broker runs", nil,
			steps(movesFrom(0, 5, 1, 5), movesFrom(4, 1, 1, 3)), []int32{0, 1, 2, 3, 4}, 2},
		{"a deleted topic's moves free their turns", nil,
			steps(movesFrom(0, 4, 1, 5), []moveStep{deleteTopic, createTopic}, movesFrom(0, 4, 1, 5)), []int32{0, 1, 2, 3}, 2},
		{"a member of level 1: the first four run", []int{2, 2, 1, 2, 2},
			steps(movesFrom(0, 4, 1, 5), movesFrom(4, 1, 1, 4)), []int32{0, 1, 2, 3}, 1},
		{"every member at level 2: the rule switches", []int{2, 2, 1, 2, 2},
			steps(movesFrom(0, 5, 1, 5), movesFrom(5, 1, 1, 4), []moveStep{registerAt(3, 2)}), []int32{0, 1, 2, 3, 5}, 2},
		{"a broker registered anew below the level lowers nothing", nil,
			steps(movesFrom(0, 5, 1, 5), movesFrom(5, 1, 1, 4), []moveStep{registerAt(3, 1), registerAt(4, 0)}), []int32{0, 1, 2, 3, 5}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sm := withMembers(5)
			levels := tc.levels
			if levels == nil {
				levels = []int{2, 2, 2, 2, 2}
			}
			for i, l := range levels {
				apply(sm, registerAt(uint64(i+1), l))
			}
			apply(sm, createTopic)
			for _, st := range tc.steps {
				apply(sm, st)
			}
			v := sm.View()
			want := map[uint64]bool{}
			for _, p := range tc.active {
				want[v.Topics["t"].Partitions[p].Group] = true
			}
			if got := v.ActiveMoves(); !reflect.DeepEqual(got, want) {
				t.Fatalf("active = %v, want the moves of partitions %v (%v)", got, tc.active, want)
			}
			if v.ClusterLevel != tc.level {
				t.Fatalf("cluster level %d, want %d", v.ClusterLevel, tc.level)
			}
		})
	}
}

// apply applies the command st builds at the state machine's next index.
func apply(sm *StateMachine, st moveStep) {
	v := sm.View()
	sm.Apply(v.Applied+1, 1, st(v).Encode())
}

// TestClusterLevel: the level rises once every member registered it,
// counting a learner that joined (registered by its join at level 0)
// and not a broker that left; it never falls.
func TestClusterLevel(t *testing.T) {
	sm := withMembers(3)
	for id := uint64(1); id <= 3; id++ {
		apply(sm, registerAt(id, 2))
	}
	if l := sm.View().ClusterLevel; l != 2 {
		t.Fatalf("level %d with every voter at 2", l)
	}

	sm = withMembers(3)
	apply(sm, registerAt(1, 2))
	apply(sm, registerAt(2, 2))
	if l := sm.View().ClusterLevel; l != 0 {
		t.Fatalf("level %d with voter 3 unregistered", l)
	}
	apply(sm, registerAt(3, 1))
	if l := sm.View().ClusterLevel; l != 1 {
		t.Fatalf("level %d with voter 3 at level 1", l)
	}
	next := sm.View().Applied + 1
	confChange(sm, next, pb.ConfChangeAddLearnerNode, 4, []byte(`{"node_id":4,"raft_addr":"r4","kafka_addr":"k4"}`), []uint64{1, 2, 3}, []uint64{4})
	apply(sm, registerAt(3, 2))
	if l := sm.View().ClusterLevel; l != 1 {
		t.Fatalf("level %d with learner 4 registered by its join only", l)
	}
	apply(sm, registerAt(4, 2))
	if l := sm.View().ClusterLevel; l != 2 {
		t.Fatalf("level %d with every member at 2", l)
	}

	// A broker of level 1 that leaves lets the level rise.
	sm = withMembers(3)
	for id, l := range []int{2, 2, 1} {
		apply(sm, registerAt(uint64(id+1), l))
	}
	apply(sm, func(*State) *Command { return &Command{RemoveBroker: &RemoveBroker{NodeID: 3}} })
	confChange(sm, sm.View().Applied+1, pb.ConfChangeRemoveNode, 3, nil, []uint64{1, 2}, nil)
	if l := sm.View().ClusterLevel; l != 2 {
		t.Fatalf("level %d once the broker of level 1 left", l)
	}
}

// TestListed: Kafka lists a reassignment only while it adds replicas.
func TestListed(t *testing.T) {
	sm := withMembers(4)
	id := NewTopicID()
	apply(sm, func(*State) *Command {
		return &Command{CreateTopic: &CreateTopic{Name: "t", ID: id, Replicas: [][]uint64{{1, 2, 3}, {1, 2, 3}}}}
	})
	apply(sm, moveTo(0, 2, 3, 4))
	apply(sm, moveTo(1, 2, 3))
	v := sm.View()
	if p := v.Topics["t"].Partitions[0]; !p.Listed() {
		t.Fatalf("a move adding 4 not listed: %+v", p)
	}
	if p := v.Topics["t"].Partitions[1]; !p.Reassigning() || p.Listed() {
		t.Fatalf("a shrink under way listed: %+v", p)
	}
	apply(sm, cancelMove(0))
	if p := sm.View().Topics["t"].Partitions[0]; !p.Reassigning() || p.Listed() {
		t.Fatalf("a cancelled move listed while raft takes 4 out: %+v", p)
	}
	// Nothing left to cancel, as in Kafka.
	if _, err := planMove(sm.View(), Move{Topic: "t", Partition: 0}); err == nil {
		t.Fatal("cancelling a cancelled move accepted")
	}
}

// TestMovesOff: a drain counts only the moves of partitions on the broker
// it drains, so that moves stuck elsewhere do not hold it.
func TestMovesOff(t *testing.T) {
	sm := withMembers(5)
	replicas := make([][]uint64, 10)
	for i := range replicas {
		replicas[i] = []uint64{1, 2}
	}
	replicas[9] = []uint64{3, 4}
	apply(sm, func(*State) *Command {
		return &Command{CreateTopic: &CreateTopic{Name: "t", ID: NewTopicID(), Replicas: replicas}}
	})
	for _, st := range movesFrom(0, 9, 1, 5) {
		apply(sm, st)
	}
	if n := movesOff(sm.View(), 3); n != 0 {
		t.Fatalf("moves off broker 3: %d, want 0", n)
	}
	apply(sm, moveTo(9, 4, 1))
	if n := movesOff(sm.View(), 3); n != 1 {
		t.Fatalf("moves off broker 3: %d, want 1", n)
	}
	if n := movesOff(sm.View(), 2); n != 9 {
		t.Fatalf("moves off broker 2: %d, want 9", n)
	}
}
