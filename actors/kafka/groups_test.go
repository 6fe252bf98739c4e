package kafka

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/group"
	"github.com/flotilla/flotilla/actors/partition"
)

// TestGroupCallsLostAnswered: group requests whose calls a coordinator
// replica takes and never answers (its actor stopped, or died, with them
// in its mailbox) are answered once the longest a running coordinator
// takes has passed, not before: OffsetFetch with NOT_COORDINATOR, so that
// the client looks for the coordinator again, and ListGroups with
// COORDINATOR_NOT_AVAILABLE. Before, the connection waited for them
// forever.
func TestGroupCallsLostAnswered(t *testing.T) {
	taken := make(chan any, 4)
	var replica *actor.PID
	b := startBrokerIn(t, func(sys *actors.System, o *Options) {
		var err error
		replica, err = sys.Spawn("test", "offsets-0", func() actor.Actor {
			return actor.ReceiveFunc(func(ctx actor.Context) {
				switch m := ctx.Message().(type) {
				case *group.Call, *group.List:
					taken <- m
				}
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		sm := offsetsState()
		coords := group.NewCoordinators()
		coords.Publish(map[int32]*group.Coordinator{0: {Partition: 0, PID: replica}})
		o.Handler = &Service{NodeID: 1, Tick: 10 * time.Millisecond, Machine: sm, Replicas: partition.NewReplicas(),
			Coordinators: coords, Sender: sys.Root, Now: time.Now, Log: o.Log}
	})
	defer b.sys.Root.Stop(replica) // before the broker's cleanup waits for every actor
	start := time.Now()
	fetches, lists := dial(t, b.addr), dial(t, b.addr)
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Version = 8
	fetch.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g"}}
	fetches.send(fetch, 1)
	list := kmsg.NewPtrListGroupsRequest()
	list.Version = 4
	lists.send(list, 2)
	for range 2 {
		select {
		case <-taken:
		case <-time.After(testTimeout):
			t.Fatal("the coordinator replica got no call")
		}
	}

	within := group.AnswerWithin(&group.FetchOffsets{}, 0)
	fetchResp := fetch.ResponseKind().(*kmsg.OffsetFetchResponse)
	fetches.readWithin(fetchResp, within+testTimeout)
	if elapsed := time.Since(start); elapsed < within {
		t.Errorf("OffsetFetch answered after %v, before a running coordinator's %v", elapsed, within)
	}
	if gs := fetchResp.Groups; len(gs) != 1 || gs[0].ErrorCode != kerr.NotCoordinator.Code {
		t.Errorf("OffsetFetch answered %+v, want NOT_COORDINATOR", gs)
	}
	listResp := list.ResponseKind().(*kmsg.ListGroupsResponse)
	lists.readWithin(listResp, testTimeout)
	if listResp.ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Errorf("ListGroups answered %v, want COORDINATOR_NOT_AVAILABLE", kerr.ErrorForCode(listResp.ErrorCode))
	}
}

// offsetsState is a caught-up controller state with one broker and the
// offsets topic, of one partition, on it.
func offsetsState() *controller.StateMachine {
	sm := controller.NewStateMachine(zerolog.Nop())
	sm.MarkCaughtUp()
	for i, c := range []*controller.Command{
		{RegisterBroker: &controller.RegisterBroker{NodeID: 1, KafkaAddr: "127.0.0.1:9092"}},
		{CreateTopic: &controller.CreateTopic{Name: controller.OffsetsTopic, ID: controller.NewTopicID(), Replicas: [][]uint64{{1}}}},
	} {
		sm.Apply(uint64(i+1), 1, c.Encode())
	}
	return sm
}

// TestOffsetFetchV1ErrorMetadata: OffsetFetch v0-v1 has no group-level
// error, so a group that cannot be served has the error on every
// partition asked for, each with offset -1 and metadata "" (Kafka's
// NO_METADATA), not null.
func TestOffsetFetchV1ErrorMetadata(t *testing.T) {
	b := startBrokerIn(t, func(sys *actors.System, o *Options) {
		// The offsets topic exists, but no replica of it is here.
		o.Handler = &Service{NodeID: 1, Tick: 10 * time.Millisecond, Machine: offsetsState(), Replicas: partition.NewReplicas(),
			Coordinators: group.NewCoordinators(), Sender: sys.Root, Now: time.Now, Log: o.Log}
	})
	c := dial(t, b.addr)
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version, req.Group = 1, "g"
	req.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1}}}
	c.send(req, 1)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	c.read(resp)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 2 {
		t.Fatalf("answered %+v, want t/0 and t/1", resp.Topics)
	}
	for _, rp := range resp.Topics[0].Partitions {
		if rp.ErrorCode != kerr.NotCoordinator.Code || rp.Offset != -1 || rp.Metadata == nil || *rp.Metadata != "" {
			t.Errorf("t/%d: %v offset %d metadata %v, want NOT_COORDINATOR -1 \"\"", rp.Partition, kerr.ErrorForCode(rp.ErrorCode), rp.Offset, rp.Metadata)
		}
	}
}
