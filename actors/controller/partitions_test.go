package controller

import (
	"errors"
	"slices"
	"testing"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
)

// partitionsView is three brokers with topic "t" (two partitions, RF 3,
// as assign placed them from broker 2), topic "one" (RF 1) and the offsets
// topic.
func partitionsView() *State {
	s := viewWithBrokers(1, 2, 3)
	brokers := s.BrokerList()
	s.Topics["t"] = topicOf("t", assign(brokers, 2, 3, 1))
	s.Topics["one"] = topicOf("one", [][]uint64{{1}, {2}})
	s.Topics[OffsetsTopic] = topicOf(OffsetsTopic, [][]uint64{{1}})
	return s
}

func topicOf(name string, replicas [][]uint64) *Topic {
	t := &Topic{Name: name, ID: NewTopicID()}
	for i, rs := range replicas {
		t.Partitions = append(t.Partitions, Partition{Index: int32(i), Group: uint64(firstPartitionGroup + i), Replicas: rs})
	}
	return t
}

func TestPlanCreatePartitions(t *testing.T) {
	draining := func(s *State) { s.Voters, s.Draining = []uint64{1, 2, 3}, []uint64{3} }
	tests := []struct {
		name         string
		tweak        func(*State)
		specs        []PartitionsSpec
		validateOnly bool
		wantErrs     []*kerr.Error // per result; nil: success
		wantReplicas [][][]uint64  // per result: the command's new replicas; nil: no command
	}{
		{name: "grow continues the spread",
			specs:        []PartitionsSpec{{Name: "t", Count: 5}},
			wantErrs:     []*kerr.Error{nil},
			wantReplicas: [][][]uint64{{{1, 2, 3}, {2, 3, 1}, {3, 1, 2}}}},
		{name: "grow rf 1",
			specs:        []PartitionsSpec{{Name: "one", Count: 4}},
			wantErrs:     []*kerr.Error{nil},
			wantReplicas: [][][]uint64{{{3}, {1}}}},
		{name: "same count", specs: []PartitionsSpec{{Name: "t", Count: 2}}, wantErrs: []*kerr.Error{kerr.InvalidPartitions}},
		{name: "decrease", specs: []PartitionsSpec{{Name: "t", Count: 1}}, wantErrs: []*kerr.Error{kerr.InvalidPartitions}},
		{name: "too many at once", specs: []PartitionsSpec{{Name: "t", Count: maxPartitions + 3}}, wantErrs: []*kerr.Error{kerr.InvalidPartitions}},
		{name: "unknown topic", specs: []PartitionsSpec{{Name: "nope", Count: 3}}, wantErrs: []*kerr.Error{kerr.UnknownTopicOrPartition}},
		{name: "offsets topic", specs: []PartitionsSpec{{Name: OffsetsTopic, Count: 3}}, wantErrs: []*kerr.Error{kerr.InvalidTopicException}},
		{name: "assignment",
			specs:        []PartitionsSpec{{Name: "t", Count: 3, Assignment: [][]uint64{{3, 2, 1}}}},
			wantErrs:     []*kerr.Error{nil},
			wantReplicas: [][][]uint64{{{3, 2, 1}}}},
		{name: "too few assignments", specs: []PartitionsSpec{{Name: "t", Count: 4, Assignment: [][]uint64{{3, 2, 1}}}}, wantErrs: []*kerr.Error{kerr.InvalidReplicaAssignment}},
		{name: "empty assignment", specs: []PartitionsSpec{{Name: "t", Count: 3, Assignment: [][]uint64{}}}, wantErrs: []*kerr.Error{kerr.InvalidReplicaAssignment}},
		{name: "assignment of another rf", specs: []PartitionsSpec{{Name: "t", Count: 3, Assignment: [][]uint64{{1, 2}}}}, wantErrs: []*kerr.Error{kerr.InvalidReplicaAssignment}},
		{name: "assignment with no replicas", specs: []PartitionsSpec{{Name: "t", Count: 3, Assignment: [][]uint64{{}}}}, wantErrs: []*kerr.Error{kerr.InvalidReplicaAssignment}},
		{name: "assignment repeats a broker", specs: []PartitionsSpec{{Name: "t", Count: 3, Assignment: [][]uint64{{1, 2, 1}}}}, wantErrs: []*kerr.Error{kerr.InvalidReplicaAssignment}},
		{name: "assignment names an unknown broker", specs: []PartitionsSpec{{Name: "t", Count: 3, Assignment: [][]uint64{{1, 2, 9}}}}, wantErrs: []*kerr.Error{kerr.InvalidReplicaAssignment}},
		{name: "assignment names a draining broker", tweak: draining,
			specs: []PartitionsSpec{{Name: "one", Count: 3, Assignment: [][]uint64{{3}}}}, wantErrs: []*kerr.Error{kerr.InvalidReplicaAssignment}},
		{name: "rf above the placeable brokers", tweak: draining,
			specs: []PartitionsSpec{{Name: "t", Count: 3}}, wantErrs: []*kerr.Error{kerr.InvalidReplicationFactor}},
		{name: "draining broker skipped", tweak: draining,
			specs:        []PartitionsSpec{{Name: "one", Count: 5}},
			wantErrs:     []*kerr.Error{nil},
			wantReplicas: [][][]uint64{{{1}, {2}, {1}}}},
		{name: "duplicate names",
			specs:        []PartitionsSpec{{Name: "t", Count: 3}, {Name: "one", Count: 3}, {Name: "t", Count: 4}},
			wantErrs:     []*kerr.Error{kerr.InvalidRequest, nil},
			wantReplicas: [][][]uint64{nil, {{3}}}},
		{name: "validate only",
			specs:        []PartitionsSpec{{Name: "t", Count: 5}, {Name: "one", Count: 1}},
			validateOnly: true,
			wantErrs:     []*kerr.Error{nil, kerr.InvalidPartitions},
			wantReplicas: [][][]uint64{nil, nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			view := partitionsView()
			if tc.tweak != nil {
				tc.tweak(view)
			}
			results, cmds := planAllPartitions(view, nil, tc.specs, tc.validateOnly)
			if len(results) != len(tc.wantErrs) || len(cmds) != len(results) {
				t.Fatalf("%d results, %d commands; want %d", len(results), len(cmds), len(tc.wantErrs))
			}
			for i, res := range results {
				want := tc.wantErrs[i]
				if (want == nil) != (res.Err == nil) || want != nil && !errors.Is(res.Err, want) {
					t.Fatalf("result %d (%s): %v, want %v", i, res.Name, res.Err, want)
				}
				if res.Err != nil && cmds[i] != nil {
					t.Fatalf("result %d: a command for a failed topic", i)
				}
			}
			for i, want := range tc.wantReplicas {
				switch {
				case want == nil && cmds[i] != nil:
					t.Fatalf("result %d: command %+v, want none", i, cmds[i])
				case want == nil:
				case cmds[i] == nil:
					t.Fatalf("result %d: no command", i)
				case !slices.EqualFunc(cmds[i].Replicas, want, slices.Equal):
					t.Fatalf("result %d: new replicas %v, want %v", i, cmds[i].Replicas, want)
				case cmds[i].Topic != view.Topics[results[i].Name].ID || int(cmds[i].From) != len(view.Topics[results[i].Name].Partitions):
					t.Fatalf("result %d: command %+v for the wrong topic or count", i, cmds[i])
				}
			}
		})
	}
}

// TestPlanPartitionsOnLiveBrokers: new partitions go to the brokers this
// one has heard from lately, as Kafka places them on unfenced brokers; an
// explicit assignment may name a dead broker, but not give a partition
// only dead ones.
func TestPlanPartitionsOnLiveBrokers(t *testing.T) {
	view := partitionsView()
	alive := func(id uint64) bool { return id != 3 }
	cmd, _, err := planPartitions(view, alive, PartitionsSpec{Name: "one", Count: 6})
	if err != nil {
		t.Fatal(err)
	}
	for i, rs := range cmd.Replicas {
		if slices.Contains(rs, 3) {
			t.Fatalf("new partition %d placed on dead broker 3: %v", i, rs)
		}
	}
	if _, _, err := planPartitions(view, alive, PartitionsSpec{Name: "t", Count: 3}); !errors.Is(err, kerr.InvalidReplicationFactor) {
		t.Fatalf("RF 3 with two live brokers: err = %v, want INVALID_REPLICATION_FACTOR", err)
	}
	if _, _, err := planPartitions(view, alive, PartitionsSpec{Name: "one", Count: 4, Assignment: [][]uint64{{3}, {1}}}); !errors.Is(err, kerr.InvalidReplicaAssignment) {
		t.Fatalf("a new partition on dead broker 3 only: err = %v, want INVALID_REPLICA_ASSIGNMENT", err)
	}
	if _, _, err := planPartitions(view, alive, PartitionsSpec{Name: "t", Count: 3, Assignment: [][]uint64{{3, 2, 1}}}); err != nil {
		t.Fatalf("an assignment naming dead broker 3 among live ones: %v", err)
	}
}

// TestPartitionMessages: the errors say what Kafka's do, word for word but
// for the final period (ZkAdminManager.createPartitions).
func TestPartitionMessages(t *testing.T) {
	view := partitionsView()
	for _, tc := range []struct {
		count int32
		want  string
	}{
		{2, "Topic already has 2 partitions"},
		{1, "Topic currently has 2 partitions, which is higher than the requested 1"},
	} {
		_, _, err := planPartitions(view, nil, PartitionsSpec{Name: "t", Count: tc.count})
		var ke *kerr.Error
		if !errors.As(err, &ke) || err.Error() != ke.Error()+": "+tc.want {
			t.Errorf("count %d: %q, want the message %q", tc.count, err, tc.want)
		}
	}
}

func TestApplyAddPartitions(t *testing.T) {
	sm := NewStateMachine(zerolog.Nop())
	sm.Apply(1, 1, (&Command{RegisterBroker: &RegisterBroker{NodeID: 1}}).Encode())
	sm.Apply(2, 1, (&Command{RegisterBroker: &RegisterBroker{NodeID: 2}}).Encode())
	id := NewTopicID()
	sm.Apply(3, 1, (&Command{CreateTopic: &CreateTopic{Name: "t", ID: id, Replicas: [][]uint64{{1}, {2}}}}).Encode())
	sm.Apply(4, 1, (&Command{CreateTopic: &CreateTopic{Name: "u", ID: NewTopicID(), Replicas: [][]uint64{{1}}}}).Encode())
	add := &AddPartitions{Topic: id, From: 2, Replicas: [][]uint64{{2}, {1}}}
	sm.Apply(5, 1, (&Command{AddPartitions: add}).Encode())
	v := sm.View()
	parts := v.Topics["t"].Partitions
	if len(parts) != 4 || v.TopicByID(id) != v.Topics["t"] {
		t.Fatalf("after adding: %+v", v.Topics["t"])
	}
	uGroup := v.Topics["u"].Partitions[0].Group
	for i, p := range parts[2:] {
		if p.Index != int32(2+i) || p.AddedAt != 5 || p.Group != uGroup+1+uint64(i) || !slices.Equal(p.Replicas, add.Replicas[i]) || !p.Bootstraps(p.Replicas[0]) {
			t.Fatalf("new partition %d: %+v", 2+i, p)
		}
	}
	if parts[0].AddedAt != 0 {
		t.Fatalf("partition 0 AddedAt %d", parts[0].AddedAt)
	}

	// The same command again (a retried proposal), a stale count, a
	// broker that is not registered, a deleted topic: nothing changes.
	before := v
	for i, cmd := range []*AddPartitions{
		add,
		{Topic: id, From: 3, Replicas: [][]uint64{{1}}},
		{Topic: id, From: 4, Replicas: [][]uint64{{9}}},
		{Topic: NewTopicID(), From: 1, Replicas: [][]uint64{{1}}},
		{Topic: id, From: 4},
	} {
		sm.Apply(uint64(6+i), 1, (&Command{AddPartitions: cmd}).Encode())
		if v := sm.View(); len(v.Topics["t"].Partitions) != 4 || v.NextGroup != before.NextGroup {
			t.Fatalf("command %d changed the topic: %d partitions, next group %d", i, len(v.Topics["t"].Partitions), v.NextGroup)
		}
	}
	// The state before is untouched (published states are immutable).
	if len(before.Topics["t"].Partitions) != 4 || len(parts) != 4 {
		t.Fatal("a published state changed")
	}
}
