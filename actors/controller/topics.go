package controller

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Broker defaults for CreateTopics with -1 partitions or replication factor:
// Kafka's num.partitions is 1, and default.replication.factor is min(3,
// brokers) here (DESIGN.md), so a single broker just works and a cluster
// gets durability by default.
const (
	defaultPartitions  = 1
	maxDefaultReplicas = 3
	// maxPartitions bounds one request: every partition is a raft group.
	maxPartitions = 10000
)

// OffsetsTopic is the internal topic whose partitions hold the consumer
// groups and their committed offsets (actors/group). Only the group
// coordinator creates it, and nobody deletes it.
const OffsetsTopic = "__consumer_offsets"

var errInternalTopic = fmt.Errorf("%w: %s is internal to the group coordinator", kerr.InvalidTopicException, OffsetsTopic)

var legalTopicName = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// ValidateTopicName applies Kafka's rules for topic names (Topic.validate):
// what CreateTopics refuses, and what Metadata answers
// INVALID_TOPIC_EXCEPTION for instead of creating or looking it up.
func ValidateTopicName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("%w: topic name %q is not allowed", kerr.InvalidTopicException, name)
	case len(name) > 249:
		return fmt.Errorf("%w: topic name is longer than 249 characters", kerr.InvalidTopicException)
	case !legalTopicName.MatchString(name):
		return fmt.Errorf("%w: topic name %q may contain only ASCII letters, digits, '.', '_' and '-'", kerr.InvalidTopicException, name)
	}
	return nil
}

// collidingTopic returns the least name among view's topics and earlier
// that differs from name only in '.' against '_', or "" if none does.
// Kafka refuses such a pair (Topic.hasCollision) because both topics would
// report under the same metric names, where '.' becomes '_'.
func collidingTopic(view *State, earlier []string, name string) string {
	if !strings.ContainsAny(name, "._") {
		return ""
	}
	unified := unifyCollisionChars(name)
	var found string
	consider := func(other string) {
		if len(other) == len(name) && other != name && unifyCollisionChars(other) == unified && (found == "" || other < found) {
			found = other
		}
	}
	for other := range view.Topics {
		consider(other)
	}
	for _, other := range earlier {
		consider(other)
	}
	return found
}

// unifyCollisionChars maps the names that collide to one name.
func unifyCollisionChars(name string) string { return strings.ReplaceAll(name, ".", "_") }

// planTopic validates spec against view and returns the command that
// creates it. earlier are the topics the same request creates before spec:
// spec must not collide with them either. alive (nil: every broker) says
// which brokers this one has heard from lately: as in Kafka, automatic
// placement and the default replication factor count only those, and an
// explicit assignment may name a dead broker but not only dead ones for a
// partition.
func planTopic(view *State, alive func(uint64) bool, spec TopicSpec, earlier []string) (*CreateTopic, TopicResult, error) {
	res := TopicResult{Name: spec.Name}
	if err := ValidateTopicName(spec.Name); err != nil {
		return nil, res, err
	}
	if (spec.Name == OffsetsTopic) != spec.Internal {
		if spec.Internal {
			return nil, res, fmt.Errorf("%w: only %s is internal", kerr.InvalidRequest, OffsetsTopic)
		}
		if _, exists := view.Topics[spec.Name]; !exists {
			return nil, res, errInternalTopic
		}
	}
	if _, exists := view.Topics[spec.Name]; exists {
		return nil, res, fmt.Errorf("%w: Topic '%s' already exists", kerr.TopicAlreadyExists, spec.Name)
	}
	if other := collidingTopic(view, earlier, spec.Name); other != "" {
		return nil, res, fmt.Errorf("%w: Topic '%s' collides with existing topic: %s", kerr.InvalidTopicException, spec.Name, other)
	}
	configs, err := CanonicalTopicConfigs(spec.Configs)
	if err != nil {
		return nil, res, err
	}
	brokers := view.livePlaceable(alive)
	var replicas [][]uint64
	if len(spec.Assignment) > 0 {
		if spec.Partitions != -1 || spec.ReplicationFactor != -1 {
			return nil, res, fmt.Errorf("%w: give either an assignment or partitions and replication factor", kerr.InvalidRequest)
		}
		if len(spec.Assignment) > maxPartitions {
			return nil, res, fmt.Errorf("%w: %d partitions: a topic has 1 to %d", kerr.InvalidPartitions, len(spec.Assignment), maxPartitions)
		}
		for p, rs := range spec.Assignment {
			if rs == nil {
				return nil, res, fmt.Errorf("%w: no assignment for partition %d: partitions are numbered 0 to %d, once each", kerr.InvalidReplicaAssignment, p, len(spec.Assignment)-1)
			}
			if err := checkReplicas(view, alive, p, rs, len(spec.Assignment[0])); err != nil {
				return nil, res, err
			}
		}
		replicas = spec.Assignment
	} else {
		n, rf := int(spec.Partitions), int(spec.ReplicationFactor)
		if n == -1 {
			n = defaultPartitions
		}
		switch {
		case rf != -1:
		case spec.Internal:
			// The offsets topic cannot be recreated, so its replication
			// factor counts the cluster's members, as Kafka's
			// offsets.topic.replication.factor is fixed: not the brokers
			// registered and alive when it happens to be asked for (one,
			// while a new cluster starts), and not the peers some broker's
			// config lists. Until that many brokers are placeable, the
			// creation fails and the group's clients retry.
			rf = min(maxDefaultReplicas, view.hostingMembers())
		default:
			rf = min(maxDefaultReplicas, len(brokers))
		}
		if n < 1 || n > maxPartitions {
			return nil, res, fmt.Errorf("%w: %d partitions: a topic has 1 to %d", kerr.InvalidPartitions, n, maxPartitions)
		}
		switch {
		case len(brokers) == 0:
			return nil, res, fmt.Errorf("%w: no live broker can take a replica", kerr.InvalidReplicationFactor)
		case rf < 1:
			// KRaft's ReplicationControlManager words it so.
			return nil, res, fmt.Errorf("%w: Replication factor must be larger than 0, or -1 to use the default value", kerr.InvalidReplicationFactor)
		case rf > len(brokers):
			return nil, res, fmt.Errorf("%w: Replication factor: %d larger than available brokers: %d", kerr.InvalidReplicationFactor, rf, len(brokers))
		}
		replicas = assign(brokers, n, rf, rand.IntN(len(brokers)))
	}
	cmd := &CreateTopic{Name: spec.Name, ID: NewTopicID(), Replicas: replicas, Configs: configs, Creating: true}
	res.ID, res.Partitions, res.ReplicationFactor, res.Configs = cmd.ID, int32(len(replicas)), int16(len(replicas[0])), configs
	return cmd, res, nil
}

// checkReplicas applies Kafka's checks to the explicit replicas of
// partition p: rf of them (at least one), each a registered broker that can
// take a new replica (not leaving the cluster), none twice, and at least
// one alive (nil alive: every broker), as Kafka's ReplicationControlManager
// refuses a partition whose brokers are all fenced.
func checkReplicas(view *State, alive func(uint64) bool, p int, rs []uint64, rf int) error {
	if len(rs) == 0 || len(rs) != rf {
		return fmt.Errorf("%w: partition %d has %d replicas, want %d", kerr.InvalidReplicaAssignment, p, len(rs), rf)
	}
	live := alive == nil
	for i, id := range rs {
		if slices.Contains(rs[:i], id) {
			return fmt.Errorf("%w: partition %d: broker %d repeated", kerr.InvalidReplicaAssignment, p, id)
		}
		if _, ok := view.Brokers[id]; !ok || !view.canHost(id) {
			return fmt.Errorf("%w: partition %d: broker %d is not a member of the cluster (or is leaving it)", kerr.InvalidReplicaAssignment, p, id)
		}
		live = live || alive(id)
	}
	if !live {
		return fmt.Errorf("%w: All brokers specified in the manual partition assignment for partition %d are fenced or in controlled shutdown", kerr.InvalidReplicaAssignment, p)
	}
	return nil
}

// assign spreads n partitions of rf replicas over brokers round-robin from
// start, so that preferred leaders (the first replica) are spread evenly and
// each broker follows the others equally.
func assign(brokers []Broker, n, rf, start int) [][]uint64 {
	ids := make([]uint64, len(brokers))
	for i, b := range brokers {
		ids[i] = b.NodeID
	}
	slices.Sort(ids)
	out := make([][]uint64, n)
	for p := range n {
		rs := make([]uint64, rf)
		for j := range rf {
			rs[j] = ids[(start+p+j)%len(ids)]
		}
		out[p] = rs
	}
	return out
}
