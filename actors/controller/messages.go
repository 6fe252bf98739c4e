package controller

import "github.com/asynkron/protoactor-go/actor"

// The controller actor also takes raftactor.Tick from the shared ticker and
// raftactor.Proposed from the controller group, and sends raftactor.Propose.

// CreateTopics asks the controller to create topics. The actor validates
// each, proposes the valid ones to the controller group, and answers
// ReplyTo with CreateTopicsDone once every one is applied or failed and the
// created partitions have leaders (or TimeoutTicks passed).
type CreateTopics struct {
	Ref          uint64 // echoed in the answer
	Topics       []TopicSpec
	ValidateOnly bool
	// TimeoutTicks bounds how long the answer waits for the new
	// partitions' leaders (the request's timeout); 0 answers as soon as
	// the proposals are decided, as Kafka answers a timeout <= 0.
	TimeoutTicks uint64
	ReplyTo      *actor.PID
}

// TopicSpec is one topic to create. Partitions -1 and ReplicationFactor -1
// take the broker defaults: one partition, and min(3, the live brokers that
// can take a replica) replicas, or for the offsets topic min(3, the
// cluster's members), decided by the controller when it creates the topic.
// Assignment, when set, gives the replicas of each partition and overrides
// both.
type TopicSpec struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	Assignment        [][]uint64
	Configs           map[string]string
	// Internal is set by the group coordinator creating the offsets topic,
	// the one name nobody else may create.
	Internal bool
}

// CreateTopicsDone answers CreateTopics, one result per requested topic in
// request order.
type CreateTopicsDone struct {
	Ref     uint64
	Results []TopicResult
}

// TopicResult is the outcome for one topic. Err is a *kerr.Error (possibly
// wrapped with a message) or nil.
type TopicResult struct {
	Name              string
	ID                TopicID
	Partitions        int32
	ReplicationFactor int16
	Configs           map[string]string
	Err               error
}

// MarkTopicLed tells the controller actor that this broker saw every
// partition a topic was created with led (the front door sends it when it
// first shows a topic being created). The actor proposes TopicLed, once
// at a time per topic; nothing answers.
type MarkTopicLed struct {
	ID TopicID
}

// DeleteTopics asks the controller to delete topics by name or by id.
type DeleteTopics struct {
	Ref     uint64
	Names   []string
	IDs     []TopicID
	ReplyTo *actor.PID
}

// DeleteTopicsDone answers DeleteTopics: results for Names first, then for
// IDs, each in request order.
type DeleteTopicsDone struct {
	Ref     uint64
	Results []TopicResult
}

// CreatePartitions asks the controller to add partitions to existing
// topics (Kafka's CreatePartitions). The actor validates each topic,
// proposes the valid ones and answers ReplyTo with CreatePartitionsDone
// once every one is applied or failed and the new partitions it hosts have
// leaders (or TimeoutTicks passed), as it answers CreateTopics.
type CreatePartitions struct {
	Ref          uint64 // echoed in the answer
	Topics       []PartitionsSpec
	ValidateOnly bool
	// TimeoutTicks bounds how long the answer waits for the new
	// partitions' leaders (the request's timeout); 0 answers as soon as
	// the proposals are decided, as Kafka answers a timeout <= 0.
	TimeoutTicks uint64
	ReplyTo      *actor.PID
}

// PartitionsSpec is one topic's new partition count: the total, not the
// number added. Assignment, when not nil, gives the replicas of each new
// partition, in partition order; nil lets the controller place them.
type PartitionsSpec struct {
	Name       string
	Count      int32
	Assignment [][]uint64
}

// CreatePartitionsDone answers CreatePartitions, one result per distinct
// topic name in request order; a name the request repeats has one result,
// an INVALID_REQUEST. A result's Partitions is the requested count.
type CreatePartitionsDone struct {
	Ref     uint64
	Results []TopicResult
}

// AlterConfigs asks the controller to change the configs of topics
// (Kafka's IncrementalAlterConfigs and, with Replace, AlterConfigs). The
// actor checks each topic's alteration against the applied state,
// proposes the valid ones unless ValidateOnly, and answers ReplyTo with
// AlterConfigsDone once every one is applied or failed.
type AlterConfigs struct {
	Ref    uint64 // echoed in the answer
	Topics []TopicAlteration
	// Replace makes each topic's configs exactly those its operations
	// set (all ConfigSet), the others returning to the brokers' defaults.
	Replace      bool
	ValidateOnly bool
	ReplyTo      *actor.PID
}

// AlterConfigsDone answers AlterConfigs: one error (a *kerr.Error,
// possibly wrapped) or nil per topic, in request order.
type AlterConfigsDone struct {
	Ref  uint64
	Errs []error
}

// InitProducerID asks for a new producer id (epoch 0) for an idempotent
// producer. The controller actor answers ReplyTo with ProducerIDDone, from
// its broker's current block when it has ids left, else after allocating
// a new block.
type InitProducerID struct {
	Ref     uint64
	ReplyTo *actor.PID
}

// ProducerIDDone answers InitProducerID.
type ProducerIDDone struct {
	Ref   uint64
	ID    int64
	Epoch int16
	Err   error
}

// AlterReassignments asks the controller to start, change or cancel
// partition reassignments (Kafka's AlterPartitionReassignments). The actor
// validates each move against the applied state, proposes the valid ones
// and answers ReplyTo with AlterReassignmentsDone once each is applied or
// failed.
type AlterReassignments struct {
	Ref     uint64
	Moves   []Move
	ReplyTo *actor.PID
}

// Move is one partition's new target replicas; Replicas nil cancels the
// reassignment under way.
type Move struct {
	Topic     string
	Partition int32
	Replicas  []uint64
}

// AlterReassignmentsDone answers AlterReassignments: one error (a
// *kerr.Error, possibly wrapped) or nil per move, in request order.
type AlterReassignmentsDone struct {
	Ref  uint64
	Errs []error
}

// ReassignmentReached is sent to the local controller actor by the leader
// of a partition-like raft group whose voters have become the target of the
// reassignment under way; the controller actor proposes
// CompleteReassignment. Leaders repeat it until the assignment changes.
type ReassignmentReached struct {
	Group    uint64
	Replicas []uint64
}

// ElectPreferred asks for a partition's leadership to move to its
// preferred replica (ElectLeaders). The controller actor asks the local
// replica, if this broker hosts one, or the preferred replica's broker to
// request the transfer; raft forwards it to the current leader, which
// transfers once the preferred replica is caught up.
type ElectPreferred struct {
	Group     uint64
	Preferred uint64
}

// RequestRemoval asks the controller to drain and remove brokers (a config
// reload dropped them from the peers list): this broker records its
// request in the controller state, and the removal starts once a majority
// of the voters that stay asked. The request is withdrawn once the config
// lists the broker again.
type RequestRemoval struct {
	NodeIDs []uint64
}

// AnnounceStop asks the controller actor to tell every peer that this
// broker is about to stop (a controlled shutdown), so that none hands it a
// leadership meanwhile. The actor repeats the notice until each peer Alive
// reports (nil: every peer) has acknowledged it, and then closes Done;
// nothing else answers.
type AnnounceStop struct {
	Alive func(id uint64) bool
	Done  chan struct{}
}
