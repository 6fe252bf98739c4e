package kafka

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/group"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/actors/storage"
	"github.com/flotilla/flotilla/raftactor"
)

// Service is the broker's Handler: the data path (Produce, Fetch,
// ListOffsets, OffsetForLeaderEpoch, DeleteRecords, DescribeLogDirs)
// served from the local partition replicas, the admin requests (CreateTopics, DeleteTopics,
// CreatePartitions, InitProducerId, DescribeConfigs,
// IncrementalAlterConfigs, AlterConfigs) served through the controller
// actor, and the group requests (FindCoordinator, JoinGroup, SyncGroup,
// Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups,
// DescribeGroups, DeleteGroups, OffsetDelete) served by the group
// coordinators (groups.go), and the reassignment and election requests
// (reassign.go, elect.go) served through the controller actor and timed by
// the Ticker.
type Service struct {
	NodeID     uint64
	Tick       time.Duration // one raft tick: partitions keep time in ticks
	Controller *actor.PID    // the controller actor
	// Ticker times the requests a connection waits on with a deadline of
	// its own (AlterPartitionReassignments, ElectLeaders, acks=0 Produce):
	// a connection is subscribed only while one waits.
	Ticker   *raftactor.Ticker
	Machine  *controller.StateMachine
	Replicas *partition.Replicas
	Board    *raftactor.StatusBoard
	// LogDir is the broker's data directory as an absolute path, its one
	// Kafka log dir, and Space the guard of its filesystem
	// (DescribeLogDirs; nil: its sizes are unknown, -1).
	LogDir string
	Space  *storage.Space
	// Coordinators are the offsets-topic replicas of this broker, Leaders
	// what it knows of every partition's leader (for FindCoordinator),
	// OffsetsPartitions the partition count of the offsets topic when it
	// is created (its replication factor is the controller's choice).
	Coordinators      *group.Coordinators
	Leaders           *partition.Leaders
	OffsetsPartitions int32
	// Alive reports whether this broker has heard from a broker within
	// the session timeout (netactor.Liveness); nil finds every broker
	// alive. Clients are never pointed at a dead broker.
	Alive func(id uint64) bool
	// Stopping reports whether a broker announced a clean stop
	// (netactor.Liveness.Stopping); nil finds none stopping. Clients are
	// still pointed at one for what it leads, as at a Kafka broker in
	// controlled shutdown, but no leadership is elected onto it.
	Stopping func(id uint64) bool
	// TopicDefaults returns this broker's topic config defaults as they
	// are now (a reload changes them); nil means the built-in ones.
	TopicDefaults func() controller.TopicDefaults
	// AutoCreate reports whether this broker creates topics that Metadata
	// names (auto.create.topics.enable, which a reload may change), for
	// DescribeConfigs; nil means it does not.
	AutoCreate func() bool
	// Sender sends from outside any actor (the actor system's root
	// context); Now is the clock.
	Sender actor.SenderContext
	Now    func() time.Time
	Log    zerolog.Logger

	offsetsCreateAsked atomic.Int64 // unix ms of the last request to create the offsets topic

	// recordSets is the pool Fetch reads record sets into, shared by the
	// connections; made on first use.
	recordSetsOnce sync.Once
	recordSets     *bufPool
}

// recordSetPool returns the pool Fetch reads record sets into.
func (s *Service) recordSetPool() *bufPool {
	s.recordSetsOnce.Do(func() { s.recordSets = newRecordSetPool() })
	return s.recordSets
}

// Versions implements Handler: exactly what the handlers below serve.
func (s *Service) Versions() []ApiRange {
	return []ApiRange{
		{Key: kmsg.Produce.Int16(), Min: 3, Max: 10},
		{Key: kmsg.Fetch.Int16(), Min: 4, Max: 16},
		{Key: kmsg.ListOffsets.Int16(), Min: 1, Max: 7},
		{Key: kmsg.OffsetForLeaderEpoch.Int16(), Min: 2, Max: 4},
		{Key: kmsg.CreateTopics.Int16(), Min: 2, Max: 7},
		{Key: kmsg.DeleteTopics.Int16(), Min: 1, Max: 6},
		{Key: kmsg.CreatePartitions.Int16(), Min: 0, Max: 3},
		{Key: kmsg.InitProducerID.Int16(), Min: 0, Max: 4},
		{Key: kmsg.DescribeConfigs.Int16(), Min: 1, Max: 4},
		{Key: kmsg.AlterConfigs.Int16(), Min: 0, Max: 2},
		{Key: kmsg.IncrementalAlterConfigs.Int16(), Min: 0, Max: 1},
		{Key: kmsg.FindCoordinator.Int16(), Min: 0, Max: 6},
		{Key: kmsg.JoinGroup.Int16(), Min: 0, Max: 9},
		{Key: kmsg.SyncGroup.Int16(), Min: 0, Max: 5},
		{Key: kmsg.Heartbeat.Int16(), Min: 0, Max: 4},
		{Key: kmsg.LeaveGroup.Int16(), Min: 0, Max: 5},
		{Key: kmsg.OffsetCommit.Int16(), Min: 2, Max: 9},
		{Key: kmsg.OffsetFetch.Int16(), Min: 1, Max: 9},
		{Key: kmsg.ListGroups.Int16(), Min: 0, Max: 5},
		{Key: kmsg.DescribeGroups.Int16(), Min: 0, Max: 5},
		{Key: kmsg.DeleteGroups.Int16(), Min: 0, Max: 2},
		{Key: kmsg.OffsetDelete.Int16(), Min: 0, Max: 0},
		{Key: kmsg.ElectLeaders.Int16(), Min: 0, Max: 2},
		{Key: kmsg.AlterPartitionAssignments.Int16(), Min: 0, Max: 0},
		{Key: kmsg.ListPartitionReassignments.Int16(), Min: 0, Max: 0},
		{Key: kmsg.DeleteRecords.Int16(), Min: 0, Max: 2},
		{Key: kmsg.DescribeLogDirs.Int16(), Min: 0, Max: 4},
	}
}

// NewConn implements Handler.
func (s *Service) NewConn() ConnHandler {
	return &serviceConn{
		s:        s,
		produces: map[uint64]produceSlot{},
		fetches:  map[uint64]*fetchCall{},
		admin:    map[uint64]*Request{},
		groups:   map[uint64]*groupCall{},
		lists:    map[uint64]*listCall{},
		alters:   map[uint64]*alterCall{},
		deletes:  map[uint64]deleteSlot{},
	}
}

// serviceConn is the Service's state for one connection: the requests it
// waits on other actors for, by the Ref it gave them.
type serviceConn struct {
	s        *Service
	nextRef  uint64
	produces map[uint64]produceSlot
	fetches  map[uint64]*fetchCall
	admin    map[uint64]*Request   // CreateTopics, DeleteTopics, CreatePartitions, InitProducerId, AlterConfigs (both)
	groups   map[uint64]*groupCall // group calls, by the Ref of their share
	lists    map[uint64]*listCall
	alters   map[uint64]*alterCall // AlterPartitionReassignments
	elects   []*electCall          // ElectLeaders waiting for leaders to move
	noAcks   []*produceCall        // acks=0 Produces waiting for their partitions
	deletes  map[uint64]deleteSlot // DeleteRecords partitions, by the Ref sent to each
	// deleteCalls are the DeleteRecords waiting for their partitions.
	deleteCalls []*deleteCall
	ticking     bool       // subscribed to the Ticker
	self        *actor.PID // the connection actor, to unsubscribe it
	// rebalance is the longest rebalance timeout of the JoinGroups relayed
	// on this connection: how long its SyncGroups may wait (0: none seen).
	rebalance time.Duration
}

func (c *serviceConn) ref() uint64 {
	c.nextRef++
	return c.nextRef
}

// ticks converts a client's milliseconds into raft ticks, at least one.
func (s *Service) ticks(ms int32) uint64 {
	if ms <= 0 {
		return 1
	}
	t := time.Duration(ms) * time.Millisecond
	return max(1, uint64((t+s.Tick-1)/s.Tick))
}

// Serve implements ConnHandler.
func (c *serviceConn) Serve(ctx actor.Context, r *Request) {
	switch m := r.Msg.(type) {
	case *kmsg.ProduceRequest:
		c.produce(ctx, r, m)
	case *kmsg.FetchRequest:
		c.fetch(ctx, r, m)
	case *kmsg.ListOffsetsRequest:
		ctx.Send(r.ReplyTo, r.Reply(c.s.listOffsets(m)))
	case *kmsg.OffsetForLeaderEpochRequest:
		ctx.Send(r.ReplyTo, r.Reply(c.s.offsetForLeaderEpoch(m)))
	case *kmsg.CreateTopicsRequest:
		c.createTopics(ctx, r, m)
	case *kmsg.DeleteTopicsRequest:
		c.deleteTopics(ctx, r, m)
	case *kmsg.CreatePartitionsRequest:
		c.createPartitions(ctx, r, m)
	case *kmsg.InitProducerIDRequest:
		c.initProducerID(ctx, r, m)
	case *kmsg.DescribeConfigsRequest:
		ctx.Send(r.ReplyTo, r.Reply(c.s.describeConfigs(m)))
	case *kmsg.IncrementalAlterConfigsRequest, *kmsg.AlterConfigsRequest:
		c.alterConfigs(ctx, r)
	case *kmsg.FindCoordinatorRequest:
		c.findCoordinator(ctx, r, m)
	case *kmsg.JoinGroupRequest:
		c.groupOne(ctx, r, m.Group, true)
	case *kmsg.SyncGroupRequest:
		c.groupOne(ctx, r, m.Group, true)
	case *kmsg.HeartbeatRequest:
		c.groupOne(ctx, r, m.Group, true)
	case *kmsg.LeaveGroupRequest:
		c.groupOne(ctx, r, m.Group, true)
	case *kmsg.OffsetCommitRequest:
		c.groupOne(ctx, r, m.Group, false)
	case *kmsg.OffsetDeleteRequest:
		c.groupOne(ctx, r, m.Group, false)
	case *kmsg.OffsetFetchRequest:
		c.offsetFetch(ctx, r, m)
	case *kmsg.DescribeGroupsRequest:
		c.describeGroups(ctx, r, m)
	case *kmsg.DeleteGroupsRequest:
		c.deleteGroups(ctx, r, m)
	case *kmsg.ListGroupsRequest:
		c.listGroups(ctx, r, m)
	case *kmsg.AlterPartitionAssignmentsRequest:
		c.alterReassignments(ctx, r, m)
	case *kmsg.ListPartitionReassignmentsRequest:
		ctx.Send(r.ReplyTo, r.Reply(c.s.listReassignments(m)))
	case *kmsg.ElectLeadersRequest:
		c.electLeaders(ctx, r, m)
	case *kmsg.DeleteRecordsRequest:
		c.deleteRecords(ctx, r, m)
	case *kmsg.DescribeLogDirsRequest:
		ctx.Send(r.ReplyTo, r.Reply(c.s.describeLogDirs(m)))
	default:
		// Versions() lists only what is handled above; the connection
		// refuses anything else before it gets here.
		c.s.Log.Error().Int16("key", r.Msg.Key()).Msg("request for an API the service does not serve")
		ctx.Send(r.ReplyTo, &Response{Seq: r.Seq, CloseConn: true})
	}
}

// Receive implements ConnHandler: the answers of partitions and the
// controller.
func (c *serviceConn) Receive(ctx actor.Context, msg any) {
	switch m := msg.(type) {
	case *partition.ProduceDone:
		c.produceDone(ctx, m)
	case *partition.FetchReady:
		c.fetchReady(ctx, m)
	case *fetchDeadline:
		c.fetchExpired(ctx, m)
	case *controller.CreateTopicsDone:
		c.createTopicsDone(ctx, m)
	case *controller.DeleteTopicsDone:
		c.deleteTopicsDone(ctx, m)
	case *controller.CreatePartitionsDone:
		c.createPartitionsDone(ctx, m)
	case *controller.ProducerIDDone:
		c.producerIDDone(ctx, m)
	case *controller.AlterConfigsDone:
		c.alterConfigsDone(ctx, m)
	case *group.Answer:
		c.groupAnswer(m)
	case *groupDeadline:
		c.groupExpired(m)
	case *group.Listed:
		c.listed(ctx, m)
	case *listDeadline:
		c.listExpired(ctx, m)
	case *controller.AlterReassignmentsDone:
		c.alterReassignmentsDone(ctx, m)
	case *partition.DeleteRecordsDone:
		c.deleteRecordsDone(ctx, m)
	case *raftactor.Tick:
		c.tick(ctx)
	}
}

// code returns the Kafka error code of err (0 for nil); errors that are not
// Kafka errors are UNKNOWN_SERVER_ERROR.
func code(err error) int16 {
	if err == nil {
		return 0
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	return kerr.UnknownServerError.Code
}

// message returns err's text for the response's error message field: what
// is particular to this failure, as Kafka sends it (ApiError.fromThrowable).
// A client names the error from its code and prints the message after it
// (the Java client makes it the exception's message), so the Kafka error's
// own name and generic description that lead err's text are left out, and
// a bare Kafka error has no message at all. Unlike Kafka, which sends no
// message with UNKNOWN_SERVER_ERROR (so as not to leak a server's
// internals), an unexpected error's text is sent, on purpose: Flotilla's
// errors name what failed (a partition, a file of the broker's), which
// the client's user and the operator need more than the broker needs its
// paths kept to itself.
func message(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	var ke *kerr.Error
	if errors.As(err, &ke) {
		if s == ke.Error() {
			return nil
		}
		s = strings.TrimPrefix(s, ke.Error()+": ")
	}
	return &s
}

// missingCode is the error for a partition this broker has no replica of:
// unknown if the topic or partition does not exist, else "not leader" so
// that the client refreshes its metadata and finds the leader. Until the
// controller state has caught up it cannot tell, and answers "not leader".
func (s *Service) missingCode(topic string, p int32) int16 {
	if !s.Machine.CaughtUp() {
		return kerr.NotLeaderForPartition.Code
	}
	t := s.Machine.View().Topics[topic]
	switch {
	case t == nil || p < 0 || int(p) >= len(t.Partitions):
		return kerr.UnknownTopicOrPartition.Code
	case topic == controller.OffsetsTopic:
		// Its partitions hold groups, not a Kafka log (actors/group).
		return kerr.InvalidTopicException.Code
	}
	return kerr.NotLeaderForPartition.Code
}

// replica returns the local replica of partition p of the topic named
// topic, or of the topic with id unless it is zero (Fetch v13+), or the
// error code to answer with. A replica registered under the name that is
// another topic's (one deleted, the name since reused) counts as missing,
// except that a request by id is answered UNKNOWN_TOPIC_ID, as Kafka's
// checkTopicId answers a Fetch whose id is not its partition's; so is one
// whose id no topic has.
func (s *Service) replica(topic string, id [16]byte, p int32) (*partition.Replica, int16) {
	tp := partition.TopicPartition{Topic: topic, Partition: p}
	if id == [16]byte{} {
		if r := partition.Current(s.Replicas, s.Machine.View(), tp); r != nil {
			return r, 0
		}
		return nil, s.missingCode(topic, p)
	}
	if r := partition.Lookup(s.Replicas, tp, controller.TopicID(id)); r != nil {
		return r, 0
	}
	if s.Machine.View().TopicByID(controller.TopicID(id)) == nil || s.Replicas.Get(tp) != nil {
		return nil, kerr.UnknownTopicID.Code
	}
	return nil, s.missingCode(topic, p)
}

// leaderView returns the view of a local partition this broker leads
// (topic, id and p as replica takes them), or the error code to answer
// with. epoch is the client's current leader epoch (-1: not given), which
// fences stale leaders and stale clients.
// A replica checks it before its leadership, as Kafka's
// Partition.getLocalLog does: a follower tells a client with an old epoch
// FENCED_LEADER_EPOCH (refresh the metadata) and one with a newer epoch
// UNKNOWN_LEADER_EPOCH (this replica lags: retry), rather than
// NOT_LEADER_OR_FOLLOWER.
func (s *Service) leaderView(topic string, id [16]byte, p int32, epoch int32) (*partition.View, int16) {
	r, code := s.replica(topic, id, p)
	if r == nil {
		return nil, code
	}
	v := r.Machine.View()
	switch {
	case epoch >= 0 && epoch < v.Epoch:
		return nil, kerr.FencedLeaderEpoch.Code
	case epoch > v.Epoch:
		return nil, kerr.UnknownLeaderEpoch.Code
	case !v.Leader:
		return nil, kerr.NotLeaderForPartition.Code
	}
	return v, 0
}
