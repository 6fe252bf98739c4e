package group

import (
	"errors"
	"maps"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxOffsetMetadata is Kafka's offset.metadata.max.bytes.
const maxOffsetMetadata = 4096

// serve dispatches a Call on the ready coordinator.
func (m *Machine) serve(ctx actor.Context, call *Call) {
	c := &caller{ref: call.Ref, to: call.ReplyTo}
	if g := m.groups[call.Group]; g != nil && g.deleting {
		switch call.Req.(type) {
		case *FetchOffsets, *Describe, *Delete:
		default:
			// Kafka's Dead group: the client looks for the coordinator
			// again and finds the group gone (or new).
			c.answer(ctx, ErrorResponse(call.Group, call.Req, kerr.CoordinatorNotAvailable.Code))
			return
		}
	}
	switch req := call.Req.(type) {
	case *kmsg.JoinGroupRequest:
		m.join(ctx, c, call, req)
	case *kmsg.SyncGroupRequest:
		m.sync(ctx, c, call, req)
	case *kmsg.HeartbeatRequest:
		m.heartbeat(ctx, c, call, req)
	case *kmsg.LeaveGroupRequest:
		m.leave(ctx, c, call, req)
	case *kmsg.OffsetCommitRequest:
		m.commit(ctx, c, call, req)
	case *kmsg.OffsetDeleteRequest:
		m.deleteOffsets(ctx, c, call, req)
	case *FetchOffsets:
		c.answer(ctx, m.fetchOffsets(call.Group, req))
	case *Describe:
		c.answer(ctx, m.describe(call.Group))
	case *Delete:
		m.deleteGroup(ctx, c, call.Group)
	default:
		m.o.Log.Error().Type("request", call.Req).Msg("group call of an unknown kind")
		c.answer(ctx, ErrorResponse(call.Group, call.Req, kerr.UnknownServerError.Code))
	}
}

// ErrorResponse is the answer to a Call for group with request req when it
// fails as a whole with code.
func ErrorResponse(group string, req any, code int16) any {
	switch req := req.(type) {
	case *kmsg.JoinGroupRequest:
		resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode, resp.Generation = code, -1
		return resp
	case *kmsg.SyncGroupRequest:
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = code
		return resp
	case *kmsg.HeartbeatRequest:
		resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = code
		return resp
	case *kmsg.LeaveGroupRequest:
		resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
		resp.ErrorCode = code
		return resp
	case *kmsg.OffsetCommitRequest:
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		commitCodes(req, resp, func(string, int32) int16 { return code })
		return resp
	case *kmsg.OffsetDeleteRequest:
		resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
		resp.ErrorCode = code
		return resp
	case *FetchOffsets:
		rg := kmsg.NewOffsetFetchResponseGroup()
		rg.Group, rg.ErrorCode = group, code
		return &rg
	case *Describe:
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group, rg.ErrorCode = group, code
		return &rg
	case *Delete:
		return &DeleteDone{ErrorCode: code}
	}
	return nil
}

// commitCodes fills resp with a code for every partition of req.
func commitCodes(req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, code func(topic string, p int32) int16) {
	resp.Topics = resp.Topics[:0]
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code(t.Topic, p.Partition)
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
}

// commitCheck is Kafka's validation of a commit against the group
// (ClassicGroup.validateOffsetCommit): a group with no members takes
// "simple" commits (generation -1) from anyone; otherwise a commit that
// names a member or a generation must come from a member in the current
// generation, an anonymous one is refused, and a valid one waits while
// the group completes a rebalance.
func (g *group) commitCheck(req *kmsg.OffsetCommitRequest) (int16, *member) {
	if req.Generation < 0 && len(g.members) == 0 {
		return 0, nil
	}
	if req.Generation < 0 && req.MemberID == "" && req.InstanceID == nil {
		return kerr.UnknownMemberID.Code, nil
	}
	if req.InstanceID != nil {
		if code := g.checkInstance(req.InstanceID, req.MemberID); code != 0 {
			return code, nil
		}
	}
	mb := g.members[req.MemberID]
	switch {
	case mb == nil:
		return kerr.UnknownMemberID.Code, nil
	case req.Generation != g.generation:
		return kerr.IllegalGeneration.Code, mb
	case g.state == stateCompletingRebalance:
		return kerr.RebalanceInProgress.Code, mb
	}
	return 0, mb
}

func (m *Machine) commit(ctx actor.Context, c *caller, call *Call, req *kmsg.OffsetCommitRequest) {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	// Only a simple commit (generation -1) creates its group.
	g := m.live(call.Group, req.Generation < 0)
	if g == nil {
		// A commit from a generation of a group that does not exist:
		// Kafka answers GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION
		// before.
		code := kerr.IllegalGeneration.Code
		if req.Version >= 9 {
			code = kerr.GroupIDNotFound.Code
		}
		commitCodes(req, resp, func(string, int32) int16 { return code })
		c.answer(ctx, resp)
		return
	}
	code, mb := g.commitCheck(req)
	if mb != nil {
		mb.deadline = m.ticks + m.msTicks(mb.sessionTimeoutMs)
	}
	if code != 0 {
		commitCodes(req, resp, func(string, int32) int16 { return code })
		c.answer(ctx, resp)
		m.forget(g)
		return
	}
	now := m.o.Now().UnixMilli()
	var w recordWriter
	codes := map[TopicPartition]int16{}
	for _, t := range req.Topics {
		n := m.o.Topics(t.Topic)
		for _, p := range t.Partitions {
			tp := TopicPartition{t.Topic, p.Partition}
			switch {
			case p.Partition < 0 || p.Partition >= n:
				codes[tp] = kerr.UnknownTopicOrPartition.Code
			case p.Metadata != nil && len(*p.Metadata) > maxOffsetMetadata:
				codes[tp] = kerr.OffsetMetadataTooLarge.Code
			default:
				v := kmsg.NewOffsetCommitValue()
				v.Offset, v.LeaderEpoch, v.CommitTimestamp = p.Offset, p.LeaderEpoch, now
				if p.Metadata != nil {
					v.Metadata = *p.Metadata
				}
				w.offset(call.Group, tp, &v)
				codes[tp] = -1 // written below
			}
		}
	}
	m.beginCommit(call.Group, codes)
	finish := func(ctx actor.Context, err error) {
		m.endCommit(call.Group, codes)
		commitCodes(req, resp, func(topic string, p int32) int16 {
			if code := codes[TopicPartition{topic, p}]; code != -1 {
				return code
			}
			if errors.Is(err, errWriteTooLarge) {
				return kerr.InvalidCommitOffsetSize.Code // as Kafka maps a record too large
			}
			return writeCode(err)
		})
		c.answer(ctx, resp)
		if g := m.groups[call.Group]; g != nil {
			m.forget(g)
		}
	}
	if len(w.b) == 0 && w.err == nil {
		finish(ctx, nil)
		return
	}
	m.propose(ctx, &w, finish)
}

// beginCommit counts the partitions a commit writes (code -1) as pending
// until endCommit.
func (m *Machine) beginCommit(group string, codes map[TopicPartition]int16) {
	pending := m.committing[group]
	if pending == nil {
		pending = map[TopicPartition]int{}
		m.committing[group] = pending
	}
	for tp, code := range codes {
		if code == -1 {
			pending[tp]++
		}
	}
}

// endCommit ends what beginCommit counted.
func (m *Machine) endCommit(group string, codes map[TopicPartition]int16) {
	pending := m.committing[group]
	for tp, code := range codes {
		if code != -1 {
			continue
		}
		if pending[tp]--; pending[tp] <= 0 {
			delete(pending, tp)
		}
	}
	if len(pending) == 0 {
		delete(m.committing, group)
	}
}

// fetchOffsets answers one group's share of an OffsetFetch.
func (m *Machine) fetchOffsets(name string, req *FetchOffsets) *kmsg.OffsetFetchResponseGroup {
	rg := kmsg.NewOffsetFetchResponseGroup()
	rg.Group = name
	var offsets map[TopicPartition]kmsg.OffsetCommitValue
	if s := m.store[name]; s != nil {
		offsets = s.offsets
	}
	add := func(topic string, p int32) {
		rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
		// Nothing committed: Kafka's INVALID_OFFSET and NO_METADATA ("",
		// not null) in every version.
		rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata = p, -1, -1, kmsg.StringPtr("")
		if v, ok := offsets[TopicPartition{topic, p}]; ok {
			rp.Offset, rp.LeaderEpoch, rp.Metadata = v.Offset, v.LeaderEpoch, kmsg.StringPtr(v.Metadata)
		}
		if n := len(rg.Topics); n == 0 || rg.Topics[n-1].Topic != topic {
			rt := kmsg.NewOffsetFetchResponseGroupTopic()
			rt.Topic = topic
			rg.Topics = append(rg.Topics, rt)
		}
		last := &rg.Topics[len(rg.Topics)-1]
		last.Partitions = append(last.Partitions, rp)
	}
	if req.Topics == nil {
		for _, tp := range slices.SortedFunc(maps.Keys(offsets), compareTP) {
			add(tp.Topic, tp.Partition)
		}
		return &rg
	}
	for _, t := range req.Topics {
		if len(t.Partitions) == 0 {
			rt := kmsg.NewOffsetFetchResponseGroupTopic()
			rt.Topic = t.Topic
			rg.Topics = append(rg.Topics, rt)
		}
		for _, p := range t.Partitions {
			add(t.Topic, p)
		}
	}
	return &rg
}

// subscribed returns the topics the members of a consumer group subscribe
// to, and whether the broker can tell: not before the group has chosen a
// protocol, nor when a member's subscription cannot be read. Kafka then
// counts every topic as subscribed (isSubscribedToTopic), so that no
// offset a member may be using is deleted.
func (g *group) subscribed() (map[string]bool, bool) {
	if g.protocol == "" {
		return nil, false
	}
	topics := map[string]bool{}
	for _, mb := range g.members {
		var meta kmsg.ConsumerMemberMetadata
		if err := meta.ReadFrom(mb.metadata(g.protocol)); err != nil {
			return nil, false
		}
		for _, t := range meta.Topics {
			topics[t] = true
		}
	}
	return topics, true
}

func (m *Machine) deleteOffsets(ctx actor.Context, c *caller, call *Call, req *kmsg.OffsetDeleteRequest) {
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	g := m.live(call.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		c.answer(ctx, resp)
		return
	}
	// Only a consumer group's subscriptions can be read.
	if g.state != stateEmpty && g.protocolType != "consumer" {
		resp.ErrorCode = kerr.NonEmptyGroup.Code
		c.answer(ctx, resp)
		return
	}
	subscribed, known := g.subscribed()
	var w recordWriter
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			tp := TopicPartition{t.Topic, p.Partition}
			switch {
			case g.state != stateEmpty && (!known || subscribed[t.Topic]):
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			case m.o.Topics(t.Topic) <= p.Partition || p.Partition < 0:
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				if s := m.store[call.Group]; s != nil {
					if _, ok := s.offsets[tp]; ok {
						w.offset(call.Group, tp, nil)
					}
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if len(w.b) == 0 {
		c.answer(ctx, resp)
		return
	}
	m.proposeAll(ctx, &w, func(ctx actor.Context, err error) {
		if code := writeCode(err); code != 0 {
			resp.ErrorCode = code
		}
		c.answer(ctx, resp)
	})
}

// describe answers one group's share of a DescribeGroups.
func (m *Machine) describe(name string) *kmsg.DescribeGroupsResponseGroup {
	rg := kmsg.NewDescribeGroupsResponseGroup()
	rg.Group = name
	g := m.live(name, false)
	if g == nil {
		rg.State = "Dead"
		return &rg
	}
	rg.State, rg.ProtocolType = g.state.String(), g.protocolType
	if g.deleting {
		rg.State = "Dead"
	}
	stable := g.state == stateStable
	if stable {
		rg.Protocol = g.protocol
	}
	for _, id := range slices.Sorted(maps.Keys(g.members)) {
		mb := g.members[id]
		rm := kmsg.NewDescribeGroupsResponseGroupMember()
		rm.MemberID, rm.InstanceID, rm.ClientID, rm.ClientHost = mb.id, mb.instance, mb.clientID, mb.host
		if stable { // Kafka's summary shows metadata and assignments only then
			rm.ProtocolMetadata, rm.MemberAssignment = mb.metadata(g.protocol), mb.assignment
		}
		rg.Members = append(rg.Members, rm)
	}
	return &rg
}

// deleteGroup deletes an empty group: its membership and offsets.
func (m *Machine) deleteGroup(ctx actor.Context, c *caller, name string) {
	g := m.live(name, false)
	switch {
	case g == nil:
		c.answer(ctx, &DeleteDone{ErrorCode: kerr.GroupIDNotFound.Code})
		return
	case g.state != stateEmpty || len(g.members) > 0:
		c.answer(ctx, &DeleteDone{ErrorCode: kerr.NonEmptyGroup.Code})
		return
	}
	var w recordWriter
	if s := m.store[name]; s != nil {
		if s.meta != nil {
			w.group(name, nil)
		}
		for _, tp := range slices.SortedFunc(maps.Keys(s.offsets), compareTP) {
			w.offset(name, tp, nil)
		}
	}
	if len(w.b) == 0 {
		delete(m.groups, name)
		c.answer(ctx, &DeleteDone{})
		return
	}
	g.deleting = true
	m.proposeAll(ctx, &w, func(ctx actor.Context, err error) {
		g.deleting = false
		if err == nil && m.groups[name] == g {
			delete(m.groups, name)
		}
		c.answer(ctx, &DeleteDone{ErrorCode: writeCode(err)})
	})
}

// list is the groups this coordinator runs, for ListGroups.
func (m *Machine) list() []kmsg.ListGroupsResponseGroup {
	out := make([]kmsg.ListGroupsResponseGroup, 0, len(m.groups))
	for _, name := range slices.Sorted(maps.Keys(m.groups)) {
		g := m.groups[name]
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = name, g.protocolType, g.state.String(), "classic"
		out = append(out, lg)
	}
	return out
}

// GroupInfo is a group as the debug endpoint shows it.
type GroupInfo struct {
	Group        string          `json:"group"`
	Partition    int32           `json:"offsets_partition"`
	State        string          `json:"state"`
	ProtocolType string          `json:"protocol_type"`
	Protocol     string          `json:"protocol,omitempty"`
	Generation   int32           `json:"generation"`
	Leader       string          `json:"leader,omitempty"`
	Members      []MemberInfo    `json:"members"`
	Offsets      []CommittedInfo `json:"offsets"`
}

// MemberInfo is a group member as the debug endpoint shows it.
type MemberInfo struct {
	ID         string  `json:"id"`
	InstanceID *string `json:"instance_id,omitempty"`
	ClientID   string  `json:"client_id"`
	Host       string  `json:"host"`
	// Assigned is the member's partitions, by topic, when the group uses
	// Kafka's consumer protocol.
	Assigned map[string][]int32 `json:"assigned,omitempty"`
}

// CommittedInfo is one committed offset.
type CommittedInfo struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// view is the groups this coordinator runs, for ViewGroups. It is built
// only when asked for: with thousands of groups and their offsets it
// takes a while, on the partition's actor.
func (m *Machine) view() []GroupInfo {
	out := make([]GroupInfo, 0, len(m.groups))
	for _, name := range slices.Sorted(maps.Keys(m.groups)) {
		g := m.groups[name]
		gi := GroupInfo{Group: name, Partition: m.o.Partition, State: g.state.String(), ProtocolType: g.protocolType,
			Protocol: g.protocol, Generation: g.generation, Leader: g.leader}
		for _, id := range slices.Sorted(maps.Keys(g.members)) {
			mb := g.members[id]
			mi := MemberInfo{ID: id, InstanceID: mb.instance, ClientID: mb.clientID, Host: mb.host}
			var a kmsg.ConsumerMemberAssignment
			if g.protocolType == "consumer" && len(mb.assignment) > 0 && a.ReadFrom(mb.assignment) == nil {
				mi.Assigned = map[string][]int32{}
				for _, t := range a.Topics {
					mi.Assigned[t.Topic] = append(mi.Assigned[t.Topic], t.Partitions...)
				}
			}
			gi.Members = append(gi.Members, mi)
		}
		if s := m.store[name]; s != nil {
			for _, tp := range slices.SortedFunc(maps.Keys(s.offsets), compareTP) {
				gi.Offsets = append(gi.Offsets, CommittedInfo{Topic: tp.Topic, Partition: tp.Partition, Offset: s.offsets[tp].Offset})
			}
		}
		out = append(out, gi)
	}
	return out
}

// expireEveryTicks paces the offsets retention check (1 min at 50 ms).
const expireEveryTicks = 1200

// expireOffsets writes tombstones for what offsets.retention.minutes
// lets go, as Kafka does since KIP-211 and KIP-496: every offset of a
// group that has been empty for the retention time (and then the group
// itself); the offsets of a group without membership (standalone
// consumers committing with generation -1) that were committed longer
// ago; and those of a stable consumer group's topics that none of its
// members subscribes to any more, committed longer ago.
func (m *Machine) expireOffsets(ctx actor.Context) {
	if m.o.Settings.OffsetsRetention <= 0 {
		return
	}
	w := m.expired(m.o.Now().UnixMilli() - m.o.Settings.OffsetsRetention.Milliseconds())
	if len(w.b) == 0 {
		return
	}
	m.proposeAll(ctx, w, func(ctx actor.Context, err error) {
		if err != nil {
			m.o.Log.Warn().Err(err).Msg("expire committed offsets")
		}
	})
}

// deleteTopicOffsets writes tombstones for every group's committed offsets
// of the topics named, members or not (Kafka's
// handleDeletedPartitions). Only the deletions the manager saw happen are
// acted on: a topic merely missing from this broker's controller view may
// be one the view has not caught up with, and its offsets are live.
func (m *Machine) deleteTopicOffsets(ctx actor.Context, names []string) {
	var w recordWriter
	for _, name := range slices.Sorted(maps.Keys(m.store)) {
		for _, tp := range slices.SortedFunc(maps.Keys(m.store[name].offsets), compareTP) {
			if slices.Contains(names, tp.Topic) {
				w.offset(name, tp, nil)
			}
		}
	}
	if len(w.b) == 0 {
		return
	}
	m.proposeAll(ctx, &w, func(ctx actor.Context, err error) {
		if err != nil {
			m.o.Log.Warn().Err(err).Msg("delete the committed offsets of deleted topics")
		}
	})
}

// expiredUnsubscribed writes the tombstones of a group with members: a
// stable consumer group's offsets of topics none of its members
// subscribes to, committed before cutoff (Kafka's removeExpiredOffsets,
// since KIP-496; a commit in flight keeps its partition). Nothing of a
// group whose subscriptions are unknown, or that is rebalancing.
func (m *Machine) expiredUnsubscribed(w *recordWriter, name string, s *stored, g *group, cutoff int64) {
	if g.state != stateStable || g.protocolType != "consumer" {
		return
	}
	subscribed, known := g.subscribed()
	if !known {
		return
	}
	pending := m.committing[name]
	for _, tp := range slices.SortedFunc(maps.Keys(s.offsets), compareTP) {
		if !subscribed[tp.Topic] && pending[tp] == 0 && s.offsets[tp].CommitTimestamp < cutoff {
			w.offset(name, tp, nil)
		}
	}
}

// expired returns the tombstones of everything older than cutoff (unix
// ms) that retention lets go.
func (m *Machine) expired(cutoff int64) *recordWriter {
	var w recordWriter
	for _, name := range slices.Sorted(maps.Keys(m.store)) {
		s := m.store[name]
		g := m.groups[name]
		if g != nil && (g.state != stateEmpty || len(g.members) > 0) {
			m.expiredUnsubscribed(&w, name, s, g, cutoff)
			continue
		}
		// A group with commits in flight waits for the next round (Kafka
		// skips their partitions), or a tombstone queued behind a commit
		// would delete what it writes.
		if len(m.committing[name]) > 0 {
			continue
		}
		// Since when the group has been empty: the live group's own time
		// if it became Empty here, as Kafka keeps currentStateTimestamp in
		// memory; the store's may be the last SyncGroup's, days before.
		since, hasState := int64(-1), s.meta != nil
		if s.meta != nil {
			since = s.meta.CurrentStateTimestamp
		}
		if g != nil && g.emptySince > 0 {
			since, hasState = g.emptySince, true
		}
		tps := slices.SortedFunc(maps.Keys(s.offsets), compareTP)
		switch {
		case hasState && since >= 0 && since < cutoff:
			for _, tp := range tps {
				w.offset(name, tp, nil)
			}
			w.group(name, nil)
		case !hasState:
			for _, tp := range tps {
				if s.offsets[tp].CommitTimestamp < cutoff {
					w.offset(name, tp, nil)
				}
			}
		}
	}
	return &w
}
