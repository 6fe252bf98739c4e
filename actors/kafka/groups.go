package kafka

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/group"
)

// Group requests go to the coordinator of their group: the leader of the
// group's offsets-topic partition (actors/group). A connection sends each
// group's share of a request to the local replica of that partition, which
// answers NOT_COORDINATOR unless it leads; FindCoordinator tells clients
// which broker that is.

// offsetsPartition returns the local coordinator replica of group, or the
// error code to answer with.
func (s *Service) offsetsPartition(name string) (*group.Coordinator, int16) {
	p, ok := s.groupPartition(s.Machine.View(), name)
	if !ok {
		return nil, kerr.CoordinatorNotAvailable.Code
	}
	co := s.Coordinators.Get(p.Index)
	if co == nil {
		return nil, kerr.NotCoordinator.Code
	}
	return co, 0
}

// groupPartition returns the offsets-topic partition of group; false, and
// the topic asked for, when it does not exist yet.
func (s *Service) groupPartition(view *controller.State, name string) (controller.Partition, bool) {
	t := view.Topics[controller.OffsetsTopic]
	if t == nil {
		s.createOffsetsTopic()
		return controller.Partition{}, false
	}
	return t.Partitions[group.PartitionFor(name, int32(len(t.Partitions)))], true
}

// createOffsetsTopic asks the controller for the offsets topic, as Kafka
// creates it on the first FindCoordinator. Many connections may ask at
// once; the controller creates it once, and the others fail harmlessly.
// The controller chooses the replication factor when it creates the
// topic: like Kafka's offsets.topic.replication.factor it is fixed
// (min(3, the cluster's members)), not what happens to be registered yet:
// until that many brokers are, the creation fails and clients get
// COORDINATOR_NOT_AVAILABLE and retry.
func (s *Service) createOffsetsTopic() {
	now := s.Now().UnixMilli()
	last := s.offsetsCreateAsked.Load()
	if now-last < 1000 || !s.offsetsCreateAsked.CompareAndSwap(last, now) {
		return
	}
	s.Sender.Send(s.Controller, &controller.CreateTopics{Topics: []controller.TopicSpec{{
		Name: controller.OffsetsTopic, Partitions: s.OffsetsPartitions, ReplicationFactor: -1, Internal: true,
	}}})
}

// coordinatorOf returns the broker coordinating group, or an error code.
func (s *Service) coordinatorOf(name string) (Broker, int16) {
	if name == "" {
		return Broker{}, kerr.InvalidRequest.Code
	}
	view := s.Machine.View()
	p, ok := s.groupPartition(view, name)
	if !ok {
		return Broker{}, kerr.CoordinatorNotAvailable.Code
	}
	leader, _ := s.leaderOf(p)
	b, ok := brokerOf(view, leader)
	if !ok {
		return Broker{}, kerr.CoordinatorNotAvailable.Code
	}
	return b, 0
}

func (c *serviceConn) findCoordinator(ctx actor.Context, r *Request, req *kmsg.FindCoordinatorRequest) {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	keys := req.CoordinatorKeys
	if req.Version < 4 {
		keys = []string{req.CoordinatorKey}
	}
	for _, key := range keys {
		rc := kmsg.NewFindCoordinatorResponseCoordinator()
		rc.Key, rc.NodeID, rc.Port = key, -1, -1
		if req.CoordinatorType != 0 {
			rc.ErrorCode = kerr.InvalidRequest.Code
			rc.ErrorMessage = kmsg.StringPtr("transactions are not supported: only group coordinators exist")
		} else if b, code := c.s.coordinatorOf(key); code != 0 {
			rc.ErrorCode = code
		} else {
			rc.NodeID, rc.Host, rc.Port = b.NodeID, b.Host, b.Port
		}
		resp.Coordinators = append(resp.Coordinators, rc)
	}
	if req.Version < 4 {
		rc := resp.Coordinators[0]
		resp.ErrorCode, resp.ErrorMessage, resp.NodeID, resp.Host, resp.Port = rc.ErrorCode, rc.ErrorMessage, rc.NodeID, rc.Host, rc.Port
		resp.Coordinators = nil
	}
	ctx.Send(r.ReplyTo, r.Reply(resp))
}

// groupOne serves a request that names one group: its coordinator's
// answer is the response. member marks the membership requests, for which
// Kafka refuses an empty group id (it takes one for offsets).
func (c *serviceConn) groupOne(ctx actor.Context, r *Request, name string, member bool) {
	if member && name == "" {
		ctx.Send(r.ReplyTo, r.Reply(group.ErrorResponse(name, r.Msg, kerr.InvalidGroupID.Code).(kmsg.Response)))
		return
	}
	c.fanOut(ctx, r, []string{name}, func(int) any { return r.Msg }, func(_ int, resp any) {
		ctx.Send(r.ReplyTo, r.Reply(resp.(kmsg.Response)))
	}, nil)
}

// groupCall is one group's share of a request, sent to its coordinator.
type groupCall struct {
	name string
	req  any
	put  func(resp any)
	// timer answers the call NOT_COORDINATOR if the coordinator has not
	// by group.AnswerWithin: the replica actor it went to stopped or died
	// with the call in its mailbox, and nothing else ever will.
	timer *time.Timer
}

// groupDeadline is what a groupCall's timer sends the connection.
type groupDeadline struct{ ref uint64 }

// fanOut sends each group's share of r (share(i) for names[i]) to its coordinator;
// put takes each answer (or the error answer of a group without one) by
// index, and finish runs once all are in.
func (c *serviceConn) fanOut(ctx actor.Context, r *Request, names []string, share func(i int) any, put func(i int, resp any), finish func()) {
	remaining := len(names) + 1
	done := func() {
		if remaining--; remaining == 0 && finish != nil {
			finish()
		}
	}
	sys, self := ctx.ActorSystem(), ctx.Self()
	for i, name := range names {
		req := share(i)
		co, code := c.s.offsetsPartition(name)
		if code != 0 {
			put(i, group.ErrorResponse(name, req, code))
			done()
			continue
		}
		ref := c.ref()
		call := &groupCall{name: name, req: req, put: func(resp any) {
			put(i, resp)
			done()
		}}
		c.groups[ref] = call
		call.timer = time.AfterFunc(c.answerWithin(req), func() { sys.Root.Send(self, &groupDeadline{ref: ref}) })
		ctx.Send(co.PID, &group.Call{Ref: ref, Group: name, Req: req, ClientID: r.ClientID, ClientHost: r.ClientHost, ReplyTo: self})
	}
	done()
}

// answerWithin is how long a group call may wait for its coordinator. A
// SyncGroup waits within the rebalance timeout of its member's JoinGroup,
// which kgo's client also remembers for it: the longest this connection
// relayed.
func (c *serviceConn) answerWithin(req any) time.Duration {
	if j, ok := req.(*kmsg.JoinGroupRequest); ok {
		ms := j.RebalanceTimeoutMillis
		if j.Version == 0 {
			ms = j.SessionTimeoutMillis
		}
		c.rebalance = max(c.rebalance, time.Duration(ms)*time.Millisecond)
	}
	rebalance := c.rebalance
	if rebalance == 0 {
		rebalance = group.DefaultRebalanceTimeout
	}
	return group.AnswerWithin(req, rebalance)
}

func (c *serviceConn) groupAnswer(m *group.Answer) {
	if call, ok := c.groups[m.Ref]; ok {
		delete(c.groups, m.Ref)
		call.timer.Stop()
		call.put(m.Resp)
	}
}

// groupExpired answers a call its coordinator did not answer in time.
func (c *serviceConn) groupExpired(m *groupDeadline) {
	if call, ok := c.groups[m.ref]; ok {
		delete(c.groups, m.ref)
		call.put(group.ErrorResponse(call.name, call.req, kerr.NotCoordinator.Code))
	}
}

func (c *serviceConn) offsetFetch(ctx actor.Context, r *Request, req *kmsg.OffsetFetchRequest) {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		resp.Groups = make([]kmsg.OffsetFetchResponseGroup, len(req.Groups))
		names := make([]string, len(req.Groups))
		for i, g := range req.Groups {
			names[i] = g.Group
		}
		c.fanOut(ctx, r, names, func(i int) any {
			return &group.FetchOffsets{Topics: req.Groups[i].Topics}
		}, func(i int, a any) {
			resp.Groups[i] = *a.(*kmsg.OffsetFetchResponseGroup)
		}, func() { ctx.Send(r.ReplyTo, r.Reply(resp)) })
		return
	}
	share := &group.FetchOffsets{}
	if req.Topics != nil {
		share.Topics = make([]kmsg.OffsetFetchRequestGroupTopic, 0, len(req.Topics))
		for _, t := range req.Topics {
			share.Topics = append(share.Topics, kmsg.OffsetFetchRequestGroupTopic{Topic: t.Topic, Partitions: t.Partitions})
		}
	}
	c.fanOut(ctx, r, []string{req.Group}, func(int) any { return share }, func(_ int, a any) {
		rg := a.(*kmsg.OffsetFetchResponseGroup)
		for _, t := range rg.Topics {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		resp.ErrorCode = rg.ErrorCode
		if req.Version < 2 && rg.ErrorCode != 0 {
			// No group-level error before v2: Kafka puts it on every
			// partition asked for, so that the client does not take the
			// empty answer for "nothing committed".
			resp.Topics = resp.Topics[:0]
			for _, t := range req.Topics {
				rt := kmsg.NewOffsetFetchResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetFetchResponseTopicPartition()
					rp.Partition, rp.Offset, rp.Metadata, rp.ErrorCode = p, -1, kmsg.StringPtr(""), rg.ErrorCode
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
		}
	}, func() { ctx.Send(r.ReplyTo, r.Reply(resp)) })
}

func (c *serviceConn) describeGroups(ctx actor.Context, r *Request, req *kmsg.DescribeGroupsRequest) {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	resp.Groups = make([]kmsg.DescribeGroupsResponseGroup, len(req.Groups))
	c.fanOut(ctx, r, req.Groups, func(int) any { return &group.Describe{} }, func(i int, a any) {
		resp.Groups[i] = *a.(*kmsg.DescribeGroupsResponseGroup)
		resp.Groups[i].AuthorizedOperations = -2147483648 // not computed (Kafka's "omitted")
	}, func() { ctx.Send(r.ReplyTo, r.Reply(resp)) })
}

func (c *serviceConn) deleteGroups(ctx actor.Context, r *Request, req *kmsg.DeleteGroupsRequest) {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	resp.Groups = make([]kmsg.DeleteGroupsResponseGroup, len(req.Groups))
	c.fanOut(ctx, r, req.Groups, func(int) any { return &group.Delete{} }, func(i int, a any) {
		resp.Groups[i] = kmsg.DeleteGroupsResponseGroup{Group: req.Groups[i], ErrorCode: a.(*group.DeleteDone).ErrorCode}
	}, func() { ctx.Send(r.ReplyTo, r.Reply(resp)) })
}

// listCall is a ListGroups request waiting for the local coordinators.
type listCall struct {
	r         *Request
	req       *kmsg.ListGroupsRequest
	resp      *kmsg.ListGroupsResponse
	remaining int
	// timer answers the request if a coordinator has not by
	// group.AnswerWithin (its actor stopped with the List in its mailbox).
	timer *time.Timer
}

// listDeadline is what a listCall's timer sends the connection.
type listDeadline struct{ call *listCall }

// listGroups asks every local offsets partition for its groups; the ones
// that do not lead answer NOT_COORDINATOR and add nothing. Clients ask
// every broker and merge, as with Kafka.
func (c *serviceConn) listGroups(ctx actor.Context, r *Request, req *kmsg.ListGroupsRequest) {
	call := &listCall{r: r, req: req, resp: req.ResponseKind().(*kmsg.ListGroupsResponse)}
	for _, co := range c.s.Coordinators.All() {
		ref := c.ref()
		c.lists[ref] = call
		call.remaining++
		ctx.Send(co.PID, &group.List{Ref: ref, ReplyTo: ctx.Self()})
	}
	if call.remaining == 0 {
		ctx.Send(r.ReplyTo, r.Reply(call.resp))
		return
	}
	sys, self := ctx.ActorSystem(), ctx.Self()
	call.timer = time.AfterFunc(group.AnswerWithin(&group.List{}, 0), func() { sys.Root.Send(self, &listDeadline{call: call}) })
}

// listExpired answers a ListGroups that a coordinator did not answer in
// time with what the others did, and COORDINATOR_NOT_AVAILABLE: the list
// may lack that coordinator's groups.
func (c *serviceConn) listExpired(ctx actor.Context, m *listDeadline) {
	if m.call.remaining == 0 {
		return
	}
	maps.DeleteFunc(c.lists, func(_ uint64, call *listCall) bool { return call == m.call })
	m.call.remaining = 0
	m.call.resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
	c.answerList(ctx, m.call)
}

func (c *serviceConn) listed(ctx actor.Context, m *group.Listed) {
	call, ok := c.lists[m.Ref]
	if !ok {
		return
	}
	delete(c.lists, m.Ref)
	if m.ErrorCode == kerr.CoordinatorLoadInProgress.Code {
		// A partition this broker leads is still loading: the list would
		// be partial, and Kafka says so.
		call.resp.ErrorCode = m.ErrorCode
	}
	for _, g := range m.Groups {
		if len(call.req.StatesFilter) > 0 && !slices.ContainsFunc(call.req.StatesFilter, func(s string) bool { return strings.EqualFold(s, g.GroupState) }) {
			continue
		}
		if len(call.req.TypesFilter) > 0 && !slices.ContainsFunc(call.req.TypesFilter, func(s string) bool { return strings.EqualFold(s, g.GroupType) }) {
			continue
		}
		call.resp.Groups = append(call.resp.Groups, g)
	}
	if call.remaining--; call.remaining == 0 {
		call.timer.Stop()
		c.answerList(ctx, call)
	}
}

// answerList answers a ListGroups with the groups gathered, in order.
func (c *serviceConn) answerList(ctx actor.Context, call *listCall) {
	slices.SortFunc(call.resp.Groups, func(a, b kmsg.ListGroupsResponseGroup) int {
		return strings.Compare(a.Group, b.Group)
	})
	ctx.Send(call.r.ReplyTo, call.r.Reply(call.resp))
}
