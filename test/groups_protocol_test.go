package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/group"
)

// The group protocol as Kafka specifies it, driven with raw requests to a
// one-broker cluster (so its coordinator is that broker): KIP-394 member
// ids, generations and member-id fencing, rebalances on join, session
// expiry and leave, offset commits and their errors, static membership.

// groupProtocolSettings: no initial delay, and sessions short enough to
// watch one expire.
const groupProtocolSettings = "group_initial_rebalance_delay_ms: 0, group_min_session_timeout_ms: 500"

type groupConn struct {
	t  *testing.T
	cl *kgo.Client
	nd *node
}

// newGroupConn starts a broker and waits until group's coordinator is
// ready (the offsets topic is created on the first FindCoordinator).
func newGroupConn(t *testing.T, group string) *groupConn {
	nd := newClusterWith(t, 1, groupProtocolSettings)[0]
	nd.start(t)
	nd.waitKafka(t)
	g := &groupConn{t: t, cl: nd.client(t), nd: nd}
	if id := findCoordinator(t, nd, group); id != int32(nd.id) {
		t.Fatalf("coordinator of %s is %d", group, id)
	}
	waitFor(t, 10*time.Second, "coordinator ready", func() bool {
		return heartbeat(g, group, "nobody", 1) == kerr.UnknownMemberID.Code
	})
	return g
}

// do sends req to the broker itself and returns its response.
func (g *groupConn) do(req kmsg.Request) kmsg.Response {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := g.cl.Broker(int(g.nd.id)).Request(ctx, req)
	if err != nil {
		g.t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

// async sends req in the background: JoinGroup waits for its rebalance.
func (g *groupConn) async(req kmsg.Request) <-chan kmsg.Response {
	ch := make(chan kmsg.Response, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := g.cl.Broker(int(g.nd.id)).Request(ctx, req)
		if err != nil {
			g.t.Errorf("%s: %v", kmsg.NameForKey(req.Key()), err)
		}
		ch <- resp
	}()
	return ch
}

func wait[R kmsg.Response](t *testing.T, ch <-chan kmsg.Response) R {
	t.Helper()
	select {
	case r := <-ch:
		if r == nil {
			t.FailNow()
		}
		return r.(R)
	case <-time.After(20 * time.Second):
		t.Fatal("no answer within 20 s")
	}
	panic("unreachable")
}

func joinReq(group, member string, instance *string, sessionMs int32) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.MemberID, req.InstanceID = group, member, instance
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = sessionMs, 10000
	req.ProtocolType = "consumer"
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"events"}
	req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
	return req
}

func syncReq(group, member string, gen int32, assign map[string][]byte) *kmsg.SyncGroupRequest {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Group, req.MemberID, req.Generation = group, member, gen
	for id, a := range assign {
		req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: a})
	}
	return req
}

func heartbeat(g *groupConn, group, member string, gen int32) int16 {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group, req.MemberID, req.Generation = group, member, gen
	return g.do(req).(*kmsg.HeartbeatResponse).ErrorCode
}

func commit(g *groupConn, group, member string, gen int32, topic string, p int32, offset int64, meta string) int16 {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.MemberID, req.Generation = group, member, gen
	req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{
		{Partition: p, Offset: offset, LeaderEpoch: -1, Metadata: &meta}}}}
	return g.do(req).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
}

func fetchOffset(g *groupConn, group, topic string, p int32) int64 {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Groups = []kmsg.OffsetFetchRequestGroup{{Group: group, Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: topic, Partitions: []int32{p}}}}}
	rg := g.do(req).(*kmsg.OffsetFetchResponse).Groups[0]
	if rg.ErrorCode != 0 {
		g.t.Fatalf("OffsetFetch %s: %s", group, kerr.ErrorForCode(rg.ErrorCode))
	}
	return rg.Topics[0].Partitions[0].Offset
}

func describe(g *groupConn, group string) kmsg.DescribeGroupsResponseGroup {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	return g.do(req).(*kmsg.DescribeGroupsResponse).Groups[0]
}

func expectCode(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	wantCode := int16(0)
	if want != nil {
		wantCode = want.Code
	}
	if got != wantCode {
		t.Fatalf("%s: got %s, want %s", what, codeName(got), codeName(wantCode))
	}
}

func TestGroupProtocol(t *testing.T) {
	const grp = "proto"
	g := newGroupConn(t, grp)
	createTopic(t, g.nd.admin(t), "events", 2, nil)

	// KIP-394: a dynamic member first gets its id.
	j := g.do(joinReq(grp, "", nil, 1000)).(*kmsg.JoinGroupResponse)
	expectCode(t, "first join", j.ErrorCode, kerr.MemberIDRequired)
	m1 := j.MemberID
	if m1 == "" {
		t.Fatal("MEMBER_ID_REQUIRED without a member id")
	}
	j = wait[*kmsg.JoinGroupResponse](t, g.async(joinReq(grp, m1, nil, 1000)))
	expectCode(t, "join with the given id", j.ErrorCode, nil)
	if j.Generation != 1 || j.LeaderID != m1 || len(j.Members) != 1 {
		t.Fatalf("join: generation %d, leader %q, %d members", j.Generation, j.LeaderID, len(j.Members))
	}
	s := g.do(syncReq(grp, m1, 1, map[string][]byte{m1: []byte("a1")})).(*kmsg.SyncGroupResponse)
	if s.ErrorCode != 0 || string(s.MemberAssignment) != "a1" {
		t.Fatalf("leader sync: %s, assignment %q", codeName(s.ErrorCode), s.MemberAssignment)
	}
	expectCode(t, "heartbeat", heartbeat(g, grp, m1, 1), nil)
	expectCode(t, "heartbeat, old generation", heartbeat(g, grp, m1, 0), kerr.IllegalGeneration)
	expectCode(t, "heartbeat, unknown member", heartbeat(g, grp, "nobody", 1), kerr.UnknownMemberID)

	// A second member: the first learns of the rebalance from its
	// heartbeat, rejoins, and both get generation 2.
	j = g.do(joinReq(grp, "", nil, 1000)).(*kmsg.JoinGroupResponse)
	m2 := j.MemberID
	join2 := g.async(joinReq(grp, m2, nil, 1000))
	waitFor(t, 5*time.Second, "rebalance visible in the heartbeat", func() bool {
		return heartbeat(g, grp, m1, 1) == kerr.RebalanceInProgress.Code
	})
	join1 := g.async(joinReq(grp, m1, nil, 1000))
	j1, j2 := wait[*kmsg.JoinGroupResponse](t, join1), wait[*kmsg.JoinGroupResponse](t, join2)
	if j1.ErrorCode != 0 || j2.ErrorCode != 0 || j1.Generation != 2 || j2.Generation != 2 || j1.LeaderID != m1 || len(j1.Members) != 2 || len(j2.Members) != 0 {
		t.Fatalf("rejoin: %+v / %+v", j1, j2)
	}
	sync2 := g.async(syncReq(grp, m2, 2, nil))
	s = g.do(syncReq(grp, m1, 2, map[string][]byte{m1: []byte("a1"), m2: []byte("a2")})).(*kmsg.SyncGroupResponse)
	if s2 := wait[*kmsg.SyncGroupResponse](t, sync2); s.ErrorCode != 0 || s2.ErrorCode != 0 || string(s2.MemberAssignment) != "a2" {
		t.Fatalf("syncs: leader %s, follower %s with %q", codeName(s.ErrorCode), codeName(s2.ErrorCode), s2.MemberAssignment)
	}

	// Commits are fenced by member and generation.
	expectCode(t, "commit", commit(g, grp, m2, 2, "events", 1, 42, "m"), nil)
	expectCode(t, "commit, old generation", commit(g, grp, m2, 1, "events", 1, 43, "m"), kerr.IllegalGeneration)
	expectCode(t, "simple commit to an active group", commit(g, grp, "", -1, "events", 1, 43, "m"), kerr.UnknownMemberID)
	expectCode(t, "commit to an unknown topic", commit(g, grp, m2, 2, "nope", 0, 1, "m"), kerr.UnknownTopicOrPartition)
	expectCode(t, "commit with huge metadata", commit(g, grp, m2, 2, "events", 0, 1, strings.Repeat("x", 5000)), kerr.OffsetMetadataTooLarge)
	if got := fetchOffset(g, grp, "events", 1); got != 42 {
		t.Fatalf("fetched offset %d, want 42", got)
	}
	if got := fetchOffset(g, grp, "events", 0); got != -1 {
		t.Fatalf("fetched offset of an uncommitted partition %d, want -1", got)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{grp}
	expectCode(t, "delete an active group", g.do(del).(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode, kerr.NonEmptyGroup)
	list := kmsg.NewPtrListGroupsRequest()
	list.StatesFilter = []string{"Stable"}
	if lg := g.do(list).(*kmsg.ListGroupsResponse).Groups; len(lg) != 1 || lg[0].Group != grp || lg[0].ProtocolType != "consumer" {
		t.Fatalf("ListGroups(Stable) = %+v", lg)
	}
	od := kmsg.NewPtrOffsetDeleteRequest()
	od.Group = grp
	od.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "events", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 1}}}}
	expectCode(t, "delete offsets of a subscribed topic", g.do(od).(*kmsg.OffsetDeleteResponse).Topics[0].Partitions[0].ErrorCode, kerr.GroupSubscribedToTopic)

	// m2 stops heartbeating: its session expires and m1 carries on alone.
	waitFor(t, 10*time.Second, "m2's session expiring", func() bool {
		return heartbeat(g, grp, m1, 2) == kerr.RebalanceInProgress.Code
	})
	j1 = wait[*kmsg.JoinGroupResponse](t, g.async(joinReq(grp, m1, nil, 1000)))
	if j1.ErrorCode != 0 || j1.Generation != 3 || len(j1.Members) != 1 {
		t.Fatalf("join after m2 expired: %+v", j1)
	}
	expectCode(t, "expired member's heartbeat", heartbeat(g, grp, m2, 2), kerr.UnknownMemberID)

	// m1 leaves: the group is empty, its offsets deletable, then itself.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group, leave.Members = grp, []kmsg.LeaveGroupRequestMember{{MemberID: m1}}
	expectCode(t, "leave", g.do(leave).(*kmsg.LeaveGroupResponse).Members[0].ErrorCode, nil)
	if d := describe(g, grp); d.State != "Empty" || len(d.Members) != 0 {
		t.Fatalf("after the last member left: %+v", d)
	}
	expectCode(t, "simple commit to an empty group", commit(g, grp, "", -1, "events", 0, 7, ""), nil)
	// Kafka's codes for an empty group: a simple commit naming a member
	// is still simple; one naming a generation must come from a member.
	expectCode(t, "simple commit naming a member, empty group", commit(g, grp, "gone-member", -1, "events", 0, 8, ""), nil)
	expectCode(t, "commit from a member that left", commit(g, grp, "gone-member", 2, "events", 0, 9, ""), kerr.UnknownMemberID)
	expectCode(t, "commit naming only a generation", commit(g, grp, "", 2, "events", 0, 9, ""), kerr.UnknownMemberID)
	// A generation of a group that does not exist (OffsetCommit v9):
	// GROUP_ID_NOT_FOUND, and nothing is created.
	expectCode(t, "commit to a group that does not exist", commit(g, "no-such-group", "m", 3, "events", 0, 1, ""), kerr.GroupIDNotFound)
	if d := describe(g, "no-such-group"); d.State != "Dead" {
		t.Fatalf("a refused commit created the group: %q", d.State)
	}
	expectCode(t, "delete offsets of an empty group", g.do(od).(*kmsg.OffsetDeleteResponse).Topics[0].Partitions[0].ErrorCode, nil)
	if got := fetchOffset(g, grp, "events", 1); got != -1 {
		t.Fatalf("offset after OffsetDelete: %d, want -1", got)
	}
	expectCode(t, "delete the empty group", g.do(del).(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode, nil)
	if d := describe(g, grp); d.State != "Dead" {
		t.Fatalf("deleted group described as %q", d.State)
	}
	if got := fetchOffset(g, grp, "events", 0); got != -1 {
		t.Fatalf("offset of a deleted group: %d, want -1", got)
	}
}

// TestStaticMembership: KIP-345. A static member joins without the
// KIP-394 round; when its instance restarts (joins again with no member
// id) it takes the old member's place without a rebalance, the old id is
// fenced, and it can leave by instance id.
func TestStaticMembership(t *testing.T) {
	const grp = "static"
	g := newGroupConn(t, grp)
	createTopic(t, g.nd.admin(t), "events", 2, nil)
	inst := kmsg.StringPtr("host-a")
	j := wait[*kmsg.JoinGroupResponse](t, g.async(joinReq(grp, "", inst, 10000)))
	expectCode(t, "static join", j.ErrorCode, nil)
	old := j.MemberID
	if s := g.do(syncReq(grp, old, j.Generation, map[string][]byte{old: []byte("a")})).(*kmsg.SyncGroupResponse); s.ErrorCode != 0 {
		t.Fatalf("sync: %s", codeName(s.ErrorCode))
	}

	j2 := wait[*kmsg.JoinGroupResponse](t, g.async(joinReq(grp, "", inst, 10000)))
	expectCode(t, "static rejoin", j2.ErrorCode, nil)
	if j2.MemberID == old || j2.Generation != j.Generation || j2.LeaderID != j2.MemberID || !j2.SkipAssignment {
		t.Fatalf("static rejoin: %+v (old member %s, generation %d)", j2, old, j.Generation)
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = grp, old, j.Generation, inst
	expectCode(t, "old incarnation's heartbeat", g.do(hb).(*kmsg.HeartbeatResponse).ErrorCode, kerr.FencedInstanceID)
	if s := g.do(syncReq(grp, j2.MemberID, j2.Generation, nil)).(*kmsg.SyncGroupResponse); s.ErrorCode != 0 || string(s.MemberAssignment) != "a" {
		t.Fatalf("new incarnation's sync: %s, %q", codeName(s.ErrorCode), s.MemberAssignment)
	}

	// A restart whose subscription metadata changed (a consumer that owns
	// nothing yet, another topic) keeps the protocol: no rebalance either.
	changed := joinReq(grp, "", inst, 10000)
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"events", "more-events"}
	changed.Protocols[0].Metadata = meta.AppendTo(nil)
	j3 := wait[*kmsg.JoinGroupResponse](t, g.async(changed))
	expectCode(t, "static rejoin with other metadata", j3.ErrorCode, nil)
	if j3.Generation != j.Generation || !j3.SkipAssignment {
		t.Fatalf("static rejoin with other metadata: generation %d (was %d), skip assignment %v: a rebalance", j3.Generation, j.Generation, j3.SkipAssignment)
	}
	// One that makes the group choose another protocol (it now prefers
	// roundrobin, and still supports the group's range) rebalances.
	other := joinReq(grp, "", inst, 10000)
	other.Protocols = append([]kmsg.JoinGroupRequestProtocol{{Name: "roundrobin", Metadata: other.Protocols[0].Metadata}}, other.Protocols...)
	j4 := wait[*kmsg.JoinGroupResponse](t, g.async(other))
	expectCode(t, "static rejoin with another protocol", j4.ErrorCode, nil)
	if j4.Generation != j.Generation+1 || j4.Protocol == nil || *j4.Protocol != "roundrobin" {
		t.Fatalf("static rejoin with another protocol: generation %d (was %d), protocol %v: want a rebalance to roundrobin", j4.Generation, j.Generation, j4.Protocol)
	}
	if s := g.do(syncReq(grp, j4.MemberID, j4.Generation, map[string][]byte{j4.MemberID: []byte("a")})).(*kmsg.SyncGroupResponse); s.ErrorCode != 0 {
		t.Fatalf("sync after the rebalance: %s", codeName(s.ErrorCode))
	}
	j2 = j4

	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group, leave.Members = grp, []kmsg.LeaveGroupRequestMember{{InstanceID: inst}}
	lr := g.do(leave).(*kmsg.LeaveGroupResponse)
	// Answered as asked, member id "" (Kafka's memberLeaveError).
	if lr.ErrorCode != 0 || lr.Members[0].ErrorCode != 0 || lr.Members[0].MemberID != "" ||
		lr.Members[0].InstanceID == nil || *lr.Members[0].InstanceID != *inst {
		t.Fatalf("leave by instance id: %+v", lr)
	}
	if d := describe(g, grp); d.State != "Empty" {
		t.Fatalf("after the static member left: %q", d.State)
	}
}

// TestDeletedTopicLosesItsOffsets: deleting a topic deletes every group's
// committed offsets of it, as Kafka does, so that a group consuming a new
// topic of the same name starts from its reset policy rather than from an
// offset of the old one.
func TestDeletedTopicLosesItsOffsets(t *testing.T) {
	const grp = "deleted-topic"
	g := newGroupConn(t, grp)
	adm := g.nd.admin(t)
	createTopic(t, adm, "doomed", 1, nil)
	createTopic(t, adm, "kept", 1, nil)
	expectCode(t, "commit doomed", commit(g, grp, "", -1, "doomed", 0, 500, ""), nil)
	expectCode(t, "commit kept", commit(g, grp, "", -1, "kept", 0, 700, ""), nil)
	if _, err := adm.DeleteTopics(testCtx(t, 10*time.Second), "doomed"); err != nil {
		t.Fatal(err)
	}
	createTopic(t, adm, "doomed", 1, nil)
	waitFor(t, 10*time.Second, "the deleted topic's offset to go", func() bool {
		return fetchOffset(g, grp, "doomed", 0) == -1
	})
	if got := fetchOffset(g, grp, "kept", 0); got != 700 {
		t.Fatalf("the other topic's offset: %d, want 700", got)
	}
}

// TestOffsetDeleteUnreadableSubscription: a consumer group member whose
// subscription the broker cannot read may be consuming any topic, so
// OffsetDelete refuses every topic with GROUP_SUBSCRIBED_TO_TOPIC, as
// Kafka does, rather than delete offsets the member is using.
func TestOffsetDeleteUnreadableSubscription(t *testing.T) {
	const grp = "unreadable"
	g := newGroupConn(t, grp)
	createTopic(t, g.nd.admin(t), "events", 1, nil)
	req := joinReq(grp, "", kmsg.StringPtr("unreadable-1"), 10000)
	req.Protocols[0].Metadata = []byte{0xff, 0xff, 0x01} // not consumer metadata
	j := wait[*kmsg.JoinGroupResponse](t, g.async(req))
	expectCode(t, "join", j.ErrorCode, nil)
	expectCode(t, "sync", g.do(syncReq(grp, j.MemberID, j.Generation, map[string][]byte{j.MemberID: nil})).(*kmsg.SyncGroupResponse).ErrorCode, nil)
	expectCode(t, "commit", commit(g, grp, j.MemberID, j.Generation, "events", 0, 42, ""), nil)
	od := kmsg.NewPtrOffsetDeleteRequest()
	od.Group = grp
	od.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "events", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
	expectCode(t, "delete offsets while the subscription is unreadable", g.do(od).(*kmsg.OffsetDeleteResponse).Topics[0].Partitions[0].ErrorCode, kerr.GroupSubscribedToTopic)
	if got := fetchOffset(g, grp, "events", 0); got != 42 {
		t.Fatalf("offset after a refused OffsetDelete: %d, want 42", got)
	}
}

// TestLongGroupIDRefused: an OffsetCommit v8 (compact strings) whose group
// id is 40000 bytes long, more than Kafka reads (its generated readers
// refuse a string over 32767 bytes and close the connection) and more
// than the offsets-topic record's int16 string holds. It is refused the
// same way, and writes nothing: a group of the same offsets partition
// commits and fetches at once, and so after a kill -9 and restart, which
// replays the partition's log. (Written, the record used to stop every
// replica of the partition at apply, for good.)
func TestLongGroupIDRefused(t *testing.T) {
	long := strings.Repeat("g", 40_000)
	const partitions = 16 // kafka.offsets_topic_partitions, the default
	victim := ""
	for i := 0; i < 10_000 && victim == ""; i++ {
		if name := fmt.Sprintf("victim-%d", i); group.PartitionFor(name, partitions) == group.PartitionFor(long, partitions) {
			victim = name
		}
	}
	g := newGroupConn(t, victim)
	createTopic(t, g.nd.admin(t), "events", 1, nil)
	expectCode(t, "victim commit before", commit(g, victim, "", -1, "events", 0, 11, ""), nil)

	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version, req.Group, req.Generation = 8, long, -1
	req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "events", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 7, LeaderEpoch: -1}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	resp, err := g.cl.Broker(int(g.nd.id)).Request(ctx, req)
	cancel()
	if err == nil {
		t.Fatalf("commit of a 40000-byte group id answered %s, want the connection closed", codeName(resp.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode))
	}

	expectCode(t, "victim commit after", commit(g, victim, "", -1, "events", 0, 12, ""), nil)
	if got := fetchOffset(g, victim, "events", 0); got != 12 {
		t.Fatalf("victim's offset %d, want 12", got)
	}
	g.nd.kill()
	g.nd.start(t)
	g.nd.waitKafka(t)
	g.cl = g.nd.client(t)
	waitFor(t, 20*time.Second, "the victim's offset after a restart", func() bool {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Groups = []kmsg.OffsetFetchRequestGroup{{Group: victim, Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "events", Partitions: []int32{0}}}}}
		rg := g.do(req).(*kmsg.OffsetFetchResponse).Groups[0]
		return rg.ErrorCode == 0 && rg.Topics[0].Partitions[0].Offset == 12
	})
	expectCode(t, "victim commit after the restart", commit(g, victim, "", -1, "events", 0, 13, ""), nil)
}
