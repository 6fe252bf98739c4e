package kafka

import (
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
)

// MetadataSource is what Metadata and DescribeCluster requests are answered
// from. The broker implements it over the controller's applied state and the
// disseminated partition leadership. Both methods are called inside
// connection actors, concurrently, and must not block: read immutable views,
// and start anything slow (topic auto-creation) by sending a message.
type MetadataSource interface {
	// Cluster returns the cluster as clients see it now.
	Cluster() Cluster
	// Topics returns the topics q asks for, in any order. A topic asked for
	// by name or id and not returned is answered as unknown; a name no
	// topic can have is returned with INVALID_TOPIC_EXCEPTION (17). To
	// auto-create a topic (when q.AllowAutoCreate and the source agrees),
	// start the creation and return the topic with LEADER_NOT_AVAILABLE (5),
	// as Kafka does; the client retries.
	Topics(q TopicQuery) []Topic
}

// Cluster is the cluster-wide part of Metadata and DescribeCluster answers.
type Cluster struct {
	ClusterID string
	// ControllerID is the broker that clients send controller requests
	// (CreateTopics...) to; -1 when there is none.
	ControllerID int32
	// Brokers are the live brokers; Fenced the registered ones this
	// broker has not heard from within the session timeout, which
	// DescribeCluster lists only when asked (v2+).
	Brokers []Broker
	Fenced  []Broker
}

// Broker is a broker as clients see it: its node id and its advertised Kafka
// address.
type Broker struct {
	NodeID int32
	Host   string
	Port   int32
	Rack   *string
}

// NewBroker builds the Broker of a node id and an advertised Kafka address
// ("host:port"), as the controller state records them.
func NewBroker(nodeID uint64, kafkaAddr string) (Broker, error) {
	if nodeID > math.MaxInt32 {
		return Broker{}, fmt.Errorf("broker %d: node id above Kafka's int32 range", nodeID)
	}
	host, portStr, err := net.SplitHostPort(kafkaAddr)
	if err != nil {
		return Broker{}, fmt.Errorf("broker %d: advertised kafka address %q: %w", nodeID, kafkaAddr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 || host == "" {
		return Broker{}, fmt.Errorf("broker %d: advertised kafka address %q is not host:port", nodeID, kafkaAddr)
	}
	return Broker{NodeID: int32(nodeID), Host: host, Port: int32(port)}, nil
}

// TopicQuery is the topic part of a Metadata request.
type TopicQuery struct {
	// All asks for every topic; Names and IDs are then empty.
	All bool
	// Names and IDs are the topics asked for, without duplicates.
	Names []string
	IDs   [][16]byte
	// AllowAutoCreate is the request's allow_auto_topic_creation (always
	// true before v4, never with All). The source decides what to do with it.
	AllowAutoCreate bool
}

// Topic is one topic's metadata.
type Topic struct {
	Name string
	ID   [16]byte
	// ErrorCode is the topic's error, 0 for none.
	ErrorCode  int16
	Internal   bool
	Partitions []Partition
}

// Partition is one partition's metadata. Ids are broker node ids.
type Partition struct {
	Partition int32
	// ErrorCode is the partition's error. A partition without a leader
	// (Leader -1) and no error is answered with LEADER_NOT_AVAILABLE.
	ErrorCode   int16
	Leader      int32
	LeaderEpoch int32
	Replicas    []int32
	ISR         []int32
	Offline     []int32
}

// compareTopicNames orders topics by name.
func compareTopicNames(a, b Topic) int { return strings.Compare(a.Name, b.Name) }

// sortedTopics returns ts sorted by name, copying only when needed.
func sortedTopics(ts []Topic) []Topic {
	if slices.IsSortedFunc(ts, compareTopicNames) {
		return ts
	}
	ts = slices.Clone(ts)
	slices.SortFunc(ts, compareTopicNames)
	return ts
}
