package group

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Call asks the coordinator of one group to serve a request for it. Req is
// one of the Kafka requests that name a single group (*kmsg.JoinGroupRequest,
// SyncGroupRequest, HeartbeatRequest, LeaveGroupRequest,
// OffsetCommitRequest, OffsetDeleteRequest) or one group's share of a
// request that names many (*FetchOffsets, *Describe, *Delete). The
// offsets-topic partition answers ReplyTo with Answer: at once, or — for a
// join waiting for its rebalance, a sync waiting for its leader, a commit
// waiting to be applied — when that happens. A partition that is not the
// group's coordinator answers NOT_COORDINATOR.
type Call struct {
	Ref        uint64 // echoed in Answer
	Group      string
	Req        any
	ClientID   string
	ClientHost string
	ReplyTo    *actor.PID
}

// Answer answers Call. Resp is the Kafka response to a whole request
// (*kmsg.JoinGroupResponse...), or for a share of a request:
// *kmsg.OffsetFetchResponseGroup for FetchOffsets,
// *kmsg.DescribeGroupsResponseGroup for Describe and *DeleteDone for Delete.
type Answer struct {
	Ref  uint64
	Resp any
}

// FetchOffsets asks for a group's committed offsets: of the given topics
// and partitions, or all of them when Topics is nil.
type FetchOffsets struct {
	Topics []kmsg.OffsetFetchRequestGroupTopic
}

// Describe asks for a group's state and members.
type Describe struct{}

// Delete asks to delete an empty group and its offsets.
type Delete struct{}

// DeleteDone answers Delete.
type DeleteDone struct {
	ErrorCode int16
}

// topicsDeleted tells an offsets-topic partition that these topics were
// deleted (or deleted and created again): its leader deletes every
// group's committed offsets of them, as Kafka does, so that a group does
// not resume a new topic of the same name at an old offset.
type topicsDeleted struct {
	names []string
}

// List asks an offsets-topic partition for the groups it coordinates. It
// answers ReplyTo with Listed (with NOT_COORDINATOR when it does not lead).
type List struct {
	Ref     uint64
	ReplyTo *actor.PID
}

// Listed answers List.
type Listed struct {
	Ref       uint64
	ErrorCode int16
	Groups    []kmsg.ListGroupsResponseGroup
}

// ViewGroups asks an offsets-topic partition for the groups it
// coordinates, as the debug endpoint shows them: it sends them on Reply
// (none when it does not lead, or leads and is still loading its groups)
// without waiting, so Reply must have room
// for the answer, which is shared with other askers and must not be
// modified. Requests that wait together are answered by one view; one
// whose Deadline (zero: none) has passed by then gets no answer.
type ViewGroups struct {
	Reply    chan<- []GroupInfo
	Deadline time.Time
}
