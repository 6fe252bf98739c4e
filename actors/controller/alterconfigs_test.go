package controller

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	pb "go.etcd.io/raft/v3/raftpb"
)

// alterView is a state with a topic "t" that sets retention.ms and
// segment.bytes, a topic "bare" that sets nothing, and the offsets topic.
func alterView() *State {
	s := &State{Brokers: map[uint64]Broker{1: {NodeID: 1}}, Topics: map[string]*Topic{
		"t":          {Name: "t", ID: TopicID{1}, Configs: map[string]string{"retention.ms": "60000", "segment.bytes": "1048576"}},
		"bare":       {Name: "bare", ID: TopicID{2}},
		OffsetsTopic: {Name: OffsetsTopic, ID: TopicID{3}},
	}}
	s.reindex()
	return s
}

func TestPlanAlterConfigs(t *testing.T) {
	set := func(k, v string) ConfigOp { return ConfigOp{Name: k, Op: ConfigSet, Value: v} }
	del := func(k string) ConfigOp { return ConfigOp{Name: k, Op: ConfigDelete} }
	tests := []struct {
		name    string
		topic   string
		ops     []ConfigOp
		replace bool
		want    *AlterTopicConfigs // nil: an error
		err     *kerr.Error
		msg     string // in the error
	}{
		{name: "set one key, others kept", topic: "t", ops: []ConfigOp{set("retention.bytes", "4096")},
			want: &AlterTopicConfigs{ID: TopicID{1}, Set: map[string]string{"retention.bytes": "4096"}}},
		{name: "set a key to its current value still writes it", topic: "t", ops: []ConfigOp{set("retention.ms", "60000")},
			want: &AlterTopicConfigs{ID: TopicID{1}, Set: map[string]string{"retention.ms": "60000"}}},
		{name: "delete returns to the default", topic: "t", ops: []ConfigOp{del("retention.ms")},
			want: &AlterTopicConfigs{ID: TopicID{1}, Delete: []string{"retention.ms"}}},
		{name: "delete of a key not set", topic: "bare", ops: []ConfigOp{del("retention.ms")},
			want: &AlterTopicConfigs{ID: TopicID{2}, Delete: []string{"retention.ms"}}},
		{name: "set and delete together", topic: "t", ops: []ConfigOp{set("max.message.bytes", "2048"), del("segment.bytes"), set("message.timestamp.type", "LogAppendTime")},
			want: &AlterTopicConfigs{ID: TopicID{1}, Set: map[string]string{"max.message.bytes": "2048", "message.timestamp.type": "LogAppendTime"}, Delete: []string{"segment.bytes"}}},
		{name: "no operations", topic: "t", want: &AlterTopicConfigs{ID: TopicID{1}}},
		{name: "append to a list config already holding the value", topic: "bare", ops: []ConfigOp{{Name: "cleanup.policy", Op: ConfigAppend, Value: "delete"}},
			want: &AlterTopicConfigs{ID: TopicID{2}, Set: map[string]string{"cleanup.policy": "delete"}}},
		{name: "append a value the list config refuses", topic: "bare", ops: []ConfigOp{{Name: "cleanup.policy", Op: ConfigAppend, Value: "compact"}},
			err: kerr.InvalidConfig, msg: `cleanup.policy="delete,compact": must be one of [delete]`},
		{name: "subtract the list config's only value", topic: "bare", ops: []ConfigOp{{Name: "cleanup.policy", Op: ConfigSubtract, Value: "delete"}},
			err: kerr.InvalidConfig, msg: `cleanup.policy="": must be one of [delete]`},
		{name: "subtract a value the list lacks", topic: "bare", ops: []ConfigOp{{Name: "cleanup.policy", Op: ConfigSubtract, Value: "compact"}},
			want: &AlterTopicConfigs{ID: TopicID{2}, Set: map[string]string{"cleanup.policy": "delete"}}},
		{name: "append to a key that is not a list", topic: "t", ops: []ConfigOp{{Name: "retention.ms", Op: ConfigAppend, Value: "1"}},
			err: kerr.InvalidConfig, msg: "Can't APPEND to key retention.ms because its type is not LIST"},
		{name: "subtract from an unknown key", topic: "t", ops: []ConfigOp{{Name: "no.such", Op: ConfigSubtract, Value: "1"}},
			err: kerr.InvalidConfig, msg: "Can't SUBTRACT to key no.such because its type is not LIST"},
		{name: "unknown operation", topic: "t", ops: []ConfigOp{{Name: "retention.ms", Op: 7, Value: "1"}},
			err: kerr.InvalidRequest, msg: "unknown operation 7"},
		{name: "unknown config", topic: "t", ops: []ConfigOp{set("retention.hours", "1")},
			err: kerr.InvalidConfig, msg: `unknown or unsupported topic config "retention.hours"`},
		{name: "an integer is stored canonically", topic: "t", ops: []ConfigOp{set("retention.ms", "+000120000"), set("retention.bytes", "-0001")},
			want: &AlterTopicConfigs{ID: TopicID{1}, Set: map[string]string{"retention.ms": "120000", "retention.bytes": "-1"}}},
		{name: "leading zeros at any length", topic: "t", ops: []ConfigOp{set("segment.bytes", strings.Repeat("0", 1<<20)+"1024")},
			want: &AlterTopicConfigs{ID: TopicID{1}, Set: map[string]string{"segment.bytes": "1024"}}},
		{name: "value not a number", topic: "t", ops: []ConfigOp{set("retention.bytes", "lots")},
			err: kerr.InvalidConfig, msg: `retention.bytes="lots": not an integer`},
		{name: "value out of range", topic: "t", ops: []ConfigOp{set("segment.bytes", "10")},
			err: kerr.InvalidConfig, msg: `segment.bytes="10": must be at least 61`},
		{name: "value not among the allowed", topic: "t", ops: []ConfigOp{set("compression.type", "zstd")},
			err: kerr.InvalidConfig, msg: `compression.type="zstd": must be one of [producer]`},
		{name: "delete of an unknown key", topic: "t", ops: []ConfigOp{del("no.such")},
			want: &AlterTopicConfigs{ID: TopicID{1}, Delete: []string{"no.such"}}},
		{name: "unknown topic", topic: "nope", ops: []ConfigOp{set("retention.ms", "1000")},
			err: kerr.UnknownTopicOrPartition, msg: "The topic 'nope' does not exist"},
		{name: "an invalid config is reported before an unknown topic, as in Kafka", topic: "nope", ops: []ConfigOp{set("retention.ms", "x")},
			err: kerr.InvalidConfig},
		{name: "default topic resource", topic: "", ops: []ConfigOp{set("retention.ms", "1000")},
			err: kerr.InvalidRequest, msg: "Default topic resources are not allowed"},
		{name: "illegal topic name", topic: "a/b", ops: []ConfigOp{set("retention.ms", "1000")},
			err: kerr.InvalidTopicException},
		{name: "the offsets topic", topic: OffsetsTopic, ops: []ConfigOp{set("retention.ms", "1000")},
			err: kerr.InvalidConfig, msg: "cannot be changed"},
		{name: "replace: the set keys only", topic: "t", replace: true, ops: []ConfigOp{set("retention.bytes", "4096")},
			want: &AlterTopicConfigs{ID: TopicID{1}, Set: map[string]string{"retention.bytes": "4096"}, Replace: true}},
		{name: "replace with nothing", topic: "t", replace: true, want: &AlterTopicConfigs{ID: TopicID{1}, Replace: true}},
		{name: "replace checks only the new set", topic: "t", replace: true, ops: []ConfigOp{set("retention.ms", "-5")},
			err: kerr.InvalidConfig, msg: `retention.ms="-5"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planAlterConfigs(alterView(), TopicAlteration{Name: tc.topic, Ops: tc.ops}, tc.replace)
			if tc.want != nil {
				if err != nil || !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %+v, %v; want %v containing %q", got, err, tc.err, tc.msg)
			}
		})
	}
}

func TestAlterList(t *testing.T) {
	tests := []struct {
		cur    string
		op     ConfigOpType
		values string
		want   string
	}{
		{"delete", ConfigAppend, "compact", "delete,compact"},
		{"delete", ConfigAppend, "delete", "delete"},
		{"", ConfigAppend, "a,b,a", "a,b"},
		{"a,,b", ConfigAppend, ",c", "a,b,c"},
		{"a,b,c", ConfigSubtract, "b", "a,c"},
		{"a,b,a", ConfigSubtract, "a", "b,a"}, // the first occurrence, as Java's List.remove
		{"a", ConfigSubtract, "a", ""},
		{"a", ConfigSubtract, "z", "a"},
	}
	for _, tc := range tests {
		if got := alterList(tc.cur, tc.op, tc.values); got != tc.want {
			t.Errorf("%q %s %q = %q, want %q", tc.cur, tc.op, tc.values, got, tc.want)
		}
	}
}

// TestApplyAlterTopicConfigs: the entries change single keys, or replace
// the whole set; a topic deleted, or one recreated under the name, is
// left alone; and the outcome survives a snapshot.
func TestApplyAlterTopicConfigs(t *testing.T) {
	create := func(name string, id byte, configs map[string]string) []byte {
		return (&Command{CreateTopic: &CreateTopic{Name: name, ID: TopicID{id}, Replicas: [][]uint64{{1}}, Configs: configs}}).Encode()
	}
	alter := func(id byte, a AlterTopicConfigs) []byte {
		a.ID = TopicID{id}
		return (&Command{AlterTopicConfigs: &a}).Encode()
	}
	tests := []struct {
		name    string
		entries [][]byte
		want    map[string]map[string]string // topic configs by name
	}{
		{"set and delete keys", [][]byte{
			create("t", 1, map[string]string{"retention.ms": "1", "segment.bytes": "1024"}),
			alter(1, AlterTopicConfigs{Set: map[string]string{"retention.ms": "2", "retention.bytes": "3"}, Delete: []string{"segment.bytes"}}),
		}, map[string]map[string]string{"t": {"retention.ms": "2", "retention.bytes": "3"}}},
		{"two alterations of different keys both kept", [][]byte{
			create("t", 1, nil),
			alter(1, AlterTopicConfigs{Set: map[string]string{"retention.ms": "2"}}),
			alter(1, AlterTopicConfigs{Set: map[string]string{"retention.bytes": "3"}}),
		}, map[string]map[string]string{"t": {"retention.ms": "2", "retention.bytes": "3"}}},
		{"replace", [][]byte{
			create("t", 1, map[string]string{"retention.ms": "1", "segment.bytes": "1024"}),
			alter(1, AlterTopicConfigs{Set: map[string]string{"retention.bytes": "3"}, Replace: true}),
		}, map[string]map[string]string{"t": {"retention.bytes": "3"}}},
		{"every key deleted", [][]byte{
			create("t", 1, map[string]string{"retention.ms": "1"}),
			alter(1, AlterTopicConfigs{Delete: []string{"retention.ms"}}),
		}, map[string]map[string]string{"t": nil}},
		{"deleted topic", [][]byte{
			create("t", 1, nil),
			(&Command{DeleteTopic: &DeleteTopic{ID: TopicID{1}}}).Encode(),
			alter(1, AlterTopicConfigs{Set: map[string]string{"retention.ms": "2"}}),
		}, map[string]map[string]string{}},
		{"name taken again by another topic", [][]byte{
			create("t", 1, nil),
			(&Command{DeleteTopic: &DeleteTopic{ID: TopicID{1}}}).Encode(),
			create("t", 2, map[string]string{"retention.ms": "5"}),
			alter(1, AlterTopicConfigs{Set: map[string]string{"retention.ms": "2"}}),
		}, map[string]map[string]string{"t": {"retention.ms": "5"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sm := NewStateMachine(zerolog.Nop())
			sm.Apply(1, 1, tc.entries[0])
			first := sm.View()
			created := maps.Clone(first.Topics["t"].Configs)
			for i, e := range tc.entries[1:] {
				sm.Apply(uint64(i+2), 1, e)
			}
			configsOf := func(s *State) map[string]map[string]string {
				out := map[string]map[string]string{}
				for name, tp := range s.Topics {
					out[name] = tp.Configs
				}
				return out
			}
			if got := configsOf(sm.View()); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("configs %v, want %v", got, tc.want)
			}
			// Published views are immutable: the topic's configs as created
			// are unchanged in the view of its creation.
			if got := first.Topics["t"].Configs; !reflect.DeepEqual(got, created) {
				t.Fatalf("the view of the creation was modified: %v, want %v", got, created)
			}
			data, err := sm.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			sm2 := NewStateMachine(zerolog.Nop())
			if err := sm2.Restore(&pb.Snapshot{Data: data}); err != nil {
				t.Fatal(err)
			}
			if got := configsOf(sm2.View()); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("restored configs %v, want %v", got, tc.want)
			}
			if t2 := sm2.View().Topics["t"]; t2 != nil && sm2.View().TopicByID(t2.ID) != t2 {
				t.Fatalf("restored state does not find topic t by its id")
			}
		})
	}
}

// TestAlterationsWaitForEveryBrokersLevel: a broker of a version before
// CommandLevel 1 reads AlterTopicConfigs as an empty command, and its
// state would lose the change for good once it snapshots: alterations are
// refused until every registered broker has registered level 1, which an
// upgraded broker does again at its addresses.
func TestAlterationsWaitForEveryBrokersLevel(t *testing.T) {
	register := func(id uint64, level int) []byte {
		return (&Command{RegisterBroker: &RegisterBroker{NodeID: id, KafkaAddr: fmt.Sprintf("k%d", id), RaftAddr: fmt.Sprintf("r%d", id), Level: level}}).Encode()
	}
	sm := NewStateMachine(zerolog.Nop())
	for i, e := range [][]byte{register(1, CommandLevel), register(2, 0), register(3, CommandLevel)} {
		sm.Apply(uint64(i+1), 1, e)
	}
	err := needLevel(sm.View(), 1, "apply topic config changes")
	if !errors.Is(err, kerr.InvalidRequest) || !strings.Contains(err.Error(), "[2]") {
		t.Fatalf("with broker 2 at level 0: %v, want INVALID_REQUEST naming broker 2", err)
	}
	// Broker 2 upgraded: the same addresses, registered again with its level.
	sm.Apply(4, 1, register(2, CommandLevel))
	if b := sm.View().Brokers[2]; b.Level != CommandLevel || b.RegisteredAt != 4 {
		t.Fatalf("broker 2 after registering again: %+v", b)
	}
	if err := needLevel(sm.View(), 1, "apply topic config changes"); err != nil {
		t.Fatalf("every broker at level %d: %v", CommandLevel, err)
	}
	data, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := NewStateMachine(zerolog.Nop())
	if err := restored.Restore(&pb.Snapshot{Data: data}); err != nil {
		t.Fatal(err)
	}
	if b := restored.View().Brokers[2]; b.Level != CommandLevel {
		t.Fatalf("broker 2's level after a snapshot: %d", b.Level)
	}
}
