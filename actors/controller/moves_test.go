package controller

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
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
			checkMovingIndex(t, v)
		})
	}
}

// checkMovingIndex fails t unless the moves apply indexed as topics
// changed are those a walk of every partition finds.
func checkMovingIndex(t *testing.T, v *State) {
	t.Helper()
	scan := *v
	scan.reindex()
	got, want := v.movesInOrder(), scan.movesInOrder()
	if len(got) != len(want) {
		t.Fatalf("indexed moves %+v, a walk finds %+v", got, want)
	}
	for i := range got {
		if got[i].Topic != want[i].Topic || !reflect.DeepEqual(got[i].Partition, want[i].Partition) {
			t.Fatalf("indexed move %d: %+v, a walk finds %+v", i, got[i], want[i])
		}
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

// TestCancelUnderWay: the controller takes a cancel of any move under
// way, one that only removes replicas too (a shrink stuck on a replica it
// keeps, which Kafka lists and cancels), and a cancel ends a move at once
// unless raft must take out replicas it may have added; cancelling that
// cancellation changes nothing.
func TestCancelUnderWay(t *testing.T) {
	sm := withMembers(4)
	id := NewTopicID()
	apply(sm, func(*State) *Command {
		return &Command{CreateTopic: &CreateTopic{Name: "t", ID: id, Replicas: [][]uint64{{1, 2, 3}, {1, 2, 3}}}}
	})
	apply(sm, moveTo(0, 2, 3, 4))
	apply(sm, moveTo(1, 1, 2))
	for p := range int32(2) {
		if _, err := planMove(sm.View(), Move{Topic: "t", Partition: p}); err != nil {
			t.Fatalf("cancel of partition %d's move: %v", p, err)
		}
	}
	apply(sm, cancelMove(1))
	if p := sm.View().Topics["t"].Partitions[1]; p.Reassigning() || !slices.Equal(p.Replicas, []uint64{1, 2, 3}) {
		t.Fatalf("a cancelled shrink not ended at once: %+v", p)
	}
	apply(sm, cancelMove(0))
	want := sm.View().Topics["t"].Partitions[0]
	if !want.Reassigning() || !slices.Equal(want.Removing, []uint64{4}) {
		t.Fatalf("a cancelled move that may have added 4 does not take it out: %+v", want)
	}
	if _, err := planMove(sm.View(), Move{Topic: "t", Partition: 0}); err != nil {
		t.Fatalf("cancel of a cancellation: %v", err)
	}
	apply(sm, cancelMove(0))
	if p := sm.View().Topics["t"].Partitions[0]; !slices.Equal(p.Replicas, want.Replicas) || !slices.Equal(p.Removing, want.Removing) || p.Running != want.Running {
		t.Fatalf("cancelling a cancellation changed it: %+v, was %+v", p, want)
	}
	apply(sm, cancelMove(1))
	if _, err := planMove(sm.View(), Move{Topic: "t", Partition: 1}); err == nil {
		t.Fatal("cancelling no move accepted")
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

// TestMoveOrderTies: a state written before MoveSeq existed has its moves
// in flight all at MoveSeq 0. Every broker must give them their turns in
// the same order, under either rule, or brokers would carry out different
// moves, for good.
func TestMoveOrderTies(t *testing.T) {
	for _, level := range []int{1, 2} {
		t.Run(fmt.Sprint("level ", level), func(t *testing.T) {
			s := State{ClusterID: "c", Brokers: map[uint64]Broker{}, Voters: []uint64{1, 2, 3, 4, 5}, NextGroup: firstPartitionGroup}
			for id := uint64(1); id <= 5; id++ {
				s.Brokers[id] = Broker{NodeID: id, KafkaAddr: fmt.Sprint("k", id), RaftAddr: fmt.Sprint("r", id), Level: level}
			}
			s.Topics = map[string]*Topic{}
			for i := range 10 {
				name := fmt.Sprintf("t%d", i)
				s.Topics[name] = &Topic{Name: name, ID: NewTopicID(), Partitions: []Partition{{
					Group: s.NextGroup, Replicas: []uint64{5, 1}, Adding: []uint64{5}, Removing: []uint64{1}, Origin: []uint64{1}, Moves: 1, Founders: []uint64{1},
				}}}
				s.NextGroup++
			}
			data, err := json.Marshal(&s)
			if err != nil {
				t.Fatal(err)
			}
			var first map[uint64]bool
			for try := range 50 {
				sm := NewStateMachine(zerolog.Nop())
				if err := sm.Restore(&pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(uint64(10))}}); err != nil {
					t.Fatal(err)
				}
				sm.Apply(11, 1, nil) // any entry: settle raises the level and gives turns
				got := sm.View().ActiveMoves()
				if len(got) != MaxActiveMoves {
					t.Fatalf("%d moves run, want %d", len(got), MaxActiveMoves)
				}
				if try == 0 {
					first = got
					continue
				}
				if !maps.Equal(got, first) {
					t.Fatalf("two appliers of the same entry ran different moves: %v vs %v", slices.Sorted(maps.Keys(first)), slices.Sorted(maps.Keys(got)))
				}
			}
		})
	}
}

// TestMoveBoundKept: a shrink, and a cancelled move, need no turn; asking
// such a move for a new target that adds a replica must not let it run past
// MaxMovesPerBroker on the broker it adds to.
func TestMoveBoundKept(t *testing.T) {
	for _, variant := range []string{"shrink then grow", "cancel a waiting move, ask it again"} {
		t.Run(variant, func(t *testing.T) {
			sm := withMembers(5)
			for id := uint64(1); id <= 5; id++ {
				apply(sm, registerAt(id, 2))
			}
			apply(sm, createTopic)
			for _, st := range movesFrom(0, 4, 1, 5) {
				apply(sm, st)
			}
			if variant == "shrink then grow" {
				apply(sm, moveTo(4, 1)) // [1 2] -> [1]
			} else {
				apply(sm, moveTo(4, 1, 5)) // waits: 5 is full
				if sm.View().ActiveMoves()[sm.View().Topics["t"].Partitions[4].Group] {
					t.Fatal("the fifth move to 5 runs at once")
				}
				apply(sm, cancelMove(4))
				// It never started broker 5's replica: nothing to take out.
				if p := sm.View().Topics["t"].Partitions[4]; p.Reassigning() {
					t.Fatalf("a cancelled move that never ran is still under way: %+v", p)
				}
			}
			apply(sm, moveTo(4, 1, 5))
			v := sm.View()
			n := 0
			active := v.ActiveMoves()
			for _, p := range v.Topics["t"].Partitions {
				if active[p.Group] && slices.Contains(p.Adding, 5) {
					n++
				}
			}
			if n > MaxMovesPerBroker {
				t.Fatalf("%d running moves add a replica to broker 5, bound %d", n, MaxMovesPerBroker)
			}
			checkMovingIndex(t, v)
		})
	}
}

// BenchmarkSettle: the cost settle adds to every applied controller entry
// (here an empty one) with many partitions, some of them moving.
func BenchmarkSettle(b *testing.B) {
	for _, moves := range []int{0, 200} {
		for _, parts := range []int{1000, 10000, 50000} {
			b.Run(fmt.Sprintf("partitions=%d/moves=%d", parts, moves), func(b *testing.B) {
				sm := withMembers(5)
				for id := uint64(1); id <= 5; id++ {
					apply(sm, registerAt(id, 2))
				}
				for i := range parts / 10 {
					name := fmt.Sprintf("t%d", i)
					apply(sm, func(*State) *Command {
						replicas := make([][]uint64, 10)
						for j := range replicas {
							replicas[j] = []uint64{1, 2}
						}
						return &Command{CreateTopic: &CreateTopic{Name: name, ID: NewTopicID(), Replicas: replicas}}
					})
				}
				for i := range min(moves, parts/10) {
					name := fmt.Sprintf("t%d", i)
					apply(sm, func(s *State) *Command {
						return &Command{Reassign: &Reassign{Topic: s.Topics[name].ID, Partition: 0, Target: []uint64{1, 5}}}
					})
				}
				b.ResetTimer()
				for range b.N {
					sm.Apply(sm.View().Applied+1, 1, nil)
				}
			})
		}
	}
}

// TestClusterLevelLogged: apply tells the operator which members hold the
// cluster's level back, once each time they change, and logs an error for
// a member registering below the level the cluster switched to.
func TestClusterLevelLogged(t *testing.T) {
	var buf bytes.Buffer
	sm := NewStateMachine(zerolog.New(&buf))
	var voters []uint64
	for id := uint64(1); id <= 3; id++ {
		voters = append(voters, id)
		confChange(sm, id, pb.ConfChangeAddNode, id, nil, slices.Clone(voters), nil)
	}
	apply(sm, registerAt(1, CommandLevel))
	apply(sm, registerAt(2, 1))
	apply(sm, func(*State) *Command { return &Command{SetConfig: &SetConfig{Key: "k", Value: "v"}} })
	apply(sm, registerAt(2, 0))
	apply(sm, registerAt(3, CommandLevel))
	apply(sm, registerAt(2, CommandLevel))
	apply(sm, registerAt(3, 1))

	var held []string
	var errs int
	for line := range strings.Lines(buf.String()) {
		var e struct {
			Level   string          `json:"level"`
			Message string          `json:"message"`
			HeldBy  json.RawMessage `json:"held_by"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch {
		case strings.HasPrefix(e.Message, "cluster command level held back"):
			held = append(held, string(e.HeldBy))
		case e.Level == "error":
			errs++
			if !strings.Contains(line, `"node_id":3`) || !strings.Contains(line, "below the cluster's") {
				t.Errorf("error logged: %s", line)
			}
		}
	}
	want := []string{
		`{"1":"unregistered"}`,
		`{"1":"unregistered","2":"unregistered"}`,
		`{"1":"unregistered","2":"unregistered","3":"unregistered"}`,
		`{"2":"unregistered","3":"unregistered"}`,
		`{"2":1,"3":"unregistered"}`,
		`{"2":0,"3":"unregistered"}`,
		`{"2":0}`,
	}
	if !slices.Equal(held, want) {
		t.Errorf("held back logged as\n%s\nwant\n%s", strings.Join(held, "\n"), strings.Join(want, "\n"))
	}
	if errs != 1 {
		t.Errorf("%d errors logged, want 1 for broker 3's registration below the cluster's level", errs)
	}
	if l := sm.View().ClusterLevel; l != CommandLevel {
		t.Errorf("cluster level %d, want %d", l, CommandLevel)
	}
}
