package group

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestExpiredOffsets(t *testing.T) {
	const cutoff = 1_000_000
	meta := func(emptySince int64, members int) *kmsg.GroupMetadataValue {
		v := kmsg.NewGroupMetadataValue()
		v.ProtocolType, v.CurrentStateTimestamp = "consumer", emptySince
		for range members {
			v.Members = append(v.Members, kmsg.NewGroupMetadataValueMember())
		}
		return &v
	}
	committedAt := func(ts int64) kmsg.OffsetCommitValue {
		v := kmsg.NewOffsetCommitValue()
		v.Offset, v.CommitTimestamp = 5, ts
		return v
	}
	tp0, tp1 := TopicPartition{"t", 0}, TopicPartition{"t", 1}
	m := NewMachine(MachineOptions{Tick: 50 * time.Millisecond})
	m.store = store{
		// Empty long enough: everything goes, the group too.
		"old-empty": {meta: meta(cutoff-1, 0), offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(cutoff + 5)}},
		// Empty, but not for long enough.
		"new-empty": {meta: meta(cutoff+1, 0), offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(0)}},
		// Standalone consumers: per offset, by commit time.
		"simple": {offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(cutoff - 1), tp1: committedAt(cutoff)}},
		// Stored long ago, but live with members now.
		"active": {meta: meta(cutoff-100, 1), offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(0)}},
		// Stored at its last SyncGroup long ago, and Empty just now: the
		// Empty membership is not applied yet (or its write failed).
		"just-emptied": {meta: meta(cutoff-100, 1), offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(0)}},
		// Empty since long ago here, whatever the store says.
		"emptied-long-ago": {meta: meta(cutoff+100, 1), offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(cutoff + 5)}},
	}
	m.groups = map[string]*group{
		"active":           {name: "active", state: stateStable, members: map[string]*member{"m": {}}},
		"just-emptied":     {name: "just-emptied", state: stateEmpty, members: map[string]*member{}, emptySince: cutoff + 1},
		"emptied-long-ago": {name: "emptied-long-ago", state: stateEmpty, members: map[string]*member{}, emptySince: cutoff - 1},
	}
	// A commit in flight: its group waits for the next round.
	m.store["committing"] = &stored{offsets: map[TopicPartition]kmsg.OffsetCommitValue{tp0: committedAt(0)}}
	m.beginCommit("committing", map[TopicPartition]int16{tp1: -1})

	w := m.expired(cutoff)
	if err := m.store.applyRecords(w.b); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.store["old-empty"]; ok {
		t.Error("a group empty for longer than the retention was kept")
	}
	if g := m.store["new-empty"]; g == nil || len(g.offsets) != 1 {
		t.Error("a recently emptied group lost its offsets")
	}
	if g := m.store["simple"]; g == nil || len(g.offsets) != 1 || g.offsets[tp1].Offset != 5 {
		t.Errorf("standalone offsets after expiry: %+v, want only t/1", g)
	}
	if g := m.store["active"]; g == nil || len(g.offsets) != 1 {
		t.Error("an active group lost its offsets")
	}
	if g := m.store["just-emptied"]; g == nil || len(g.offsets) != 1 {
		t.Error("a group that became Empty a moment ago lost its offsets to the time of its last stored membership")
	}
	if _, ok := m.store["emptied-long-ago"]; ok {
		t.Error("a group Empty for longer than the retention was kept")
	}
	if g := m.store["committing"]; g == nil || len(g.offsets) != 1 {
		t.Error("a group with a commit in flight lost its offsets")
	}
	if w := m.expired(cutoff); len(w.b) != 0 {
		t.Errorf("a second pass found %d more bytes to expire", len(w.b))
	}
	// Once the commit is answered, the group's old offset goes.
	m.endCommit("committing", map[TopicPartition]int16{tp1: -1})
	if err := m.store.applyRecords(m.expired(cutoff).b); err != nil {
		t.Fatal(err)
	}
	if g := m.store["committing"]; g != nil && len(g.offsets) != 0 {
		t.Errorf("after the commit was answered: %+v, want its expired offset gone", g)
	}
}

// TestCommitCheck follows Kafka's ClassicGroup.validateOffsetCommit: simple
// commits to a group without members, then membership, then the
// generation, and REBALANCE_IN_PROGRESS only for a valid commit while the
// group completes a rebalance.
func TestCommitCheck(t *testing.T) {
	inst := "i1"
	completing := newGroup("completing")
	completing.state, completing.generation = stateCompletingRebalance, 5
	completing.members["m2"] = &member{id: "m2", instance: &inst}
	completing.static[inst] = "m2"
	stable := newGroup("stable")
	stable.state, stable.generation = stateStable, 5
	stable.members["m2"] = &member{id: "m2"}
	empty := newGroup("empty")
	empty.state, empty.generation = stateEmpty, 3
	for _, tc := range []struct {
		name     string
		g        *group
		member   string
		gen      int32
		instance *string
		want     *kerr.Error
	}{
		{"simple commit, empty group", empty, "", -1, nil, nil},
		{"simple commit naming a member, empty group", empty, "x", -1, nil, nil},
		{"a generation, empty group", empty, "x", 3, nil, kerr.UnknownMemberID},
		{"anonymous commit, live group", stable, "", -1, nil, kerr.UnknownMemberID},
		{"member of the generation", stable, "m2", 5, nil, nil},
		{"stale generation", stable, "m2", 4, nil, kerr.IllegalGeneration},
		{"valid commit while completing a rebalance", completing, "m2", 5, &inst, kerr.RebalanceInProgress},
		{"stale generation while completing a rebalance", completing, "m2", 4, nil, kerr.IllegalGeneration},
		{"unknown member while completing a rebalance", completing, "zombie", 5, nil, kerr.UnknownMemberID},
		{"fenced static instance while completing a rebalance", completing, "m1-old", 5, &inst, kerr.FencedInstanceID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := kmsg.NewPtrOffsetCommitRequest()
			req.MemberID, req.Generation, req.InstanceID = tc.member, tc.gen, tc.instance
			want := int16(0)
			if tc.want != nil {
				want = tc.want.Code
			}
			if code, _ := tc.g.commitCheck(req); code != want {
				t.Fatalf("commitCheck = %v, want %v", kerr.ErrorForCode(code), tc.want)
			}
		})
	}
}

// TestRetentionAfterLastMemberLeavesDuringStall: a group Stable for longer
// than the retention time (its membership stored at its last SyncGroup)
// loses its last member while the offsets partition cannot write. The
// live group is Empty at once, its Empty membership waits; a retention
// pass meanwhile must count from the moment the group became Empty, not
// from the stored SyncGroup, or it deletes offsets committed a moment ago.
func TestRetentionAfterLastMemberLeavesDuringStall(t *testing.T) {
	const day = 24 * time.Hour
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Second, MaxSessionTimeout: time.Hour, OffsetsRetention: 7 * day})
	join := c.call("orders", joinRequest("orders", "", nil)).(*kmsg.JoinGroupResponse)
	if err := kerr.ErrorForCode(join.ErrorCode); err != nil {
		t.Fatalf("join: %v", err)
	}
	assignment := kmsg.NewConsumerMemberAssignment()
	assignment.Topics = []kmsg.ConsumerMemberAssignmentTopic{{Topic: "t", Partitions: []int32{0}}}
	sync := c.call("orders", syncRequest("orders", join.MemberID, join.Generation, nil,
		map[string][]byte{join.MemberID: assignment.AppendTo(nil)})).(*kmsg.SyncGroupResponse)
	if err := kerr.ErrorForCode(sync.ErrorCode); err != nil {
		t.Fatalf("sync: %v", err)
	}

	// Eight days without a rebalance, then a commit.
	c.now.Add((8 * day).Milliseconds())
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version = 7
	commit.Group, commit.MemberID, commit.Generation = "orders", join.MemberID, join.Generation
	commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 123456}}}}
	if code := c.call("orders", commit).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}

	c.hold(true)
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group, leave.MemberID = "orders", join.MemberID
	if code := c.call("orders", leave).(*kmsg.LeaveGroupResponse).ErrorCode; code != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(code))
	}
	c.waitTicks(expireEveryTicks + 100) // a retention pass ran meanwhile
	if st := c.call("orders", &Describe{}).(*kmsg.DescribeGroupsResponseGroup).State; st != "Empty" {
		t.Fatalf("group state after its last member left: %s, want Empty", st)
	}
	c.hold(false)
	// A commit written after whatever retention proposed: once it is
	// answered, that is applied too.
	barrier := kmsg.NewPtrOffsetCommitRequest()
	barrier.Version, barrier.Group, barrier.Generation = 7, "barrier", -1
	barrier.Topics = commit.Topics
	if code := c.call("barrier", barrier).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("barrier commit: %v", kerr.ErrorForCode(code))
	}

	got := c.call("orders", &FetchOffsets{}).(*kmsg.OffsetFetchResponseGroup)
	if len(got.Topics) != 1 || len(got.Topics[0].Partitions) != 1 || got.Topics[0].Partitions[0].Offset != 123456 {
		t.Fatalf("committed offsets of the group emptied a moment ago: %+v, want t/0 at 123456", got.Topics)
	}
}

// TestFetchOffsetsUncommitted: a partition with no commit is answered
// offset -1 with metadata "" (Kafka's OffsetFetchResponse.NO_METADATA),
// never null, whether its group has other commits or none at all.
func TestFetchOffsetsUncommitted(t *testing.T) {
	m := NewMachine(MachineOptions{Tick: 50 * time.Millisecond})
	v := kmsg.NewOffsetCommitValue()
	v.Offset, v.Metadata = 42, "m"
	m.store = store{"g": {offsets: map[TopicPartition]kmsg.OffsetCommitValue{{"t", 0}: v}}}
	for _, tc := range []struct {
		group     string
		partition int32
		offset    int64
		metadata  string
	}{
		{"g", 0, 42, "m"},
		{"g", 1, -1, ""},
		{"unknown", 0, -1, ""},
	} {
		rg := m.fetchOffsets(tc.group, &FetchOffsets{Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{tc.partition}}}})
		rp := rg.Topics[0].Partitions[0]
		if rp.Offset != tc.offset || rp.Metadata == nil || *rp.Metadata != tc.metadata {
			t.Errorf("group %s t/%d: offset %d metadata %v, want %d %q", tc.group, tc.partition, rp.Offset, rp.Metadata, tc.offset, tc.metadata)
		}
	}
}

// TestExpiredOffsetsOfUnsubscribedTopics: a stable consumer group expires
// the offsets of topics none of its members subscribes to once they were
// committed longer ago than the retention, as Kafka's
// GroupMetadata.removeExpiredOffsets does (KIP-496: consumer protocol,
// subscribed topics known, Stable); the subscribed topics' offsets stay
// however old, and so does everything while the group rebalances or a
// commit of the partition is in flight.
func TestExpiredOffsetsOfUnsubscribedTopics(t *testing.T) {
	const cutoff = 1_000_000
	committed := func(ts int64) kmsg.OffsetCommitValue {
		v := kmsg.NewOffsetCommitValue()
		v.Offset, v.CommitTimestamp = 5, ts
		return v
	}
	meta := kmsg.NewGroupMetadataValue()
	meta.ProtocolType, meta.CurrentStateTimestamp = "consumer", cutoff-100
	sub := kmsg.NewConsumerMemberMetadata()
	sub.Topics = []string{"subscribed"}
	subscribed, dropped, recent, inFlight := TopicPartition{"subscribed", 0}, TopicPartition{"dropped", 0}, TopicPartition{"dropped", 1}, TopicPartition{"dropped", 2}
	m := NewMachine(MachineOptions{Tick: 50 * time.Millisecond})
	m.store = store{"g": {meta: &meta, offsets: map[TopicPartition]kmsg.OffsetCommitValue{
		subscribed: committed(0), dropped: committed(cutoff - 1), recent: committed(cutoff), inFlight: committed(0)}}}
	g := newGroup("g")
	g.state, g.protocolType, g.protocol, g.generation = statePreparingRebalance, "consumer", "range", 3
	g.members["m"] = &member{id: "m", protocols: []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: sub.AppendTo(nil)}}}
	m.groups = map[string]*group{"g": g}
	m.beginCommit("g", map[TopicPartition]int16{inFlight: -1})

	if w := m.expired(cutoff); len(w.b) != 0 {
		t.Fatal("offsets of a rebalancing group expired")
	}
	g.state = stateStable
	if err := m.store.applyRecords(m.expired(cutoff).b); err != nil {
		t.Fatal(err)
	}
	s := m.store["g"]
	for tp, want := range map[TopicPartition]bool{subscribed: true, dropped: false, recent: true, inFlight: true} {
		if _, ok := s.offsets[tp]; ok != want {
			t.Errorf("%v kept %v, want %v", tp, ok, want)
		}
	}
	if s.meta == nil {
		t.Error("the group's membership was deleted")
	}
}

// view asks the coordinator for its groups as /debug/groups shows them.
func (c *testCoordinator) view() []GroupInfo {
	c.t.Helper()
	reply := make(chan []GroupInfo, 1)
	c.sys.Root.Send(c.pid, &ViewGroups{Reply: reply})
	select {
	case v := <-reply:
		return v
	case <-time.After(testTimeout):
		c.t.Fatalf("no view within %v", testTimeout)
		return nil
	}
}

// TestViewGroupsIsCurrent: the debug view is built when asked for, on the
// partition's actor, so it shows what the coordinator knows now: a commit
// and a membership answered a moment before. (It used to be rebuilt every
// second whether anyone looked or not, which for thousands of groups
// with their offsets took the actor hundreds of milliseconds.)
func TestViewGroupsIsCurrent(t *testing.T) {
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Millisecond, MaxSessionTimeout: time.Hour})
	assign := kmsg.NewConsumerMemberAssignment()
	assign.Topics = []kmsg.ConsumerMemberAssignmentTopic{{Topic: "t", Partitions: []int32{0}}}
	j := c.call("g", joinRequest("g", "", nil)).(*kmsg.JoinGroupResponse)
	s := c.call("g", syncRequest("g", j.MemberID, j.Generation, nil, map[string][]byte{j.MemberID: assign.AppendTo(nil)})).(*kmsg.SyncGroupResponse)
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Group, commit.MemberID, commit.Generation = "g", j.MemberID, j.Generation
	commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 42}}}}
	cm := c.call("g", commit).(*kmsg.OffsetCommitResponse)
	if j.ErrorCode != 0 || s.ErrorCode != 0 || cm.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("join %v, sync %v, commit %v", kerr.ErrorForCode(j.ErrorCode), kerr.ErrorForCode(s.ErrorCode), kerr.ErrorForCode(cm.Topics[0].Partitions[0].ErrorCode))
	}
	v := c.view()
	want := []GroupInfo{{Group: "g", State: "Stable", ProtocolType: "consumer", Protocol: "range", Generation: j.Generation, Leader: j.MemberID,
		Members: []MemberInfo{{ID: j.MemberID, ClientID: "test", Host: "/127.0.0.1", Assigned: map[string][]int32{"t": {0}}}},
		Offsets: []CommittedInfo{{Topic: "t", Partition: 0, Offset: 42}}}}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("view %+v, want %+v", v, want)
	}
}

// commitMany has a member join group and commit offsets of n topics, so
// that a view of the partition takes a while to build.
func (c *testCoordinator) commitMany(group string, n int) {
	c.t.Helper()
	j := c.call(group, joinRequest(group, "", nil)).(*kmsg.JoinGroupResponse)
	s := c.call(group, syncRequest(group, j.MemberID, j.Generation, nil, map[string][]byte{j.MemberID: nil})).(*kmsg.SyncGroupResponse)
	if j.ErrorCode != 0 || s.ErrorCode != 0 {
		c.t.Fatalf("join %v, sync %v", kerr.ErrorForCode(j.ErrorCode), kerr.ErrorForCode(s.ErrorCode))
	}
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Group, commit.MemberID, commit.Generation = group, j.MemberID, j.Generation
	for i := range n {
		commit.Topics = append(commit.Topics, kmsg.OffsetCommitRequestTopic{Topic: fmt.Sprintf("t%d", i),
			Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: int64(i)}}})
	}
	cm := c.call(group, commit).(*kmsg.OffsetCommitResponse)
	if code := cm.Topics[0].Partitions[0].ErrorCode; code != 0 {
		c.t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}
}

// TestViewGroupsAnswersWaitingAtOnce: requests for the view that wait
// for the actor together are answered by one view, not one build each
// (a view of a large partition takes the actor hundreds of
// milliseconds, and /debug/groups asks on every page load).
func TestViewGroupsAnswersWaitingAtOnce(t *testing.T) {
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Millisecond, MaxSessionTimeout: time.Hour})
	c.commitMany("g", 20_000)
	replies := make([]chan []GroupInfo, 10)
	for i := range replies {
		replies[i] = make(chan []GroupInfo, 1)
		c.sys.Root.Send(c.pid, &ViewGroups{Reply: replies[i], Deadline: time.Now().Add(testTimeout)})
	}
	builds := map[*GroupInfo]bool{}
	for i, reply := range replies {
		select {
		case v := <-reply:
			if len(v) != 1 || len(v[0].Offsets) != 20_000 {
				t.Fatalf("view %d: %d groups", i, len(v))
			}
			builds[&v[0]] = true
		case <-time.After(testTimeout):
			t.Fatalf("view %d: no answer within %v", i, testTimeout)
		}
	}
	// The first request is answered alone when the others reach the
	// mailbox after it was taken; the others wait together.
	if len(builds) > 2 {
		t.Errorf("%d requests sent together were answered by %d views built, want at most 2", len(replies), len(builds))
	}
}

// TestViewGroupsSkipsExpired: a request for the view whose asker gave up
// (its deadline passed while it waited for the actor) is not answered,
// and costs the actor no view.
func TestViewGroupsSkipsExpired(t *testing.T) {
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Millisecond, MaxSessionTimeout: time.Hour})
	c.commitMany("g", 10)
	expired := make(chan []GroupInfo, 1)
	c.sys.Root.Send(c.pid, &ViewGroups{Reply: expired, Deadline: time.Now().Add(-time.Millisecond)})
	if v := c.view(); len(v) != 1 { // asked after: answered once the expired one was handled
		t.Fatalf("view: %d groups, want 1", len(v))
	}
	select {
	case <-expired:
		t.Fatal("a request past its deadline was answered")
	default:
	}
}

// BenchmarkViewLargePartition: what one /debug/groups request costs the
// actor of an offsets partition holding 5000 groups with 200 committed
// offsets each (nothing while nobody asks).
func BenchmarkViewLargePartition(b *testing.B) {
	m := NewMachine(MachineOptions{Tick: 50 * time.Millisecond})
	m.groups = map[string]*group{}
	v := kmsg.NewOffsetCommitValue()
	for i := range 5000 {
		name := fmt.Sprintf("g%d", i)
		s := &stored{offsets: map[TopicPartition]kmsg.OffsetCommitValue{}}
		for p := range 200 {
			s.offsets[TopicPartition{fmt.Sprintf("t%d", p%20), int32(p)}] = v
		}
		m.store[name] = s
		m.groups[name] = newGroup(name)
	}
	for b.Loop() {
		m.view()
	}
}

// TestSimpleCommitInFlightKeepsItsGroup: a group that exists only by
// simple commits (generation -1, no members) is listed once its first
// commit is applied, even when a tick's session-expiry pass ran while that
// commit was in flight. forget used to drop the live group then, as
// nothing was stored for it yet, and ListGroups left it out until a
// Describe, a join or a leader change brought it back; Kafka lists such a
// group as Empty.
func TestSimpleCommitInFlightKeepsItsGroup(t *testing.T) {
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Millisecond, MaxSessionTimeout: time.Hour})
	c.hold(true)
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version, commit.Group, commit.Generation = 7, "solo", -1
	commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 5}}}}
	ref := c.send("solo", commit)
	c.waitTicks(10) // expiry passes run while the commit waits for the storage
	c.hold(false)
	if code := c.answer(ref).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}

	listed := make(chan *Listed, 1)
	lister, err := c.sys.Spawn("test", "lister", func() actor.Actor {
		return actor.ReceiveFunc(func(ctx actor.Context) {
			if l, ok := ctx.Message().(*Listed); ok {
				listed <- l
			}
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	c.sys.Root.Send(c.pid, &List{Ref: 1, ReplyTo: lister})
	select {
	case l := <-listed:
		if l.ErrorCode != 0 || len(l.Groups) != 1 || l.Groups[0].Group != "solo" || l.Groups[0].GroupState != "Empty" {
			t.Fatalf("listed %v, error %v; want solo, Empty", l.Groups, kerr.ErrorForCode(l.ErrorCode))
		}
	case <-time.After(testTimeout):
		t.Fatalf("no answer to List within %v", testTimeout)
	}
}
