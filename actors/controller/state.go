package controller

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"

	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Broker is one registered broker.
type Broker struct {
	NodeID       uint64 `json:"node_id"`
	KafkaAddr    string `json:"kafka_addr"`
	RaftAddr     string `json:"raft_addr"`
	RegisteredAt uint64 `json:"registered_at"`   // raft index of the registration
	Level        int    `json:"level,omitempty"` // the CommandLevel it registered
}

// State is the applied controller state. A published State is never
// modified: Apply builds a new one.
type State struct {
	ClusterID string            `json:"cluster_id"`
	Brokers   map[uint64]Broker `json:"brokers"`
	Configs   map[string]string `json:"configs,omitempty"`
	Topics    map[string]*Topic `json:"topics,omitempty"` // by name
	// NextGroup is the raft group id the next partition gets. Group ids are
	// never reused, so a message for a deleted partition's group can never
	// reach a new partition.
	NextGroup uint64 `json:"next_group"`
	// NextPID is the first producer id not yet handed out; PIDBlocks the
	// latest block of each broker.
	NextPID int64 `json:"next_pid"`
	// NextMove numbers reassignments in the order they start.
	NextMove  uint64              `json:"next_move,omitempty"`
	PIDBlocks map[uint64]PIDBlock `json:"pid_blocks,omitempty"`
	Applied   uint64              `json:"applied"`
	Term      uint64              `json:"term"` // of the last applied entry

	// The controller group's membership (membership.go): its voters and
	// learners as committed, the members being drained to leave, and the
	// ids that left for good.
	Voters   []uint64 `json:"voters,omitempty"`
	Learners []uint64 `json:"learners,omitempty"`
	Draining []uint64 `json:"draining,omitempty"`
	Removed  []uint64 `json:"removed,omitempty"`
	// RemovalRequests are, for each member whose removal was asked for
	// and has not started, the brokers that asked, in order. A state
	// written before it existed has none.
	RemovalRequests map[uint64][]uint64 `json:"removal_requests,omitempty"`
	// ClusterLevel is the CommandLevel every member has registered, once
	// they all have (Kafka's finalized metadata.version). It only rises:
	// a broker joining, or registered anew, at a lower level does not take
	// back a rule the cluster already follows (moves.go).
	ClusterLevel int `json:"cluster_level,omitempty"`

	// byID indexes Topics by id (Fetch v13+ names topics by id on every
	// request), and moving holds the partitions being reassigned in the
	// order of their turns (movesInOrder): apply reads it after every
	// entry, which must not walk every partition. Both are rebuilt
	// whenever Topics changes (reindex); nil in a State built by hand,
	// where TopicByID and movesInOrder scan.
	byID   map[TopicID]*Topic
	moving []PartitionRef
}

// BrokerList returns the brokers ordered by id.
func (s *State) BrokerList() []Broker {
	ids := slices.Sorted(maps.Keys(s.Brokers))
	out := make([]Broker, len(ids))
	for i, id := range ids {
		out[i] = s.Brokers[id]
	}
	return out
}

// firstPartitionGroup is the first raft group id given to a partition; the
// ids below it are reserved for the controller and other internal groups.
const firstPartitionGroup = 1 << 10

// Topic is one topic as the controller knows it. Published topics are
// immutable.
type Topic struct {
	Name       string            `json:"name"`
	ID         TopicID           `json:"id"`
	Partitions []Partition       `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"` // only the ones set on the topic
	CreatedAt  uint64            `json:"created_at"`        // raft index of the creation
	// Creating is set while the topic is being created: some partition it
	// was created with has not had a leader yet (TopicLed clears it). Its
	// Metadata is then LEADER_NOT_AVAILABLE as a whole, as Kafka answers
	// for a topic being created, on every broker, one restarted or added
	// later included. A topic from a state or an entry written before
	// this field existed reads as created.
	Creating bool `json:"creating,omitempty"`
}

// CreatedPartitions returns the partitions the topic was created with,
// without those CreatePartitions added (which come after them).
func (t *Topic) CreatedPartitions() []Partition {
	n := 0
	for n < len(t.Partitions) && t.Partitions[n].AddedAt == 0 {
		n++
	}
	return t.Partitions[:n]
}

// Partition is one partition's assignment.
type Partition struct {
	Index int32  `json:"index"`
	Group uint64 `json:"group"` // its raft group id
	// Replicas are the broker ids hosting the partition, preferred leader
	// first. During a reassignment (membership.go) they are the target
	// followed by the original replicas being removed; Adding are the
	// target's new replicas, Removing the original ones leaving.
	Replicas []uint64 `json:"replicas"`
	Adding   []uint64 `json:"adding,omitempty"`
	Removing []uint64 `json:"removing,omitempty"`
	// Origin is the replica list, in order, from before the reassignment
	// under way: a cancellation goes back to it.
	Origin []uint64 `json:"origin,omitempty"`
	// Moves counts the reassignments started or changed, Completed those
	// completed; MoveSeq orders the one under way among all
	// (State.NextMove). Founders are the replicas it was created with.
	Moves     uint32   `json:"moves,omitempty"`
	Completed uint32   `json:"completed,omitempty"`
	MoveSeq   uint64   `json:"move_seq,omitempty"`
	Founders  []uint64 `json:"founders,omitempty"`
	// Running is set, from ClusterLevel 2, once the reassignment under
	// way has its turn (State.ActiveMoves); it stays set until the
	// reassignment ends, or a new target makes a move that started no
	// replica wait its turn again (moves.go).
	Running bool `json:"running,omitempty"`
	// Cancelled marks a reassignment under way that a cancel asked for:
	// going back to the replicas before the last move. Kafka ends it in
	// the cancelling record and lists it no more; here raft still takes
	// the new replicas out. A later target clears it.
	Cancelled bool `json:"cancelled,omitempty"`
	// AddedAt is the raft index of the AddPartitions that added the
	// partition to its topic; 0 for a partition created with the topic.
	// The proposer tells its own addition from a concurrent one by it.
	AddedAt uint64 `json:"added_at,omitempty"`
}

// PIDBlock is a range of producer ids given to one broker.
type PIDBlock struct {
	Start, Count int64
	At           uint64 // raft index of the allocation
}

// TopicByID returns the topic with the given id, or nil.
func (s *State) TopicByID(id TopicID) *Topic {
	if s.byID != nil {
		return s.byID[id]
	}
	for _, t := range s.Topics {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// TopicNames returns the topic names in order.
func (s *State) TopicNames() []string {
	return slices.Sorted(maps.Keys(s.Topics))
}

// StateMachine is the controller group's raftactor.StateMachine.
type StateMachine struct {
	view       atomic.Pointer[State]
	caughtUp   atomic.Bool
	caughtUpCh chan struct{} // closed once caughtUp
	log        zerolog.Logger
	// heldBack are the members last logged as keeping ClusterLevel below
	// CommandLevel (settle); only the applying goroutine uses it.
	heldBack []heldMember
}

// NewStateMachine returns an empty controller state machine, not caught up
// (CaughtUp).
func NewStateMachine(log zerolog.Logger) *StateMachine {
	sm := &StateMachine{log: log, caughtUpCh: make(chan struct{})}
	sm.view.Store(&State{Brokers: map[uint64]Broker{}})
	return sm
}

// View returns the latest applied state.
func (sm *StateMachine) View() *State { return sm.view.Load() }

// CaughtUp reports whether the applied state is one this broker may act
// on: it has applied an entry it proposed since it started, and with it
// everything the cluster had committed before (raft's leader holds every
// committed entry and appends after them), the commit index the broker
// recovered at startup included. Until then it may be a state the cluster
// has moved past: a restarted broker replays its log from an old snapshot,
// and one that was down has not seen what was committed meanwhile (a
// topic deleted, a replica moved away). Nothing may start or stop
// replicas, or tell clients about topics, from it. It stays false while
// the controller group has no quorum; once true it stays true.
func (sm *StateMachine) CaughtUp() bool { return sm.caughtUp.Load() }

// WhenCaughtUp returns a channel closed once CaughtUp is true.
func (sm *StateMachine) WhenCaughtUp() <-chan struct{} { return sm.caughtUpCh }

// MarkCaughtUp records that an entry this broker proposed since it started
// has been applied here. The controller actor calls it; tests of other
// packages call it on a state they build by hand.
func (sm *StateMachine) MarkCaughtUp() {
	if !sm.caughtUp.Swap(true) {
		close(sm.caughtUpCh)
		sm.log.Info().Uint64("applied", sm.View().Applied).Msg("controller state caught up")
	}
}

// Apply applies one committed entry.
func (sm *StateMachine) Apply(index, term uint64, data []byte) {
	cur := sm.view.Load()
	next := *cur
	next.Applied, next.Term = index, term
	if data != nil {
		cmd, err := DecodeCommand(data)
		if err != nil {
			// Apply never fails: an entry this version cannot read is
			// skipped on every replica alike, loudly.
			sm.log.Error().Err(err).Uint64("index", index).Msg("skipping unreadable controller entry")
		} else {
			sm.applyCommand(&next, cur, index, cmd)
		}
	}
	sm.settle(&next, index)
	sm.view.Store(&next)
}

func (sm *StateMachine) applyCommand(next, cur *State, index uint64, cmd *Command) {
	switch {
	case cmd.InitCluster != nil:
		if cur.ClusterID == "" && cmd.InitCluster.ClusterID != "" {
			next.ClusterID = cmd.InitCluster.ClusterID
			sm.log.Info().Str("cluster_id", next.ClusterID).Uint64("index", index).Msg("cluster initialised")
		}
	case cmd.RegisterBroker != nil:
		r := cmd.RegisterBroker
		if cur.IsRemoved(r.NodeID) {
			// A removed broker may still propose before it stops.
			return
		}
		old, ok := cur.Brokers[r.NodeID]
		if ok && old.KafkaAddr == r.KafkaAddr && old.RaftAddr == r.RaftAddr && old.Level == r.Level {
			return
		}
		next.Brokers = maps.Clone(cur.Brokers)
		next.Brokers[r.NodeID] = Broker{NodeID: r.NodeID, KafkaAddr: r.KafkaAddr, RaftAddr: r.RaftAddr, RegisteredAt: index, Level: r.Level}
		sm.log.Info().Uint64("node_id", r.NodeID).Str("kafka_addr", r.KafkaAddr).Int("command_level", r.Level).Uint64("index", index).Msg("broker registered")
		if r.Level < cur.ClusterLevel {
			// ClusterLevel never falls: the other brokers keep the rules
			// of their level, which this one does not have.
			sm.log.Error().Uint64("node_id", r.NodeID).Int("command_level", r.Level).Int("cluster_level", cur.ClusterLevel).Uint64("index", index).
				Msg("broker registered a command level below the cluster's: a downgrade after every member upgraded is not supported; upgrade it again")
		}
	case cmd.CreateTopic != nil:
		c := cmd.CreateTopic
		if _, taken := cur.Topics[c.Name]; taken || len(c.Replicas) == 0 {
			return
		}
		next.NextGroup = max(cur.NextGroup, firstPartitionGroup)
		t := &Topic{Name: c.Name, ID: c.ID, Configs: c.Configs, CreatedAt: index, Creating: c.Creating}
		for i, replicas := range c.Replicas {
			t.Partitions = append(t.Partitions, Partition{Index: int32(i), Group: next.NextGroup, Replicas: replicas, Founders: replicas})
			next.NextGroup++
		}
		next.Topics = maps.Clone(cur.Topics)
		if next.Topics == nil {
			next.Topics = map[string]*Topic{}
		}
		next.Topics[c.Name] = t
		next.reindexTopics(cur, c.Name)
		sm.log.Info().Str("topic", c.Name).Str("topic_id", c.ID.String()).Int("partitions", len(c.Replicas)).Uint64("index", index).Msg("topic created")
	case cmd.TopicLed != nil:
		t := cur.TopicByID(cmd.TopicLed.ID)
		if t == nil || !t.Creating {
			return
		}
		nt := *t
		nt.Creating = false
		next.Topics = maps.Clone(cur.Topics)
		next.Topics[t.Name] = &nt
		next.reindexTopics(cur, t.Name)
		sm.log.Info().Str("topic", t.Name).Str("topic_id", t.ID.String()).Uint64("index", index).Msg("topic creation finished: every partition had a leader")
	case cmd.AddPartitions != nil:
		sm.applyAddPartitions(next, cur, index, cmd.AddPartitions)
	case cmd.AlterTopicConfigs != nil:
		sm.applyAlterTopicConfigs(next, cur, index, cmd.AlterTopicConfigs)
	case cmd.DeleteTopic != nil:
		t := cur.TopicByID(cmd.DeleteTopic.ID)
		if t == nil {
			return
		}
		next.Topics = maps.Clone(cur.Topics)
		delete(next.Topics, t.Name)
		next.reindexTopics(cur, t.Name)
		sm.log.Info().Str("topic", t.Name).Str("topic_id", t.ID.String()).Uint64("index", index).Msg("topic deleted")
	case cmd.RemovalRequest != nil:
		sm.applyRemovalRequest(next, cur, index, cmd.RemovalRequest)
	case cmd.RemoveBroker != nil:
		sm.applyRemoveBroker(next, cur, index, cmd.RemoveBroker)
	case cmd.Reassign != nil:
		sm.applyReassign(next, cur, index, cmd.Reassign)
	case cmd.CompleteReassignment != nil:
		sm.applyComplete(next, cur, index, cmd.CompleteReassignment)
	case cmd.AllocatePIDs != nil:
		a := cmd.AllocatePIDs
		if a.Count <= 0 {
			return
		}
		next.PIDBlocks = maps.Clone(cur.PIDBlocks)
		if next.PIDBlocks == nil {
			next.PIDBlocks = map[uint64]PIDBlock{}
		}
		next.PIDBlocks[a.NodeID] = PIDBlock{Start: cur.NextPID, Count: a.Count, At: index}
		next.NextPID = cur.NextPID + a.Count
	case cmd.SetConfig != nil:
		c := cmd.SetConfig
		if cur.Configs[c.Key] == c.Value {
			return
		}
		next.Configs = maps.Clone(cur.Configs)
		if next.Configs == nil {
			next.Configs = map[string]string{}
		}
		if c.Value == "" {
			delete(next.Configs, c.Key)
		} else {
			next.Configs[c.Key] = c.Value
		}
	}
}

// Snapshot returns the applied state as JSON.
func (sm *StateMachine) Snapshot() ([]byte, error) {
	b, err := json.Marshal(sm.view.Load())
	if err != nil {
		return nil, fmt.Errorf("encode controller snapshot: %w", err)
	}
	return b, nil
}

// Restore replaces the state with a snapshot's.
func (sm *StateMachine) Restore(snap *pb.Snapshot) error {
	var s State
	if len(snap.GetData()) == 0 {
		sm.view.Store(&State{Brokers: map[uint64]Broker{}})
		return nil
	}
	if err := json.Unmarshal(snap.GetData(), &s); err != nil {
		return fmt.Errorf("decode controller snapshot at %d: %w", snap.GetMetadata().GetIndex(), err)
	}
	if s.Brokers == nil {
		s.Brokers = map[uint64]Broker{}
	}
	s.reindex()
	sm.view.Store(&s)
	return nil
}

// reindex builds the indexes of Topics from scratch.
func (s *State) reindex() {
	s.byID, s.moving = nil, nil
	if len(s.Topics) == 0 {
		return
	}
	s.byID = make(map[TopicID]*Topic, len(s.Topics))
	for _, t := range s.Topics {
		s.byID[t.ID] = t
		s.moving = appendMoving(s.moving, t)
	}
	sortMoves(s.moving)
}

// reindexTopics updates the indexes after the topics named changed from
// cur's (created, replaced or deleted), walking only their partitions:
// apply changes one topic at a time, and many thousands may stay alike.
func (s *State) reindexTopics(cur *State, names ...string) {
	if cur.byID == nil && len(cur.Topics) > 0 {
		s.reindex() // cur was built by hand, without indexes
		return
	}
	s.byID = maps.Clone(cur.byID)
	if s.byID == nil {
		s.byID = map[TopicID]*Topic{}
	}
	s.moving = slices.DeleteFunc(slices.Clone(cur.moving), func(ref PartitionRef) bool { return slices.Contains(names, ref.Topic.Name) })
	for _, name := range names {
		if t := cur.Topics[name]; t != nil {
			delete(s.byID, t.ID)
		}
		if t := s.Topics[name]; t != nil {
			s.byID[t.ID] = t
			s.moving = appendMoving(s.moving, t)
		}
	}
	sortMoves(s.moving)
}
