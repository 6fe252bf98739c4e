package controller

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/flotilla/flotilla/raftactor"
)

// createPartitions validates each topic against the applied state, proposes
// the valid ones and answers, as createTopics does, once all are decided
// and the new partitions have leaders. A topic counts as grown only if its
// partition From is the one this proposal's entry added: a concurrent
// CreatePartitions of the same topic may have been applied first.
func (c *controllerActor) createPartitions(ctx actor.Context, m *CreatePartitions) {
	results, cmds := planAllPartitions(c.o.Machine.View(), c.o.Alive, m.Topics, m.ValidateOnly)
	var grown []TopicID
	from := map[TopicID]int32{}
	waiting := 0
	reply := func() {
		if m.ReplyTo == nil {
			return
		}
		c.await(ctx, &leaderWait{
			done:    &CreatePartitionsDone{Ref: m.Ref, Results: results},
			results: results,
			replyTo: m.ReplyTo,
			topics:  grown,
			from:    from,
			what:    "got new partitions",
		}, m.TimeoutTicks)
	}
	for i, cmd := range cmds {
		if cmd == nil || results[i].Err != nil {
			continue
		}
		waiting++
		c.propose(ctx, &Command{AddPartitions: cmd}, func(p *raftactor.Proposed) {
			if p.Err != nil {
				results[i].Err = proposalError(p.Err)
			} else if err := addedBy(c.o.Machine.View(), cmd, p.Index); err != nil {
				results[i].Err = err
			} else {
				grown = append(grown, cmd.Topic)
				from[cmd.Topic] = cmd.From
			}
			if waiting--; waiting == 0 {
				reply()
			}
		})
	}
	if waiting == 0 {
		reply()
	}
}

// planAllPartitions plans a CreatePartitions request: one result per
// distinct topic name in request order, and the command to propose for
// each (nil where there is nothing to propose: an error, or validate-only).
func planAllPartitions(view *State, alive func(uint64) bool, specs []PartitionsSpec, validateOnly bool) ([]TopicResult, []*AddPartitions) {
	// Kafka (ControllerApis.createPartitions) answers a name the request
	// repeats once, with INVALID_REQUEST, and acts on none of its entries.
	times := map[string]int{}
	for _, spec := range specs {
		times[spec.Name]++
	}
	var results []TopicResult
	var cmds []*AddPartitions
	answered := map[string]bool{}
	for _, spec := range specs {
		if answered[spec.Name] {
			continue
		}
		answered[spec.Name] = true
		if times[spec.Name] > 1 {
			results = append(results, TopicResult{Name: spec.Name, Err: fmt.Errorf("%w: Duplicate topic name", kerr.InvalidRequest)})
			cmds = append(cmds, nil)
			continue
		}
		cmd, res, err := planPartitions(view, alive, spec)
		res.Err = err
		if validateOnly {
			cmd = nil
		}
		results, cmds = append(results, res), append(cmds, cmd)
	}
	return results, cmds
}

// addedBy returns nil if the entry at index added cmd's partitions to
// view, else why it did not.
func addedBy(view *State, cmd *AddPartitions, index uint64) error {
	t := view.TopicByID(cmd.Topic)
	switch {
	case t == nil:
		return fmt.Errorf("%w: the topic was deleted concurrently", kerr.UnknownTopicOrPartition)
	case len(t.Partitions) > int(cmd.From) && t.Partitions[cmd.From].AddedAt == index:
		return nil
	case len(t.Partitions) != int(cmd.From):
		return fmt.Errorf("%w: topic %q changed its partition count concurrently: it has %d partitions now", kerr.InvalidPartitions, t.Name, len(t.Partitions))
	}
	return fmt.Errorf("%w: topic %q: a broker of the assignment left the cluster", kerr.InvalidReplicaAssignment, t.Name)
}

// planPartitions validates spec against view as Kafka's
// ReplicationControlManager.createPartitions does and returns the command
// that adds the partitions. New partitions get the replication factor of
// the topic's first partition; without an explicit assignment they continue
// the topic's round-robin spread over the brokers, so that its preferred
// leaders and replicas stay even. Like planTopic, it places new replicas
// on the brokers alive finds alive only.
func planPartitions(view *State, alive func(uint64) bool, spec PartitionsSpec) (*AddPartitions, TopicResult, error) {
	res := TopicResult{Name: spec.Name, Partitions: spec.Count}
	t := view.Topics[spec.Name]
	if t == nil {
		return nil, res, fmt.Errorf("%w: The topic '%s' does not exist", kerr.UnknownTopicOrPartition, spec.Name)
	}
	res.ID = t.ID
	if t.Name == OffsetsTopic {
		// Its partition count places the groups (group.PartitionFor).
		return nil, res, errInternalTopic
	}
	have := len(t.Partitions)
	switch {
	case have == 0:
		return nil, res, fmt.Errorf("%w: topic %q has no partitions", kerr.UnknownServerError, t.Name)
	case int(spec.Count) == have:
		return nil, res, fmt.Errorf("%w: Topic already has %d partitions", kerr.InvalidPartitions, have)
	case int(spec.Count) < have:
		return nil, res, fmt.Errorf("%w: Topic currently has %d partitions, which is higher than the requested %d", kerr.InvalidPartitions, have, spec.Count)
	case int(spec.Count)-have > maxPartitions:
		return nil, res, fmt.Errorf("%w: adding %d partitions (at most %d at once)", kerr.InvalidPartitions, int(spec.Count)-have, maxPartitions)
	}
	add := int(spec.Count) - have
	rf := len(t.Partitions[0].Target())
	if rf == 0 {
		return nil, res, fmt.Errorf("%w: partition 0 of topic %q has no replicas", kerr.UnknownServerError, t.Name)
	}
	res.ReplicationFactor = int16(rf)
	cmd := &AddPartitions{Topic: t.ID, From: int32(have)}
	if spec.Assignment != nil {
		if len(spec.Assignment) != add {
			return nil, res, fmt.Errorf("%w: Attempted to add %d additional partition(s), but only %d assignment(s) were specified", kerr.InvalidReplicaAssignment, add, len(spec.Assignment))
		}
		for i, rs := range spec.Assignment {
			if err := checkReplicas(view, alive, have+i, rs, rf); err != nil {
				return nil, res, err
			}
		}
		cmd.Replicas = spec.Assignment
		return cmd, res, nil
	}
	brokers := view.livePlaceable(alive)
	if rf > len(brokers) {
		return nil, res, fmt.Errorf("%w: the topic's replication factor %d cannot be reached with %d live brokers that can take a replica", kerr.InvalidReplicationFactor, rf, len(brokers))
	}
	cmd.Replicas = assign(brokers, add, rf, spreadStart(t, brokers))
	return cmd, res, nil
}

// spreadStart returns the start for assign that places the topic's next
// partition where its round-robin would have: after the preferred leader of
// its last partition led by a broker still placeable. A topic none of
// whose preferred leaders is placeable starts anywhere.
func spreadStart(t *Topic, brokers []Broker) int {
	ids := make([]uint64, len(brokers))
	for i, b := range brokers {
		ids[i] = b.NodeID
	}
	slices.Sort(ids)
	for i := len(t.Partitions) - 1; i >= 0; i-- {
		target := t.Partitions[i].Target()
		if len(target) == 0 {
			continue
		}
		if k := slices.Index(ids, target[0]); k >= 0 {
			return k + len(t.Partitions) - i
		}
	}
	return rand.IntN(len(ids))
}

// applyAddPartitions appends the partitions of a, each with the next group
// id, unless the topic is gone, no longer has a.From partitions, or a
// replica names a broker that can no longer take one.
func (sm *StateMachine) applyAddPartitions(next, cur *State, index uint64, a *AddPartitions) {
	t := cur.TopicByID(a.Topic)
	if t == nil || len(t.Partitions) != int(a.From) || len(a.Replicas) == 0 {
		return
	}
	for _, rs := range a.Replicas {
		for _, id := range rs {
			if _, ok := cur.Brokers[id]; !ok || !cur.canHost(id) {
				sm.log.Warn().Str("topic", t.Name).Uint64("node_id", id).Uint64("index", index).
					Msg("partitions not added: the assignment names a broker that is no longer a member")
				return
			}
		}
	}
	next.NextGroup = max(cur.NextGroup, firstPartitionGroup)
	nt := *t
	nt.Partitions = slices.Clip(slices.Clone(t.Partitions))
	for _, rs := range a.Replicas {
		replicas := slices.Clone(rs)
		nt.Partitions = append(nt.Partitions, Partition{
			Index: int32(len(nt.Partitions)), Group: next.NextGroup, Replicas: replicas, Founders: replicas, AddedAt: index,
		})
		next.NextGroup++
	}
	next.Topics = maps.Clone(cur.Topics)
	next.Topics[t.Name] = &nt
	next.reindexTopics(cur, t.Name)
	sm.log.Info().Str("topic", t.Name).Str("topic_id", t.ID.String()).Int32("previous_partitions", a.From).Int("partitions", len(nt.Partitions)).
		Uint64("index", index).Msg("partitions added")
}
