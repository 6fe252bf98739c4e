package controller

import (
	"encoding/json"
	"fmt"
)

// Command is one entry of the controller log. Exactly one field is set.
// Commands are JSON: they are small and rare, and a readable log is worth
// more here than a few microseconds.
type Command struct {
	InitCluster    *InitCluster    `json:"init_cluster,omitempty"`
	RegisterBroker *RegisterBroker `json:"register_broker,omitempty"`
	SetConfig      *SetConfig      `json:"set_config,omitempty"`
	CreateTopic    *CreateTopic    `json:"create_topic,omitempty"`
	DeleteTopic    *DeleteTopic    `json:"delete_topic,omitempty"`
	AddPartitions  *AddPartitions  `json:"add_partitions,omitempty"`
	AllocatePIDs   *AllocatePIDs   `json:"allocate_pids,omitempty"`
	TopicLed       *TopicLed       `json:"topic_led,omitempty"`
	CatchUp        *CatchUp        `json:"catch_up,omitempty"`

	RemovalRequest       *RemovalRequest       `json:"removal_request,omitempty"`
	RemoveBroker         *RemoveBroker         `json:"remove_broker,omitempty"`
	Reassign             *Reassign             `json:"reassign,omitempty"`
	CompleteReassignment *CompleteReassignment `json:"complete_reassignment,omitempty"`
	// AlterTopicConfigs is ignored by versions before it: they read an
	// empty command. It is proposed only once every broker registered
	// level 1 or more (CommandLevel).
	AlterTopicConfigs *AlterTopicConfigs `json:"alter_topic_configs,omitempty"`
}

// CommandLevel is the level of the controller commands this binary
// applies, which each broker registers (RegisterBroker.Level). A command
// that older versions would read as empty, and so leave out of their
// state for good once they snapshot it, is proposed only once every
// registered broker has the level that applies it: Kafka's
// metadata.version, reduced to what Flotilla needs. A rule that every
// broker must apply alike changes only once every member registered the
// level that has it (State.ClusterLevel).
//
//   - 1: AlterTopicConfigs.
//   - 2: reassignments are bounded per broker they add a replica to, not
//     across the cluster (moves.go).
const CommandLevel = 2

// AllocatePIDs hands the next block of producer ids to a broker, which
// gives them out to InitProducerId without asking the controller each time.
// A block is never handed out twice, so producer ids are unique across the
// cluster and across restarts (a restarted broker takes a new block).
type AllocatePIDs struct {
	NodeID uint64 `json:"node_id"`
	Count  int64  `json:"count"`
}

// CreateTopic adds a topic. The proposer chose the id, the replicas of each
// partition and validated the configs; apply only refuses (as a no-op) a
// name that is already taken, so concurrent creations of one name resolve
// to whichever is applied first, identically everywhere.
type CreateTopic struct {
	Name     string            `json:"name"`
	ID       TopicID           `json:"id"`
	Replicas [][]uint64        `json:"replicas"` // per partition, preferred leader first
	Configs  map[string]string `json:"configs,omitempty"`
	// Creating makes the topic one being created until a TopicLed for it
	// is applied. Every proposer sets it; entries from versions before it
	// existed do not, and their topics count as created (they were shown
	// once their partitions had leaders, a fact those versions did not
	// record).
	Creating bool `json:"creating,omitempty"`
}

// TopicLed records that every partition a topic was created with has had
// a leader: its creation is finished, and Metadata shows it from then on
// whatever happens to its leaders. Any broker may propose it once it sees
// those leaders; apply is a no-op for a topic already marked or gone, so
// repeats and concurrent proposals are harmless.
type TopicLed struct {
	ID TopicID `json:"id"`
}

// CatchUp changes nothing: a broker proposes one after it starts, unless
// it has another entry to propose, and its controller state is caught up
// (StateMachine.CaughtUp) once the entry is applied there. Versions that
// do not know it read an empty command, which changes nothing either.
type CatchUp struct {
	NodeID uint64 `json:"node_id"`
}

// DeleteTopic removes the topic with this id, if it still exists.
type DeleteTopic struct {
	ID TopicID `json:"id"`
}

// AddPartitions appends partitions to a topic (CreatePartitions). The
// proposer chose the replicas of each new partition. From is the partition
// count it saw: apply is a no-op unless the topic still has exactly that
// many, so that a concurrent or repeated proposal never adds partitions
// twice, and a no-op too if a replica names a broker that can no longer
// take one (it was valid when proposed; the membership changed since).
type AddPartitions struct {
	Topic    TopicID    `json:"topic"`
	From     int32      `json:"from"`
	Replicas [][]uint64 `json:"replicas"` // per new partition, preferred leader first
}

// AlterTopicConfigs changes the configs set on the topic with this id
// (IncrementalAlterConfigs, AlterConfigs) one key at a time, as Kafka's
// ConfigRecords do: Set gives keys their new values, Delete returns keys
// to the brokers' defaults, and Replace first drops every config the topic
// sets (legacy AlterConfigs, which replaces them all). The proposer
// validated the outcome; apply is a no-op for a topic that is gone.
type AlterTopicConfigs struct {
	ID      TopicID           `json:"id"`
	Set     map[string]string `json:"set,omitempty"`
	Delete  []string          `json:"delete,omitempty"`
	Replace bool              `json:"replace,omitempty"`
}

// InitCluster names the cluster. Only the first one applied takes effect, so
// the id is generated once, by whichever broker leads first, and kept.
type InitCluster struct {
	ClusterID string `json:"cluster_id"`
}

// RegisterBroker records a broker and where clients and peers reach it. A
// later registration of the same id replaces the earlier one.
type RegisterBroker struct {
	NodeID    uint64 `json:"node_id"`
	KafkaAddr string `json:"kafka_addr"`
	RaftAddr  string `json:"raft_addr"`
	// Level is the broker's CommandLevel; versions before it register
	// none (0). A broker registers again when its level changes.
	Level int `json:"level,omitempty"`
}

// SetConfig sets (or, with an empty Value, deletes) one cluster-wide config
// key, the broker-level defaults that DescribeConfigs reports.
type SetConfig struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Encode returns the command's log bytes.
func (c *Command) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("encode controller command: %v", err)) // only plain fields: cannot fail
	}
	return b
}

// DecodeCommand parses a command from the log.
func DecodeCommand(b []byte) (*Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode controller command: %w", err)
	}
	return &c, nil
}
