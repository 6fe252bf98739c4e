package controller

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	pb "go.etcd.io/raft/v3/raftpb"
)

func viewWithBrokers(ids ...uint64) *State {
	s := &State{Brokers: map[uint64]Broker{}, Topics: map[string]*Topic{"taken": {Name: "taken"}}}
	for _, id := range ids {
		s.Brokers[id] = Broker{NodeID: id}
	}
	return s
}

func TestPlanTopic(t *testing.T) {
	tests := []struct {
		name    string
		brokers []uint64
		spec    TopicSpec
		wantErr *kerr.Error
		wantP   int32
		wantRF  int16
	}{
		{"defaults on one broker", []uint64{1}, TopicSpec{Name: "a", Partitions: -1, ReplicationFactor: -1}, nil, 1, 1},
		{"default rf capped at 3", []uint64{1, 2, 3, 4}, TopicSpec{Name: "a", Partitions: 12, ReplicationFactor: -1}, nil, 12, 3},
		{"explicit", []uint64{1, 2, 3}, TopicSpec{Name: "a.b_c-9", Partitions: 3, ReplicationFactor: 2}, nil, 3, 2},
		{"rf above brokers", []uint64{1, 2}, TopicSpec{Name: "a", Partitions: 1, ReplicationFactor: 3}, kerr.InvalidReplicationFactor, 0, 0},
		{"zero partitions", []uint64{1}, TopicSpec{Name: "a", Partitions: 0, ReplicationFactor: 1}, kerr.InvalidPartitions, 0, 0},
		{"bad name", []uint64{1}, TopicSpec{Name: "a/b", Partitions: 1, ReplicationFactor: 1}, kerr.InvalidTopicException, 0, 0},
		{"dot name", []uint64{1}, TopicSpec{Name: "..", Partitions: 1, ReplicationFactor: 1}, kerr.InvalidTopicException, 0, 0},
		{"long name", []uint64{1}, TopicSpec{Name: strings.Repeat("x", 250), Partitions: 1, ReplicationFactor: 1}, kerr.InvalidTopicException, 0, 0},
		{"exists", []uint64{1}, TopicSpec{Name: "taken", Partitions: 1, ReplicationFactor: 1}, kerr.TopicAlreadyExists, 0, 0},
		{"unknown config", []uint64{1}, TopicSpec{Name: "a", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"bogus": "1"}}, kerr.InvalidConfig, 0, 0},
		{"bad config value", []uint64{1}, TopicSpec{Name: "a", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "soon"}}, kerr.InvalidConfig, 0, 0},
		{"compaction unsupported", []uint64{1}, TopicSpec{Name: "a", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"cleanup.policy": "compact"}}, kerr.InvalidConfig, 0, 0},
		{"segment below a batch header", []uint64{1}, TopicSpec{Name: "a", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"segment.bytes": "60"}}, kerr.InvalidConfig, 0, 0},
		{"segment past 32-bit positions", []uint64{1}, TopicSpec{Name: "a", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"segment.bytes": "2147483648"}}, kerr.InvalidConfig, 0, 0},
		{"good configs", []uint64{1}, TopicSpec{Name: "a", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "1000", "segment.bytes": "1048576"}}, nil, 1, 1},
		{"assignment", []uint64{1, 2, 3}, TopicSpec{Name: "a", Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{{1, 2}, {2, 3}}}, nil, 2, 2},
		{"assignment unknown broker", []uint64{1, 2}, TopicSpec{Name: "a", Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{{1, 9}}}, kerr.InvalidReplicaAssignment, 0, 0},
		{"assignment repeated broker", []uint64{1, 2}, TopicSpec{Name: "a", Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{{1, 1}}}, kerr.InvalidReplicaAssignment, 0, 0},
		{"assignment with a partition missing", []uint64{1, 2}, TopicSpec{Name: "a", Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{{1}, nil}}, kerr.InvalidReplicaAssignment, 0, 0},
		{"assignment of too many partitions", []uint64{1}, TopicSpec{Name: "a", Partitions: -1, ReplicationFactor: -1, Assignment: make([][]uint64, maxPartitions+1)}, kerr.InvalidPartitions, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, res, err := planTopic(viewWithBrokers(tc.brokers...), nil, tc.spec, nil)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Partitions != tc.wantP || res.ReplicationFactor != tc.wantRF || int32(len(cmd.Replicas)) != tc.wantP {
				t.Fatalf("got %d partitions rf %d (%v)", res.Partitions, res.ReplicationFactor, cmd.Replicas)
			}
			if cmd.ID == (TopicID{}) || cmd.ID != res.ID {
				t.Fatalf("topic id %v / %v", cmd.ID, res.ID)
			}
		})
	}
}

// TestPlanTopicStoresCanonicalConfigs: integer configs are stored, and
// answered, as their parsed value prints: leading zeros (any number of
// them, which strconv.ParseInt and Kafka's Long.parseLong both take) and a
// plus sign do not reach the controller entry.
func TestPlanTopicStoresCanonicalConfigs(t *testing.T) {
	spec := TopicSpec{Name: "a", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{
		"retention.ms":           strings.Repeat("0", 1<<20) + "604800000",
		"retention.bytes":        "-01",
		"min.insync.replicas":    "+1",
		"message.timestamp.type": "LogAppendTime",
	}}
	cmd, res, err := planTopic(viewWithBrokers(1), nil, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"retention.ms": "604800000", "retention.bytes": "-1", "min.insync.replicas": "1", "message.timestamp.type": "LogAppendTime"}
	if !maps.Equal(cmd.Configs, want) || !maps.Equal(res.Configs, want) {
		t.Fatalf("stored %v, answered %v; want %v", cmd.Configs, res.Configs, want)
	}
	if n := len((&Command{CreateTopic: cmd}).Encode()); n > 1000 {
		t.Fatalf("the command takes %d bytes", n)
	}
}

// TestPlanTopicNameCollision: a name that differs from an existing topic,
// or from one created earlier in the same request, only in '.' against '_'
// is refused as Kafka refuses it.
func TestPlanTopicNameCollision(t *testing.T) {
	view := viewWithBrokers(1)
	view.Topics["metrics.cpu"] = &Topic{Name: "metrics.cpu"}
	view.Topics["a_b.c"] = &Topic{Name: "a_b.c"}
	view.Topics["a.b_c"] = &Topic{Name: "a.b_c"}
	tests := []struct {
		name    string
		earlier []string
		want    string // the error's message suffix; "" for success
	}{
		{name: "metrics_cpu", want: "Topic 'metrics_cpu' collides with existing topic: metrics.cpu"},
		{name: "metrics.cpu", want: "TOPIC_ALREADY_EXISTS"},
		{name: "a.b.c", want: "Topic 'a.b.c' collides with existing topic: a.b_c"}, // the least of the two
		{name: "x.y", earlier: []string{"other", "x_y"}, want: "Topic 'x.y' collides with existing topic: x_y"},
		{name: "x.y", earlier: []string{"x.y"}}, // a repeated name is not a collision
		{name: "metrics-cpu"},                   // '-' does not collide
		{name: "metricsxcpu"},
		{name: "metrics.cpu2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := planTopic(view, nil, TopicSpec{Name: tc.name, Partitions: 1, ReplicationFactor: 1}, tc.earlier)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("planTopic(%q, earlier %v): %v", tc.name, tc.earlier, err)
			case tc.want == "":
			case err == nil || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("planTopic(%q, earlier %v): err = %v, want %q", tc.name, tc.earlier, err, tc.want)
			case !strings.Contains(tc.want, "EXISTS") && !errors.Is(err, kerr.InvalidTopicException):
				t.Fatalf("planTopic(%q): err = %v, want INVALID_TOPIC_EXCEPTION", tc.name, err)
			}
		})
	}
}

func TestAssignSpreadsLeadersAndReplicas(t *testing.T) {
	brokers := []Broker{{NodeID: 3}, {NodeID: 1}, {NodeID: 2}}
	got := assign(brokers, 12, 3, 1)
	leaders := map[uint64]int{}
	for p, rs := range got {
		seen := map[uint64]bool{}
		for _, id := range rs {
			if seen[id] {
				t.Fatalf("partition %d repeats broker %d: %v", p, id, rs)
			}
			seen[id] = true
		}
		leaders[rs[0]]++
	}
	for _, id := range []uint64{1, 2, 3} {
		if leaders[id] != 4 {
			t.Fatalf("leaders %v, want 4 each", leaders)
		}
	}
}

func TestApplyTopics(t *testing.T) {
	sm := NewStateMachine(zerolog.Nop())
	id1, id2 := NewTopicID(), NewTopicID()
	sm.Apply(1, 1, (&Command{CreateTopic: &CreateTopic{Name: "t", ID: id1, Replicas: [][]uint64{{1}, {1}}}}).Encode())
	sm.Apply(2, 1, (&Command{CreateTopic: &CreateTopic{Name: "t", ID: id2, Replicas: [][]uint64{{1}}}}).Encode()) // name taken: no-op
	sm.Apply(3, 1, (&Command{CreateTopic: &CreateTopic{Name: "u", ID: id2, Replicas: [][]uint64{{1}}}}).Encode())
	v := sm.View()
	if v.Topics["t"].ID != id1 || len(v.Topics["t"].Partitions) != 2 {
		t.Fatalf("topic t: %+v", v.Topics["t"])
	}
	groups := []uint64{v.Topics["t"].Partitions[0].Group, v.Topics["t"].Partitions[1].Group, v.Topics["u"].Partitions[0].Group}
	if groups[0] < firstPartitionGroup || groups[0] == groups[1] || groups[2] != groups[1]+1 {
		t.Fatalf("groups %v", groups)
	}
	sm.Apply(4, 1, (&Command{DeleteTopic: &DeleteTopic{ID: id1}}).Encode())
	sm.Apply(5, 1, (&Command{CreateTopic: &CreateTopic{Name: "t", ID: NewTopicID(), Replicas: [][]uint64{{1}}}}).Encode())
	v = sm.View()
	if v.Topics["t"].ID == id1 || v.Topics["t"].Partitions[0].Group <= groups[2] {
		t.Fatalf("recreated topic reuses id or group: %+v", v.Topics["t"])
	}
}

// TestTopicCreationFinishes: a topic proposed now is being created until
// TopicLed, which is idempotent and leaves the partitions added later out
// of CreatedPartitions; a topic from an entry or a snapshot written before
// the creating flag existed counts as created, so an upgrade hides no
// existing topic. The flag survives a snapshot.
func TestTopicCreationFinishes(t *testing.T) {
	view := viewWithBrokers(1)
	cmd, _, err := planTopic(view, nil, TopicSpec{Name: "new", Partitions: 2, ReplicationFactor: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cmd.Creating {
		t.Fatal("planned CreateTopic does not mark the topic as being created")
	}
	sm := NewStateMachine(zerolog.Nop())
	sm.Apply(1, 1, (&Command{RegisterBroker: &RegisterBroker{NodeID: 1}}).Encode())
	sm.Apply(2, 1, (&Command{CreateTopic: cmd}).Encode())
	// What a broker from before the flag logged.
	sm.Apply(3, 1, []byte(`{"create_topic":{"name":"old","id":"`+NewTopicID().String()+`","replicas":[[1]]}}`))
	sm.Apply(4, 1, (&Command{AddPartitions: &AddPartitions{Topic: cmd.ID, From: 2, Replicas: [][]uint64{{1}}}}).Encode())
	v := sm.View()
	if !v.Topics["new"].Creating || v.Topics["old"].Creating {
		t.Fatalf("creating: new %v, old %v; want true, false", v.Topics["new"].Creating, v.Topics["old"].Creating)
	}
	if got := len(v.Topics["new"].CreatedPartitions()); got != 2 || len(v.Topics["new"].Partitions) != 3 {
		t.Fatalf("%d created partitions of %d, want 2 of 3", got, len(v.Topics["new"].Partitions))
	}
	snap, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := NewStateMachine(zerolog.Nop())
	if err := restored.Restore(&pb.Snapshot{Data: snap}); err != nil {
		t.Fatal(err)
	}
	if !restored.View().Topics["new"].Creating {
		t.Fatal("the creating flag did not survive a snapshot")
	}
	before := sm.View()
	for i := uint64(5); i <= 6; i++ { // the second is a no-op
		sm.Apply(i, 1, (&Command{TopicLed: &TopicLed{ID: cmd.ID}}).Encode())
	}
	sm.Apply(7, 1, (&Command{TopicLed: &TopicLed{ID: NewTopicID()}}).Encode()) // no such topic: a no-op
	v = sm.View()
	if v.Topics["new"].Creating || v.TopicByID(cmd.ID).Creating {
		t.Fatal("TopicLed did not finish the creation")
	}
	if !before.Topics["new"].Creating {
		t.Fatal("TopicLed modified a published view")
	}
	if len(v.Topics["new"].Partitions) != 3 {
		t.Fatalf("TopicLed changed the partitions: %+v", v.Topics["new"].Partitions)
	}
	// A snapshot from before the flag existed.
	legacy := NewStateMachine(zerolog.Nop())
	data := []byte(`{"cluster_id":"c","brokers":{},"topics":{"x":{"name":"x","id":"` + NewTopicID().String() + `","partitions":[{"index":0,"group":1024,"replicas":[1]}],"created_at":3}}}`)
	if err := legacy.Restore(&pb.Snapshot{Data: data}); err != nil {
		t.Fatal(err)
	}
	if legacy.View().Topics["x"].Creating {
		t.Fatal("a topic from a snapshot written before the flag reads as being created")
	}
}

func TestTopicDefaults(t *testing.T) {
	d := TopicDefaults{"retention.ms": "1000", "segment.bytes": "1073741824"}
	for _, tc := range []struct {
		name, value string
		overridden  bool
	}{
		{"retention.ms", "1000", true},
		{"segment.bytes", "1073741824", false}, // set, but to the built-in default
		{"retention.bytes", "-1", false},       // not set: built in
		{"cleanup.policy", "delete", false},
	} {
		if v := d.Value(tc.name); v != tc.value {
			t.Errorf("Value(%s) = %q, want %q", tc.name, v, tc.value)
		}
		if o := d.Overridden(tc.name); o != tc.overridden {
			t.Errorf("Overridden(%s) = %v, want %v", tc.name, o, tc.overridden)
		}
	}
}

// TestPlanTopicAssignmentToLeavingBroker: an explicit assignment may not
// name a broker being drained, whose replicas are moving away.
func TestPlanTopicAssignmentToLeavingBroker(t *testing.T) {
	view := viewWithBrokers(1, 2, 3)
	view.Voters, view.Draining = []uint64{1, 2, 3}, []uint64{3}
	spec := TopicSpec{Name: "a", Partitions: -1, ReplicationFactor: -1}
	spec.Assignment = [][]uint64{{1, 2}}
	if _, _, err := planTopic(view, nil, spec, nil); err != nil {
		t.Fatalf("assignment to members: %v", err)
	}
	spec.Assignment = [][]uint64{{1, 3}}
	if _, _, err := planTopic(view, nil, spec, nil); !errors.Is(err, kerr.InvalidReplicaAssignment) {
		t.Fatalf("assignment to a draining broker: %v, want INVALID_REPLICA_ASSIGNMENT", err)
	}
}

// TestPlanTopicOnLiveBrokers: as Kafka places replicas on unfenced brokers
// only, automatic placement and the default replication factor leave out
// the brokers this one has not heard from lately; an explicit assignment
// may name one, but not give a partition only dead ones.
func TestPlanTopicOnLiveBrokers(t *testing.T) {
	alive := func(id uint64) bool { return id != 3 }
	tests := []struct {
		name    string
		spec    TopicSpec
		wantErr *kerr.Error
		wantRF  int
	}{
		{"default rf counts live brokers", TopicSpec{Name: "a", Partitions: 6, ReplicationFactor: -1}, nil, 2},
		{"placed on live brokers", TopicSpec{Name: "a", Partitions: 6, ReplicationFactor: 2}, nil, 2},
		{"rf above live brokers", TopicSpec{Name: "a", Partitions: 1, ReplicationFactor: 3}, kerr.InvalidReplicationFactor, 0},
		{"assignment naming a dead broker", TopicSpec{Name: "a", Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{{3, 1}}}, nil, 2},
		{"assignment of dead brokers only", TopicSpec{Name: "a", Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{{1}, {3}}}, kerr.InvalidReplicaAssignment, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, _, err := planTopic(viewWithBrokers(1, 2, 3), alive, tc.spec, nil)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for p, rs := range cmd.Replicas {
				if len(rs) != tc.wantRF {
					t.Fatalf("partition %d: replicas %v, want %d", p, rs, tc.wantRF)
				}
				if tc.spec.Assignment == nil && slices.Contains(rs, 3) {
					t.Fatalf("partition %d placed on dead broker 3: %v", p, rs)
				}
			}
		})
	}
}

// TestPlanOffsetsTopicReplication: the offsets topic's default
// replication factor is min(3, the cluster's members that can host), as
// the controller knows them when it creates the topic: not the brokers
// registered so far, which while a cluster starts would fix it at one or
// two for good, and not those alive.
func TestPlanOffsetsTopicReplication(t *testing.T) {
	tests := []struct {
		name       string
		voters     []uint64
		registered []uint64
		draining   []uint64
		alive      func(uint64) bool
		wantRF     int
		wantErr    *kerr.Error
	}{
		{"one broker", []uint64{1}, []uint64{1}, nil, nil, 1, nil},
		{"three of three", []uint64{1, 2, 3}, []uint64{1, 2, 3}, nil, nil, 3, nil},
		{"capped at three", []uint64{1, 2, 3, 4, 5}, []uint64{1, 2, 3, 4, 5}, nil, nil, 3, nil},
		{"two of three registered", []uint64{1, 2, 3}, []uint64{1, 2}, nil, nil, 0, kerr.InvalidReplicationFactor},
		{"one of three alive", []uint64{1, 2, 3}, []uint64{1, 2, 3}, nil, func(id uint64) bool { return id == 1 }, 0, kerr.InvalidReplicationFactor},
		{"a learner not counted", []uint64{1, 2}, []uint64{1, 2, 3}, nil, nil, 2, nil},
		{"a draining voter not counted", []uint64{1, 2, 3}, []uint64{1, 2, 3}, []uint64{3}, nil, 2, nil},
		{"membership unknown: the registered brokers", nil, []uint64{1, 2}, nil, nil, 2, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			view := viewWithBrokers(tc.registered...)
			view.Voters, view.Draining = tc.voters, tc.draining
			spec := TopicSpec{Name: OffsetsTopic, Partitions: 4, ReplicationFactor: -1, Internal: true}
			cmd, res, err := planTopic(view, tc.alive, spec, nil)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v (replicas %v), want %v", err, cmd, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if int(res.ReplicationFactor) != tc.wantRF || len(cmd.Replicas[0]) != tc.wantRF {
				t.Fatalf("replication factor %d (%v), want %d", res.ReplicationFactor, cmd.Replicas, tc.wantRF)
			}
		})
	}
}

// TestPlanTopicReplicationFactorMessages: each refused replication factor
// is told why in words that are true of it. A factor below 1 was answered
// "larger than available brokers", and so was the default factor when no
// broker was alive (worked out as 0); Kafka's KRaft controller says
// "Replication factor must be larger than 0, or -1 to use the default
// value." (ReplicationControlManager).
func TestPlanTopicReplicationFactorMessages(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rf    int16
		alive func(uint64) bool
		want  string
	}{
		{"zero", 0, nil, "must be larger than 0"},
		{"negative", -2, nil, "must be larger than 0"},
		{"above the brokers", 4, nil, "Replication factor: 4 larger than available brokers: 3"},
		{"default with no live broker", -1, func(uint64) bool { return false }, "no live broker can take a replica"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := planTopic(viewWithBrokers(1, 2, 3), tc.alive, TopicSpec{Name: "x", Partitions: 1, ReplicationFactor: tc.rf}, nil)
			if !errors.Is(err, kerr.InvalidReplicationFactor) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("replication factor %d: %v, want INVALID_REPLICATION_FACTOR saying %q", tc.rf, err, tc.want)
			}
		})
	}
}
