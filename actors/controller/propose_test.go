package controller

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/flotilla/flotilla/raftactor"
)

// TestCommandAboveLimitIsNotProposed: a command whose encoding is larger
// than the raft transport carries (MaxCommandBytes) is answered with
// RECORD_LIST_TOO_LARGE and never reaches the controller group, where its
// entry would be appended on the leader and never sent; a command that
// fits is still proposed after it.
func TestCommandAboveLimitIsNotProposed(t *testing.T) {
	sys := actor.NewActorSystem()
	t.Cleanup(sys.Shutdown)
	proposed := make(chan *raftactor.Propose, 4)
	group := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*raftactor.Propose); ok {
			proposed <- m
			// Answer as a group without a leader would.
			ctx.Send(m.ReplyTo, &raftactor.Proposed{ID: m.ID, Err: raftactor.ErrNotReady})
		}
	}))
	answers := make(chan *CreateTopicsDone, 4)
	probe := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*CreateTopicsDone); ok {
			answers <- m
		}
	}))
	sm := NewStateMachine(zerolog.Nop())
	for i := range uint64(3) {
		sm.Apply(i+1, 1, (&Command{RegisterBroker: &RegisterBroker{NodeID: i + 1, KafkaAddr: fmt.Sprintf("k%d", i), RaftAddr: fmt.Sprintf("r%d", i)}}).Encode())
	}
	c := sys.Root.Spawn(actor.PropsFromProducer(NewActor(Options{NodeID: 1, Raft: group, Machine: sm, MaxCommandBytes: 4096, Log: zerolog.Nop()})))
	answer := func() *CreateTopicsDone {
		t.Helper()
		select {
		case a := <-answers:
			return a
		case <-time.After(10 * time.Second):
			t.Fatal("no answer")
			return nil
		}
	}

	// 1000 partitions of 3 replicas: about 8 KB of replica lists.
	sys.Root.Send(c, &CreateTopics{Ref: 1, ReplyTo: probe, Topics: []TopicSpec{
		{Name: "big", Partitions: 1000, ReplicationFactor: 3},
		{Name: "small", Partitions: 1, ReplicationFactor: 3},
	}})
	a := answer()
	if len(a.Results) != 2 || !errors.Is(a.Results[0].Err, kerr.RecordListTooLarge) {
		t.Fatalf("the big topic: %+v, want RECORD_LIST_TOO_LARGE", a.Results)
	}
	if !errors.Is(a.Results[1].Err, kerr.NotController) {
		t.Fatalf("the small topic: %v, want the group's own answer (NOT_CONTROLLER)", a.Results[1].Err)
	}
	select {
	case m := <-proposed:
		if cmd, err := DecodeCommand(m.Data); err != nil || cmd.CreateTopic == nil || cmd.CreateTopic.Name != "small" {
			t.Fatalf("proposed %s, want the small topic", m.Data)
		}
	default:
		t.Fatal("the small topic was not proposed")
	}
	if len(proposed) != 0 {
		t.Fatalf("%d more proposals: the big topic reached the group", len(proposed))
	}
}
