package controller

import (
	"reflect"
	"testing"

	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
)

func TestApply(t *testing.T) {
	reg := func(id uint64, addr string) []byte {
		return (&Command{RegisterBroker: &RegisterBroker{NodeID: id, KafkaAddr: addr, RaftAddr: "r"}}).Encode()
	}
	tests := []struct {
		name    string
		entries [][]byte
		want    *State
	}{
		{"empty entries only move applied", [][]byte{nil, nil}, &State{Brokers: map[uint64]Broker{}, Applied: 2, Term: 1}},
		{"first cluster id wins", [][]byte{
			(&Command{InitCluster: &InitCluster{ClusterID: "a"}}).Encode(),
			(&Command{InitCluster: &InitCluster{ClusterID: "b"}}).Encode(),
		}, &State{ClusterID: "a", Brokers: map[uint64]Broker{}, Applied: 2, Term: 1}},
		{"registration replaced, duplicate ignored", [][]byte{reg(1, "x"), reg(2, "y"), reg(1, "z"), reg(1, "z")},
			&State{Brokers: map[uint64]Broker{
				1: {NodeID: 1, KafkaAddr: "z", RaftAddr: "r", RegisteredAt: 3},
				2: {NodeID: 2, KafkaAddr: "y", RaftAddr: "r", RegisteredAt: 2},
			}, Applied: 4, Term: 1}},
		{"unreadable entry skipped", [][]byte{[]byte("{not json"), reg(1, "x")},
			&State{Brokers: map[uint64]Broker{1: {NodeID: 1, KafkaAddr: "x", RaftAddr: "r", RegisteredAt: 2}}, Applied: 2, Term: 1}},
		{"config set and deleted", [][]byte{
			(&Command{SetConfig: &SetConfig{Key: "k", Value: "v"}}).Encode(),
			(&Command{SetConfig: &SetConfig{Key: "j", Value: "w"}}).Encode(),
			(&Command{SetConfig: &SetConfig{Key: "k"}}).Encode(),
		}, &State{Brokers: map[uint64]Broker{}, Configs: map[string]string{"j": "w"}, Applied: 3, Term: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sm := NewStateMachine(zerolog.Nop())
			var views []*State
			for i, e := range tc.entries {
				sm.Apply(uint64(i+1), 1, e)
				views = append(views, sm.View())
			}
			if got := sm.View(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("state = %+v, want %+v", got, tc.want)
			}
			// Published views are immutable: the first one is unchanged by later applies.
			if views[0].Applied != 1 {
				t.Fatalf("first view was modified: applied %d", views[0].Applied)
			}
			// A snapshot restores to the same state.
			data, err := sm.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			sm2 := NewStateMachine(zerolog.Nop())
			if err := sm2.Restore(&pb.Snapshot{Data: data}); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sm2.View(), tc.want) {
				t.Fatalf("restored = %+v, want %+v", sm2.View(), tc.want)
			}
		})
	}
}
