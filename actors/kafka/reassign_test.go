package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// stubController stands in for the controller actor: it answers
// AlterReassignments with what answer decides and records the moves, and
// carries out an ElectPreferred by announcing the preferred replica as
// leader (as its broadcast would) when willing allows it.
type stubController struct {
	leaders *partition.Leaders
	answer  func(controller.Move) error
	willing func(preferred uint64) bool
	mute    atomic.Bool // no answer to AlterReassignments

	mu      sync.Mutex
	moves   []controller.Move
	elected []controller.ElectPreferred
}

func (c *stubController) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *controller.AlterReassignments:
		done := &controller.AlterReassignmentsDone{Ref: m.Ref}
		c.mu.Lock()
		for _, mv := range m.Moves {
			c.moves = append(c.moves, mv)
			done.Errs = append(done.Errs, c.answer(mv))
		}
		c.mu.Unlock()
		if !c.mute.Load() {
			ctx.Send(m.ReplyTo, done)
		}
	case *controller.ElectPreferred:
		c.mu.Lock()
		c.elected = append(c.elected, *m)
		c.mu.Unlock()
		if c.willing(m.Preferred) {
			cur, _ := c.leaders.Get(m.Group)
			c.leaders.Note([]netactor.LeaderInfo{{Group: m.Group, Leader: m.Preferred, Term: cur.Term + 1}})
		}
	}
}

// reassignFixture is a Service over a real controller state machine: three
// brokers; "orders" with partitions on [1 2], [2 3], [3 1], the second
// being moved to [3 1]; partition 0 led by 2 (not its preferred 1),
// partition 1 by 3, partition 2 leaderless.
type reassignFixture struct {
	b     *testBroker
	ctl   *stubController
	sm    *controller.StateMachine
	state *controller.State
	board *raftactor.StatusBoard // broker 1's replicas' raft status
	adm   *kadm.Client
}

func newReassignFixture(t *testing.T, willing func(uint64) bool, answer func(controller.Move) error) *reassignFixture {
	t.Helper()
	sm := controller.NewStateMachine(zerolog.Nop())
	sm.MarkCaughtUp()
	cmds := []controller.Command{
		{RegisterBroker: &controller.RegisterBroker{NodeID: 1, KafkaAddr: "127.0.0.1:9091", RaftAddr: "r1"}},
		{RegisterBroker: &controller.RegisterBroker{NodeID: 2, KafkaAddr: "127.0.0.1:9092", RaftAddr: "r2"}},
		{RegisterBroker: &controller.RegisterBroker{NodeID: 3, KafkaAddr: "127.0.0.1:9093", RaftAddr: "r3"}},
		{CreateTopic: &controller.CreateTopic{Name: "orders", ID: controller.TopicID{1}, Replicas: [][]uint64{{1, 2}, {2, 3}, {3, 1}}}},
		{Reassign: &controller.Reassign{Topic: controller.TopicID{1}, Partition: 1, Target: []uint64{3, 1}}},
	}
	for i, c := range cmds {
		sm.Apply(uint64(i+1), 1, c.Encode())
	}
	state := sm.View()
	orders := state.Topics["orders"]
	leaders := partition.NewLeaders()
	leaders.Note([]netactor.LeaderInfo{
		{Group: orders.Partitions[0].Group, Leader: 2, Term: 3},
		{Group: orders.Partitions[1].Group, Leader: 3, Term: 2},
	})
	ctl := &stubController{leaders: leaders, willing: willing, answer: answer}
	f := &reassignFixture{ctl: ctl, sm: sm, state: state, board: raftactor.NewStatusBoard()}
	var pid *actor.PID
	var ticker *raftactor.Ticker
	f.b = startBrokerIn(t, func(sys *actors.System, o *Options) {
		var err error
		if pid, err = sys.Spawn("controller", "controller", func() actor.Actor { return ctl }); err != nil {
			t.Fatal(err)
		}
		ticker = raftactor.NewTicker(sys.Root, 10*time.Millisecond)
		o.Handler = &Service{
			NodeID: 1, Tick: 10 * time.Millisecond, Controller: pid, Ticker: ticker,
			Machine: sm, Board: f.board, Leaders: leaders, Replicas: partition.NewReplicas(),
			Sender: sys.Root, Now: time.Now, Log: zerolog.Nop(),
		}
	})
	t.Cleanup(func() { // before the listener's cleanup, which waits for every actor to stop
		ticker.Stop()
		f.b.sys.Root.Stop(pid)
	})
	f.adm = kadm.NewClient(newKgoClient(t, f.b))
	return f
}

func TestAlterPartitionReassignments(t *testing.T) {
	f := newReassignFixture(t, func(uint64) bool { return false }, func(m controller.Move) error {
		switch {
		case m.Topic == "missing":
			return kerr.UnknownTopicOrPartition
		case m.Replicas == nil && m.Partition == 0:
			return fmt.Errorf("%w: orders/0 is not being reassigned", kerr.NoReassignmentInProgress)
		case m.Replicas != nil && len(m.Replicas) == 0:
			return fmt.Errorf("%w: empty replica list", kerr.InvalidReplicaAssignment)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var req kadm.AlterPartitionAssignmentsReq
	req.Assign("orders", 2, []int32{1, 2})
	req.Assign("orders", 1, []int32{})
	req.CancelAssign("orders", 0)
	req.Assign("missing", 0, []int32{1})
	req.Assign("__consumer_offsets", 3, []int32{2, 3})
	req.Assign("negative", 0, []int32{1, -1})
	resp, err := f.adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]error{
		"orders/2": nil, "orders/1": kerr.InvalidReplicaAssignment, "orders/0": kerr.NoReassignmentInProgress,
		"missing/0": kerr.UnknownTopicOrPartition, "__consumer_offsets/3": nil, "negative/0": kerr.InvalidReplicaAssignment,
	}
	for _, r := range resp.Sorted() {
		key := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
		w, ok := want[key]
		if !ok || !errors.Is(r.Err, w) {
			t.Errorf("%s: %v (%s), want %v", key, r.Err, r.ErrMessage, w)
		}
		delete(want, key)
	}
	if len(want) > 0 {
		t.Errorf("no answer for %v", want)
	}
	f.ctl.mu.Lock()
	defer f.ctl.mu.Unlock()
	// The negative id never reaches the controller; a cancel is a nil
	// target, an empty list an empty one.
	if len(f.ctl.moves) != 5 {
		t.Fatalf("controller got %d moves: %+v", len(f.ctl.moves), f.ctl.moves)
	}
	for _, m := range f.ctl.moves {
		switch {
		case m.Topic == "orders" && m.Partition == 0 && m.Replicas != nil,
			m.Topic == "orders" && m.Partition == 1 && (m.Replicas == nil || len(m.Replicas) != 0),
			m.Topic == "orders" && m.Partition == 2 && !slices.Equal(m.Replicas, []uint64{1, 2}):
			t.Errorf("move %+v", m)
		}
	}
}

// TestAlterPartitionReassignmentsTimesOut: a controller that does not
// answer within the request's timeout gets the request answered with
// REQUEST_TIMED_OUT, top-level and per partition.
func TestAlterPartitionReassignmentsTimesOut(t *testing.T) {
	f := newReassignFixture(t, func(uint64) bool { return false }, func(controller.Move) error { return nil })
	f.ctl.mute.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req := kmsg.NewPtrAlterPartitionAssignmentsRequest()
	req.TimeoutMillis = 50
	rt := kmsg.NewAlterPartitionAssignmentsRequestTopic()
	rt.Topic = "orders"
	rt.Partitions = []kmsg.AlterPartitionAssignmentsRequestTopicPartition{{Partition: 2, Replicas: []int32{1, 2}}}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, newKgoClient(t, f.b))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != kerr.RequestTimedOut.Code || len(resp.Topics) != 1 || resp.Topics[0].Partitions[0].ErrorCode != kerr.RequestTimedOut.Code {
		t.Fatalf("response %+v", resp)
	}
}

// TestAlterPartitionReassignmentsWithoutControllerLeader: while the
// controller group has no leader (its moves answered NOT_CONTROLLER by the
// controller actor), the broker asks again, as a Kafka broker forwarding
// to its controller does, until the moves are decided or the request's
// timeout passes: kadm sees the moves' outcome, not a per-partition
// NOT_CONTROLLER it would not retry; and REQUEST_TIMED_OUT if no leader
// comes in time.
func TestAlterPartitionReassignmentsWithoutControllerLeader(t *testing.T) {
	var refusals atomic.Int32
	refusals.Store(3)
	f := newReassignFixture(t, func(uint64) bool { return false }, func(m controller.Move) error {
		switch {
		case m.Topic == "leaderless":
			return fmt.Errorf("%w: raft proposal dropped", kerr.NotController)
		case m.Partition == 0:
			return fmt.Errorf("%w: orders/0 is not being reassigned", kerr.NoReassignmentInProgress)
		case refusals.Add(-1) >= 0:
			return fmt.Errorf("%w: raft proposal dropped", kerr.NotController)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var req kadm.AlterPartitionAssignmentsReq
	req.Assign("orders", 2, []int32{1, 2})
	req.CancelAssign("orders", 0)
	resp, err := f.adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Sorted() {
		if want := map[int32]error{0: kerr.NoReassignmentInProgress, 2: nil}[r.Partition]; !errors.Is(r.Err, want) {
			t.Errorf("orders/%d: %v (%s), want %v", r.Partition, r.Err, r.ErrMessage, want)
		}
	}
	f.ctl.mu.Lock()
	sent := len(f.ctl.moves)
	f.ctl.mu.Unlock()
	if sent != 2+3 { // the decided cancel once, the move until accepted
		t.Errorf("controller got %d moves, want 5", sent)
	}

	kreq := kmsg.NewPtrAlterPartitionAssignmentsRequest()
	kreq.TimeoutMillis = 200
	rt := kmsg.NewAlterPartitionAssignmentsRequestTopic()
	rt.Topic = "leaderless"
	rt.Partitions = []kmsg.AlterPartitionAssignmentsRequestTopicPartition{{Partition: 0, Replicas: []int32{1, 2}}}
	kreq.Topics = append(kreq.Topics, rt)
	kresp, err := kreq.RequestWith(ctx, newKgoClient(t, f.b))
	if err != nil {
		t.Fatal(err)
	}
	if kresp.ErrorCode != kerr.RequestTimedOut.Code || kresp.Topics[0].Partitions[0].ErrorCode != kerr.RequestTimedOut.Code {
		t.Fatalf("no controller leader within the timeout: %+v", kresp)
	}
}

// TestListPartitionReassignments: the moves under way, as Kafka lists
// them; not one that only removes replicas (partition 2 shrinking to [3])
// while the replica it keeps is in the ISR: Kafka ends it in the record
// that starts it, while here raft still takes broker 1 out.
func TestListPartitionReassignments(t *testing.T) {
	f := newReassignFixture(t, func(uint64) bool { return false }, func(controller.Move) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	shrink := controller.Command{Reassign: &controller.Reassign{Topic: controller.TopicID{1}, Partition: 2, Target: []uint64{3}}}
	f.sm.Apply(f.state.Applied+1, 1, shrink.Encode())
	p2 := f.sm.View().Topics["orders"].Partitions[2]
	if !p2.Reassigning() {
		t.Fatalf("partition 2 not shrinking: %+v", p2)
	}
	f.ctl.leaders.Note([]netactor.LeaderInfo{{Group: p2.Group, Leader: 1, Term: 4, ISR: []uint64{1, 3}}})
	want := []kadm.ListPartitionReassignmentsResponse{{
		Topic: "orders", Partition: 1, Replicas: []int32{3, 1, 2}, AddingReplicas: []int32{1}, RemovingReplicas: []int32{2},
	}}
	for _, tc := range []struct {
		name string
		set  kadm.TopicsSet
	}{
		{"named", kadm.TopicsSet{"orders": {0: {}, 1: {}, 7: {}}, "missing": {0: {}}}},
		{"only the moving one", kadm.TopicsSet{"orders": {1: {}}}},
	} {
		got, err := f.adm.ListPartitionReassignments(ctx, tc.set)
		if err != nil {
			t.Fatal(err)
		}
		if s := got.Sorted(); fmt.Sprint(s) != fmt.Sprint(want) {
			t.Errorf("%s: %+v, want %+v", tc.name, s, want)
		}
	}
	// Null topics: every reassignment.
	resp, err := kmsg.NewPtrListPartitionReassignmentsRequest().RequestWith(ctx, newKgoClient(t, f.b))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].Topic != "orders" || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].Partition != 1 {
		t.Fatalf("all: %+v", resp.Topics)
	}
	// A partition not moving is not listed.
	resp, err = (&kmsg.ListPartitionReassignmentsRequest{Topics: []kmsg.ListPartitionReassignmentsRequestTopic{{Topic: "orders", Partitions: []int32{0, 2}}}}).RequestWith(ctx, newKgoClient(t, f.b))
	if err != nil || len(resp.Topics) != 0 {
		t.Fatalf("not moving: %+v %v", resp, err)
	}
}

// TestStuckShrinkListed: a move that only removes replicas stays listed,
// and can be cancelled, while a replica it keeps is out of the ISR (or
// dead): Kafka completes it only once the ISR less the replicas leaving
// holds every replica kept (maybeCompleteReassignment). Once Kafka would
// have ended it, a cancel is refused as there, before the controller.
func TestStuckShrinkListed(t *testing.T) {
	f := newReassignFixture(t, func(uint64) bool { return false }, func(controller.Move) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	shrink := controller.Command{Reassign: &controller.Reassign{Topic: controller.TopicID{1}, Partition: 2, Target: []uint64{3}}}
	f.sm.Apply(f.state.Applied+1, 1, shrink.Encode())
	group := f.sm.View().Topics["orders"].Partitions[2].Group
	stuck := []kadm.ListPartitionReassignmentsResponse{{
		Topic: "orders", Partition: 2, Replicas: []int32{3, 1}, AddingReplicas: []int32{}, RemovingReplicas: []int32{1},
	}}
	for _, tc := range []struct {
		name   string
		leader netactor.LeaderInfo
		want   []kadm.ListPartitionReassignmentsResponse
		cancel error
	}{
		{"no leader known", netactor.LeaderInfo{}, stuck, nil},
		{"the kept replica out of the ISR", netactor.LeaderInfo{Leader: 1, Term: 4, ISR: []uint64{1}}, stuck, nil},
		{"the kept replica in the ISR", netactor.LeaderInfo{Leader: 1, Term: 5, ISR: []uint64{1, 3}}, nil, kerr.NoReassignmentInProgress},
		{"led by the kept replica", netactor.LeaderInfo{Leader: 3, Term: 6, ISR: []uint64{3}}, nil, kerr.NoReassignmentInProgress},
	} {
		if tc.leader.Term > 0 {
			tc.leader.Group = group
			f.ctl.leaders.Note([]netactor.LeaderInfo{tc.leader})
		}
		got, err := f.adm.ListPartitionReassignments(ctx, kadm.TopicsSet{"orders": {2: {}}})
		if err != nil {
			t.Fatal(err)
		}
		if s := got.Sorted(); fmt.Sprint(s) != fmt.Sprint(tc.want) {
			t.Errorf("%s: listed %+v, want %+v", tc.name, s, tc.want)
		}
		var req kadm.AlterPartitionAssignmentsReq
		req.CancelAssign("orders", 2)
		resp, err := f.adm.AlterPartitionAssignments(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if err := resp.Error(); !errors.Is(err, tc.cancel) || (err == nil) != (tc.cancel == nil) {
			t.Errorf("%s: cancel: %v, want %v", tc.name, err, tc.cancel)
		}
	}

	// A cancellation is over for Kafka at once, whatever the ISR: partition
	// 0 moved from [1 2] to [1 3], then cancelled, with 2 out of the ISR.
	for i, c := range []controller.Command{
		{Reassign: &controller.Reassign{Topic: controller.TopicID{1}, Partition: 0, Target: []uint64{1, 3}}},
		{Reassign: &controller.Reassign{Topic: controller.TopicID{1}, Partition: 0}},
	} {
		f.sm.Apply(f.sm.View().Applied+uint64(i)+1, 1, c.Encode())
	}
	p0 := f.sm.View().Topics["orders"].Partitions[0]
	if !p0.Reassigning() || len(p0.Adding) > 0 {
		t.Fatalf("partition 0 not taking 3 out after the cancel: %+v", p0)
	}
	f.ctl.leaders.Note([]netactor.LeaderInfo{{Group: p0.Group, Leader: 1, Term: 9, ISR: []uint64{1}}})
	got, err := f.adm.ListPartitionReassignments(ctx, kadm.TopicsSet{"orders": {0: {}}})
	if err != nil || len(got) != 0 {
		t.Errorf("a cancellation listed: %+v %v", got.Sorted(), err)
	}
	var req kadm.AlterPartitionAssignmentsReq
	req.CancelAssign("orders", 0)
	resp, err := f.adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Error(); !errors.Is(err, kerr.NoReassignmentInProgress) {
		t.Errorf("cancel of a cancellation: %v, want NO_REASSIGNMENT_IN_PROGRESS", err)
	}

	f.ctl.mu.Lock()
	defer f.ctl.mu.Unlock()
	if len(f.ctl.moves) != 2 {
		t.Errorf("the controller got %d cancels, want the 2 of the stuck shrink: %+v", len(f.ctl.moves), f.ctl.moves)
	}
}

// TestShrinkOfUnbroadcastPartitionEnds: before a partition's leader first
// broadcasts its ISR, ListPartitionReassignments reasons from the ISR
// Metadata answers, every live replica (as Kafka creates a partition), and
// a shrink whose kept replica is alive is over, as Kafka's would be. It
// reasoned from no ISR at all, and listed the shrink, while Metadata
// showed the kept replica in the ISR.
func TestShrinkOfUnbroadcastPartitionEnds(t *testing.T) {
	f := newReassignFixture(t, func(uint64) bool { return false }, func(controller.Move) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	shrink := controller.Command{Reassign: &controller.Reassign{Topic: controller.TopicID{1}, Partition: 2, Target: []uint64{3}}}
	f.sm.Apply(f.state.Applied+1, 1, shrink.Encode())
	p2 := f.sm.View().Topics["orders"].Partitions[2] // on [3 1], taking 1 out
	// Broker 1's replica follows 3, which has not broadcast yet.
	f.board.Publish(&raftactor.GroupStatus{Group: p2.Group, Role: "follower", Term: 1, Leader: 3})
	got, err := f.adm.ListPartitionReassignments(ctx, kadm.TopicsSet{"orders": {2: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Sorted(); len(s) != 0 {
		t.Errorf("listed %+v, want nothing: the kept replica 3 leads, in the ISR Metadata answers", s)
	}
}

func TestElectLeadersPreferred(t *testing.T) {
	f := newReassignFixture(t, func(id uint64) bool { return id == 1 }, func(controller.Move) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := f.adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, kadm.TopicsSet{"orders": {0: {}, 1: {}, 9: {}}, "missing": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]error{
		"orders/0":  nil,                    // led by 2, moved to 1
		"orders/1":  kerr.ElectionNotNeeded, // led by 3, its preferred (the target's first)
		"orders/9":  kerr.UnknownTopicOrPartition,
		"missing/0": kerr.UnknownTopicOrPartition,
	}
	for topic, ps := range res {
		for p, r := range ps {
			key := fmt.Sprintf("%s/%d", topic, p)
			if w, ok := want[key]; !ok || !errors.Is(r.Err, w) {
				t.Errorf("%s: %v (%s), want %v", key, r.Err, r.ErrMessage, w)
			}
			delete(want, key)
		}
	}
	if len(want) > 0 {
		t.Errorf("no answer for %v", want)
	}
	if li, _ := f.ctl.leaders.Get(f.state.Topics["orders"].Partitions[0].Group); li.Leader != 1 {
		t.Errorf("orders/0 led by %d", li.Leader)
	}
}

// TestElectLeadersTimesOut: a preferred replica that does not take the
// leadership within the request's timeout is PREFERRED_LEADER_NOT_AVAILABLE,
// and the transfer was asked for again while the request waited.
func TestElectLeadersTimesOut(t *testing.T) {
	f := newReassignFixture(t, func(uint64) bool { return false }, func(controller.Move) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req := kmsg.NewPtrElectLeadersRequest()
	req.TimeoutMillis = 500 // 50 ticks: the transfer is asked for at least twice
	req.Topics = []kmsg.ElectLeadersRequestTopic{{Topic: "orders", Partitions: []int32{0}}}
	start := time.Now()
	resp, err := req.RequestWith(ctx, newKgoClient(t, f.b))
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 400*time.Millisecond {
		t.Errorf("answered after %v, before the request's timeout", time.Since(start))
	}
	if len(resp.Topics) != 1 || resp.Topics[0].Partitions[0].ErrorCode != kerr.PreferredLeaderNotAvailable.Code {
		t.Fatalf("response %+v", resp.Topics)
	}
	f.ctl.mu.Lock()
	defer f.ctl.mu.Unlock()
	if len(f.ctl.elected) < 2 || f.ctl.elected[0].Preferred != 1 {
		t.Fatalf("transfers asked for: %+v", f.ctl.elected)
	}
}

func TestElectLeadersAllAndUnclean(t *testing.T) {
	f := newReassignFixture(t, func(uint64) bool { return true }, func(controller.Move) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cl := newKgoClient(t, f.b)

	// Unclean: a partition with a leader needs none; a leaderless one has
	// no eligible leader, since raft would have elected it.
	req := kmsg.NewPtrElectLeadersRequest()
	req.ElectionType = electionUnclean
	req.Topics = []kmsg.ElectLeadersRequestTopic{{Topic: "orders", Partitions: []int32{0, 2}}}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if ps := resp.Topics[0].Partitions; ps[0].ErrorCode != kerr.ElectionNotNeeded.Code || ps[1].ErrorCode != kerr.EligibleLeadersNotAvailable.Code {
		t.Fatalf("unclean: %+v", ps)
	}

	// Null topics: every partition; those already led by their preferred
	// replica are left out, as Kafka's controller does.
	req = kmsg.NewPtrElectLeadersRequest()
	req.Topics = nil
	if resp, err = req.RequestWith(ctx, cl); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			got = append(got, fmt.Sprintf("%s/%d:%d", rt.Topic, rp.Partition, rp.ErrorCode))
		}
	}
	if want := []string{"orders/0:0", "orders/2:0"}; !slices.Equal(got, want) {
		t.Fatalf("all partitions: %v, want %v", got, want)
	}

	// An unknown election type is refused.
	req = kmsg.NewPtrElectLeadersRequest()
	req.ElectionType = 7
	if resp, err = req.RequestWith(ctx, cl); err != nil || resp.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("election type 7: %+v %v", resp, err)
	}
}

// TestCancelAskedAgainAfterLeaderChange: a cancel whose proposal the
// controller group's leader change left undecided is asked again; if the
// first was applied after all, the second finds nothing to cancel, and
// the cancel is answered as done, not NO_REASSIGNMENT_IN_PROGRESS. Found
// by review.
func TestCancelAskedAgainAfterLeaderChange(t *testing.T) {
	var calls atomic.Int32
	f := newReassignFixture(t, func(uint64) bool { return false }, func(m controller.Move) error {
		if calls.Add(1) == 1 {
			return fmt.Errorf("%w: %w", kerr.NotController, raftactor.ErrLeaderChanged)
		}
		return fmt.Errorf("%w: %s/%d is not being reassigned", kerr.NoReassignmentInProgress, m.Topic, m.Partition)
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var req kadm.AlterPartitionAssignmentsReq
	req.CancelAssign("orders", 1)
	resp, err := f.adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil {
			t.Errorf("orders/%d: %v (%s), want the cancel done", r.Partition, r.Err, r.ErrMessage)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("controller asked %d times, want 2", n)
	}
}

// TestRetargetToOriginalListed: partition 0 moves [1 2] -> [1 3] (3 is
// added, the move runs), then an operator asks explicitly (not a cancel)
// for [1 2]. Kafka computes the change from the current replicas [1 3 2]
// (ReplicationControlManager.changePartitionReassignment ->
// PartitionReassignmentReplicas(current, target)): removing [3], adding [],
// replicas [1 2 3], and keeps it (lists it) while a kept replica, 2, is out
// of the ISR (maybeCompleteReassignment): it is no cancellation.
func TestRetargetToOriginalListed(t *testing.T) {
	f := newReassignFixture(t, func(uint64) bool { return false }, func(controller.Move) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for _, c := range []controller.Command{
		{Reassign: &controller.Reassign{Topic: controller.TopicID{1}, Partition: 0, Target: []uint64{1, 3}}},
		{Reassign: &controller.Reassign{Topic: controller.TopicID{1}, Partition: 0, Target: []uint64{1, 2}}},
	} {
		f.sm.Apply(f.sm.View().Applied+1, 1, c.Encode())
	}
	p0 := f.sm.View().Topics["orders"].Partitions[0]
	t.Logf("partition 0: %+v", p0)
	if !p0.Reassigning() {
		t.Fatalf("partition 0 not taking 3 out: %+v", p0)
	}
	f.ctl.leaders.Note([]netactor.LeaderInfo{{Group: p0.Group, Leader: 1, Term: 9, ISR: []uint64{1, 3}}})
	got, err := f.adm.ListPartitionReassignments(ctx, kadm.TopicsSet{"orders": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []kadm.ListPartitionReassignmentsResponse{{
		Topic: "orders", Partition: 0, Replicas: []int32{1, 2, 3}, AddingReplicas: []int32{}, RemovingReplicas: []int32{3},
	}}
	if s := got.Sorted(); fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("listed %+v, Kafka lists %+v (kept replica 2 out of the ISR)", s, want)
	}
}
