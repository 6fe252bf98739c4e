package group

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestStaticMembersKeptWhenNoneRejoins: when a rebalance's deadline
// passes with nobody rejoined and only static members left, the group
// keeps them and waits another rebalance timeout, as Kafka's onCompleteJoin
// does, until one rejoins or their sessions expire. It used to remove them
// and go Empty, so a static member slow to rejoin lost its place (and the
// group its stored membership) well within its session timeout.
func TestStaticMembersKeptWhenNoneRejoins(t *testing.T) {
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Millisecond, MaxSessionTimeout: time.Hour,
		InitialRebalanceDelay: 100 * time.Millisecond})
	a, b := "a", "b"
	static := func(member string, instance *string) *kmsg.JoinGroupRequest {
		req := joinRequest("orders", member, instance)
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 60_000, 200
		return req
	}
	refA, refB := c.send("orders", static("", &a)), c.send("orders", static("", &b))
	joinA, joinB := c.answer(refA).(*kmsg.JoinGroupResponse), c.answer(refB).(*kmsg.JoinGroupResponse)
	if err := kerr.ErrorForCode(joinA.ErrorCode); err != nil {
		t.Fatalf("join a: %v", err)
	}
	if err := kerr.ErrorForCode(joinB.ErrorCode); err != nil {
		t.Fatalf("join b: %v", err)
	}
	leader, follower := joinA, joinB
	leaderInst, followerInst := &a, &b
	if joinB.LeaderID == joinB.MemberID {
		leader, follower, leaderInst, followerInst = joinB, joinA, &b, &a
	}
	refL := c.send("orders", syncRequest("orders", leader.MemberID, leader.Generation, leaderInst,
		map[string][]byte{leader.MemberID: nil, follower.MemberID: nil}))
	refF := c.send("orders", syncRequest("orders", follower.MemberID, follower.Generation, followerInst, nil))
	for _, ref := range []uint64{refL, refF} {
		if err := kerr.ErrorForCode(c.answer(ref).(*kmsg.SyncGroupResponse).ErrorCode); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}

	// The follower leaves; the leader does not rejoin within its 200 ms.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version, leave.Group = 3, "orders"
	leave.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: followerInst}}
	if code := c.call("orders", leave).(*kmsg.LeaveGroupResponse).Members[0].ErrorCode; code != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(code))
	}
	c.waitTicks(400)
	d := c.call("orders", &Describe{}).(*kmsg.DescribeGroupsResponseGroup)
	if d.State != "PreparingRebalance" || len(d.Members) != 1 || d.Members[0].MemberID != leader.MemberID {
		t.Fatalf("after the rebalance timeout with no member rejoined: %s with %+v, want PreparingRebalance with %s",
			d.State, d.Members, leader.MemberID)
	}
	// It rejoins late, and the rebalance completes with it.
	rejoin := c.call("orders", static(leader.MemberID, leaderInst)).(*kmsg.JoinGroupResponse)
	if err := kerr.ErrorForCode(rejoin.ErrorCode); err != nil {
		t.Fatalf("late rejoin: %v", err)
	}
	if rejoin.Generation != leader.Generation+1 || rejoin.LeaderID != leader.MemberID {
		t.Fatalf("late rejoin: generation %d leader %s, want %d %s", rejoin.Generation, rejoin.LeaderID, leader.Generation+1, leader.MemberID)
	}
}

// TestLeaveByInstanceEchoesRequest: an admin removing a static member by
// its instance id alone (LeaveGroup v3+, member id "", as the Java Admin's
// removeMembersFromConsumerGroup and kafka-consumer-groups send it) gets
// each member answered as it was asked for: Kafka's GroupCoordinator
// handleLeaveGroup answers memberLeaveError(leavingMember, ...), the
// request's member id and instance id. The Java client matches answers to
// its request by both, and failed a removal that had worked when the
// answer carried the member's real id.
func TestLeaveByInstanceEchoesRequest(t *testing.T) {
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Millisecond, MaxSessionTimeout: time.Hour,
		InitialRebalanceDelay: 10 * time.Millisecond})
	inst, unknown := "a", "nobody"
	req := joinRequest("orders", "", &inst)
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 60_000, 1000
	join := c.call("orders", req).(*kmsg.JoinGroupResponse)
	if err := kerr.ErrorForCode(join.ErrorCode); err != nil || join.MemberID == "" {
		t.Fatalf("join: %v, member id %q", err, join.MemberID)
	}

	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version, leave.Group = 5, "orders"
	leave.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: &inst}, {InstanceID: &unknown}}
	resp := c.call("orders", leave).(*kmsg.LeaveGroupResponse)
	if len(resp.Members) != 2 {
		t.Fatalf("leave: %d members answered, want 2", len(resp.Members))
	}
	for i, want := range []struct {
		inst string
		err  error
	}{{inst, nil}, {unknown, kerr.UnknownMemberID}} {
		m := resp.Members[i]
		if m.MemberID != "" || m.InstanceID == nil || *m.InstanceID != want.inst || kerr.ErrorForCode(m.ErrorCode) != want.err {
			t.Errorf("leave answer %d: member %q instance %v error %v; want member \"\" instance %s error %v",
				i, m.MemberID, derefInstance(m.InstanceID), kerr.ErrorForCode(m.ErrorCode), want.inst, want.err)
		}
	}
	if d := c.call("orders", &Describe{}).(*kmsg.DescribeGroupsResponseGroup); len(d.Members) != 0 {
		t.Fatalf("after removing %s: members %+v, want none", inst, d.Members)
	}
}

func derefInstance(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestLongGroupIDCommit: OffsetCommit v8+ carries the group id as a
// compact string, which may be longer than the offsets-topic key's int16
// string holds. Written, the record used to stop every replica of the
// partition at apply; it is refused before anything is proposed
// (INVALID_REQUEST), and the partition serves its other groups.
func TestLongGroupIDCommit(t *testing.T) {
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Millisecond, MaxSessionTimeout: time.Hour})
	commit := func(group string) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version, req.Group, req.Generation = 8, group, -1
		req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 7}}}}
		return c.call(group, req).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	}
	if code := commit(strings.Repeat("g", 40_000)); code != kerr.InvalidRequest.Code {
		t.Fatalf("commit with a 40000-byte group id: %v, want %v", kerr.ErrorForCode(code), kerr.InvalidRequest)
	}
	if code := commit("ordinary"); code != 0 {
		t.Fatalf("commit of another group after the long one: %v", kerr.ErrorForCode(code))
	}
	got := c.call("ordinary", &FetchOffsets{}).(*kmsg.OffsetFetchResponseGroup)
	if len(got.Topics) != 1 || got.Topics[0].Partitions[0].Offset != 7 {
		t.Fatalf("fetch of the ordinary group: %+v", got)
	}
}

// TestLongClientIDJoins: a member id is the client id (at most 32767
// bytes, the request header's int16 string) or the group instance id and
// a suffix; it is cut to fit the records, at a character boundary, and
// the member joins, syncs and is written like any other.
func TestLongClientIDJoins(t *testing.T) {
	long := strings.Repeat("é", maxRecordString/2) // 32766 bytes
	for _, instance := range []*string{nil, &long} {
		id := newMemberID(long, instance)
		if len(id) > maxRecordString || !utf8.ValidString(id) || newMemberID(long, instance) == id {
			t.Fatalf("member id of %d bytes, valid UTF-8 %v", len(id), utf8.ValidString(id))
		}
	}
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Millisecond, MaxSessionTimeout: time.Hour})
	c.ref++
	c.sys.Root.Send(c.pid, &Call{Ref: c.ref, Group: "g", Req: joinRequest("g", "", &long), ClientID: long, ClientHost: "/127.0.0.1", ReplyTo: c.client})
	j := c.answer(c.ref).(*kmsg.JoinGroupResponse)
	if j.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(j.ErrorCode))
	}
	if code := c.call("g", syncRequest("g", j.MemberID, j.Generation, &long, map[string][]byte{j.MemberID: nil})).(*kmsg.SyncGroupResponse).ErrorCode; code != 0 {
		t.Fatalf("sync: %v", kerr.ErrorForCode(code)) // answered once the membership is applied
	}
}

// TestStaticMemberNotRejoinedMustSync: a static member that did not rejoin
// a rebalance stays in the new generation (KIP-345) but, as every member
// of it, must sync within the rebalance timeout: Kafka's onCompleteJoin
// adds every member to the pending syncs, and the pending-sync timeout
// removes the ones that did not sync and rebalances. It used to be left
// out, and kept the partitions the leader gave it for its whole session
// timeout (here ten minutes).
func TestStaticMemberNotRejoinedMustSync(t *testing.T) {
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Millisecond, MaxSessionTimeout: time.Hour, InitialRebalanceDelay: 50 * time.Millisecond})
	a, b := "a", "b"
	static := func(member string, instance *string) *kmsg.JoinGroupRequest {
		req := joinRequest("st", member, instance)
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 600_000, 200
		return req
	}
	ra, rb := c.send("st", static("", &a)), c.send("st", static("", &b))
	ja, jb := c.answer(ra).(*kmsg.JoinGroupResponse), c.answer(rb).(*kmsg.JoinGroupResponse)
	if ja.ErrorCode != 0 || jb.ErrorCode != 0 {
		t.Fatalf("joins: %v %v", kerr.ErrorForCode(ja.ErrorCode), kerr.ErrorForCode(jb.ErrorCode))
	}
	leader, lInst, other, oInst := ja, &a, jb, &b
	if jb.LeaderID == jb.MemberID {
		leader, lInst, other, oInst = jb, &b, ja, &a
	}
	rl := c.send("st", syncRequest("st", leader.MemberID, leader.Generation, lInst, map[string][]byte{leader.MemberID: nil, other.MemberID: nil}))
	ro := c.send("st", syncRequest("st", other.MemberID, other.Generation, oInst, nil))
	for _, r := range []uint64{rl, ro} {
		if code := c.answer(r).(*kmsg.SyncGroupResponse).ErrorCode; code != 0 {
			t.Fatalf("sync: %v", kerr.ErrorForCode(code))
		}
	}
	// The other member's process is down. The leader rejoins (a
	// rebalance); after the 200 ms rebalance timeout the join completes
	// with the leader, the other kept as a static member.
	j := c.call("st", static(leader.MemberID, lInst)).(*kmsg.JoinGroupResponse)
	if j.ErrorCode != 0 || j.Generation != leader.Generation+1 || len(j.Members) != 2 {
		t.Fatalf("leader rejoin: %v generation %d members %d", kerr.ErrorForCode(j.ErrorCode), j.Generation, len(j.Members))
	}
	if code := c.call("st", syncRequest("st", j.MemberID, j.Generation, lInst, map[string][]byte{j.MemberID: nil, other.MemberID: nil})).(*kmsg.SyncGroupResponse).ErrorCode; code != 0 {
		t.Fatalf("leader sync: %v", kerr.ErrorForCode(code))
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = "st", j.MemberID, j.Generation, lInst
	c.waitFor("the member that never synced removed, and a rebalance", func() bool {
		return c.call("st", hb).(*kmsg.HeartbeatResponse).ErrorCode == kerr.RebalanceInProgress.Code
	})
	d := c.call("st", &Describe{}).(*kmsg.DescribeGroupsResponseGroup)
	if len(d.Members) != 1 || d.Members[0].MemberID != j.MemberID {
		t.Fatalf("members after the pending-sync timeout: %+v, want only %s", d.Members, j.MemberID)
	}
}

// stableGroup joins two dynamic members (v3: no KIP-394 round trip) with
// the session timeout given and a long rebalance timeout, syncs them, and
// returns their ids and generation.
func stableGroup(t *testing.T, c *testCoordinator, group string, sessionMs int32) (string, string, int32) {
	t.Helper()
	req := func() *kmsg.JoinGroupRequest {
		r := joinRequest(group, "", nil)
		r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = sessionMs, 60_000
		return r
	}
	ra, rb := c.send(group, req()), c.send(group, req())
	ja, jb := c.answer(ra).(*kmsg.JoinGroupResponse), c.answer(rb).(*kmsg.JoinGroupResponse)
	if ja.ErrorCode != 0 || jb.ErrorCode != 0 || ja.Generation != jb.Generation {
		t.Fatalf("joins: %v %v, generations %d %d", kerr.ErrorForCode(ja.ErrorCode), kerr.ErrorForCode(jb.ErrorCode), ja.Generation, jb.Generation)
	}
	leader, follower := ja, jb
	if jb.LeaderID == jb.MemberID {
		leader, follower = jb, ja
	}
	rl := c.send(group, syncRequest(group, leader.MemberID, leader.Generation, nil, map[string][]byte{leader.MemberID: nil, follower.MemberID: nil}))
	rf := c.send(group, syncRequest(group, follower.MemberID, follower.Generation, nil, nil))
	for _, r := range []uint64{rl, rf} {
		if code := c.answer(r).(*kmsg.SyncGroupResponse).ErrorCode; code != 0 {
			t.Fatalf("sync: %v", kerr.ErrorForCode(code))
		}
	}
	return ja.MemberID, jb.MemberID, ja.Generation
}

// TestExpiryDuringRebalanceCompletesJoinOnce: a rebalance waits for a
// member that crashed; its session expires before the rebalance timeout,
// and the join completes with the members that rejoined (Kafka's
// removeMemberAndUpdateGroup: checkAndComplete in PreparingRebalance).
// That generation is the one they sync: the same pass used to start
// another rebalance at once, which failed their syncs.
func TestExpiryDuringRebalanceCompletesJoinOnce(t *testing.T) {
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Millisecond, MaxSessionTimeout: time.Hour, InitialRebalanceDelay: 50 * time.Millisecond})
	_, b, gen := stableGroup(t, c, "crash", 300)
	// A new member joins: a rebalance. b rejoins at once; a never does.
	nj := joinRequest("crash", "", nil)
	nj.SessionTimeoutMillis, nj.RebalanceTimeoutMillis = 300, 60_000
	rc := c.send("crash", nj)
	bj := joinRequest("crash", b, nil)
	bj.SessionTimeoutMillis, bj.RebalanceTimeoutMillis = 300, 60_000
	rb := c.send("crash", bj)
	jc, jb := c.answer(rc).(*kmsg.JoinGroupResponse), c.answer(rb).(*kmsg.JoinGroupResponse)
	if jc.ErrorCode != 0 || jb.ErrorCode != 0 || jb.Generation != gen+1 {
		t.Fatalf("joins after a's expiry: %v %v, generation %d, want %d", kerr.ErrorForCode(jc.ErrorCode), kerr.ErrorForCode(jb.ErrorCode), jb.Generation, gen+1)
	}
	leader, follower := jb, jc
	if jc.LeaderID == jc.MemberID {
		leader, follower = jc, jb
	}
	rl := c.send("crash", syncRequest("crash", leader.MemberID, leader.Generation, nil, map[string][]byte{leader.MemberID: nil, follower.MemberID: nil}))
	rf := c.send("crash", syncRequest("crash", follower.MemberID, follower.Generation, nil, nil))
	for _, r := range []uint64{rl, rf} {
		if code := c.answer(r).(*kmsg.SyncGroupResponse).ErrorCode; code != 0 {
			d := c.call("crash", &Describe{}).(*kmsg.DescribeGroupsResponseGroup)
			t.Fatalf("sync of generation %d: %v (group now %s with %d members)", leader.Generation, kerr.ErrorForCode(code), d.State, len(d.Members))
		}
	}
}

// TestExpiryDuringRebalanceEmptiesGroup: the same, when the member whose
// session expires was the last one: the rebalance completes once, with
// nobody, and the group is Empty. It used to start another rebalance of
// the empty group (an initial delay, then Empty again, written twice),
// one generation more.
func TestExpiryDuringRebalanceEmptiesGroup(t *testing.T) {
	c := startCoordinator(t, Settings{MinSessionTimeout: time.Millisecond, MaxSessionTimeout: time.Hour, InitialRebalanceDelay: 50 * time.Millisecond})
	_, b, gen := stableGroup(t, c, "gone", 300)
	// b leaves cleanly: a rebalance; a has crashed and never rejoins.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group, leave.MemberID = "gone", b
	if code := c.call("gone", leave).(*kmsg.LeaveGroupResponse).ErrorCode; code != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(code))
	}
	c.waitFor("the group Empty", func() bool {
		return c.call("gone", &Describe{}).(*kmsg.DescribeGroupsResponseGroup).State == "Empty"
	})
	c.waitTicks(200) // four initial delays: a second rebalance would be over
	// The next member starts the generation after the empty one.
	j := c.call("gone", joinRequest("gone", "", nil)).(*kmsg.JoinGroupResponse)
	if j.ErrorCode != 0 || j.Generation != gen+2 {
		t.Fatalf("join of the empty group: %v generation %d, want %d (one generation for the group emptied)", kerr.ErrorForCode(j.ErrorCode), j.Generation, gen+2)
	}
}
