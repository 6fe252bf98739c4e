package controller

import (
	"fmt"
	"testing"
)

func tmpState() *State {
	s := &State{Topics: map[string]*Topic{}}
	for i := range 5000 {
		t := &Topic{Name: fmt.Sprint(i), ID: NewTopicID()}
		for j := range 10 {
			t.Partitions = append(t.Partitions, Partition{Index: int32(j), Replicas: []uint64{1, 2}, Founders: []uint64{1, 2}})
		}
		s.Topics[t.Name] = t
	}
	return s
}

func BenchmarkTmpReindex(b *testing.B) {
	s := tmpState()
	b.ResetTimer()
	for range b.N {
		s.reindex()
	}
}

func BenchmarkTmpByID(b *testing.B) {
	s := tmpState()
	b.ResetTimer()
	for range b.N {
		m := make(map[TopicID]*Topic, len(s.Topics))
		for _, t := range s.Topics {
			m[t.ID] = t
		}
	}
}
