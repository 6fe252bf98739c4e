package controller

import (
	"cmp"
	"maps"
	"slices"
)

// Which reassignments run at once. Catching up a new replica reads and
// sends its whole log, so a bound keeps moves from starving client traffic
// on the brokers they touch; the others wait their turn, carried out as
// the assignment they had before (Partition.InEffect). Every broker
// decides it alike from the applied state.
//
// Brokers before CommandLevel 2 run the MaxActiveMoves started first across
// the cluster: a few moves stuck on a dead target broker then hold every
// later one. From ClusterLevel 2 the bound is per broker a move adds a
// replica to (MaxMovesPerBroker): moves towards one broker never hold moves
// that do not add to it, and a move that adds none (a shrink, a
// cancellation) needs no turn. Apply marks a move
// Running when it gets its turn, oldest first (MoveSeq), and a running move
// is never held again until it ends: holding it would stop, and delete,
// replicas that may be voters of its raft group by then. The cluster
// switches rules at the one entry that raises ClusterLevel to 2; until
// then the brokers already upgraded compute the older rule, as those not
// yet upgraded do. The moves the older rule ran keep running across the
// switch: the first MaxActiveMoves moves always fit, as MaxMovesPerBroker
// is no smaller.

// MaxActiveMoves is how many reassignments run at once across the cluster
// below ClusterLevel 2 (movesPerBrokerLevel).
const MaxActiveMoves = 4

// MaxMovesPerBroker is, from ClusterLevel 2, how many running
// reassignments may add a replica to one broker: as many as could before,
// when all the cluster's moves could go to one broker. It is at least
// MaxActiveMoves (see above).
const MaxMovesPerBroker = 4

// movesPerBrokerLevel is the ClusterLevel from which MaxMovesPerBroker
// bounds the moves instead of MaxActiveMoves.
const movesPerBrokerLevel = 2

// ActiveMoves returns the raft group ids of the reassignments that may run
// now: from ClusterLevel 2 those marked Running, before it the
// MaxActiveMoves started first.
func (s *State) ActiveMoves() map[uint64]bool {
	if s.ClusterLevel < movesPerBrokerLevel {
		return s.firstMoves()
	}
	out := map[uint64]bool{}
	for _, t := range s.Topics {
		for _, p := range t.Partitions {
			if p.Reassigning() && p.Running {
				out[p.Group] = true
			}
		}
	}
	return out
}

// firstMoves is the rule of the brokers before CommandLevel 2: the
// MaxActiveMoves reassignments started first run.
func (s *State) firstMoves() map[uint64]bool {
	moves := s.movesInOrder()
	out := make(map[uint64]bool, MaxActiveMoves)
	for _, ref := range moves[:min(len(moves), MaxActiveMoves)] {
		out[ref.Partition.Group] = true
	}
	return out
}

// movesInOrder returns every partition with a reassignment under way, in
// the order the reassignments started.
func (s *State) movesInOrder() []PartitionRef {
	var moves []PartitionRef
	for _, t := range s.Topics {
		for _, p := range t.Partitions {
			if p.Reassigning() {
				moves = append(moves, PartitionRef{Topic: t, Partition: p})
			}
		}
	}
	slices.SortFunc(moves, func(a, b PartitionRef) int { return cmp.Compare(a.Partition.MoveSeq, b.Partition.MoveSeq) })
	return moves
}

// InEffect is the assignment a partition's brokers carry out, given the
// moves that may run (ActiveMoves): p itself, or, while its reassignment
// waits its turn, the replicas it had before.
func (p Partition) InEffect(active map[uint64]bool) Partition {
	if p.Reassigning() && !active[p.Group] {
		p.Replicas, p.Adding, p.Removing, p.Origin = p.Original(), nil, nil, nil
	}
	return p
}

// Listed reports whether Kafka lists the partition's reassignment
// (ListPartitionReassignments), and so can cancel it: one still adding
// replicas. Kafka ends a reassignment that adds none (a cancellation, a
// shrink, a return to the replicas it had) in the record that starts it,
// the replicas leaving dropped at once; here raft still takes them out of
// the partition's group before it completes.
func (p Partition) Listed() bool { return len(p.Adding) > 0 }

// memberLevel returns the lowest CommandLevel the members registered, and
// false while some member has not registered (or, before the membership is
// known, no broker has).
func (s *State) memberLevel() (int, bool) {
	ids := append(slices.Clone(s.Voters), s.Learners...)
	if len(ids) == 0 {
		ids = slices.Collect(maps.Keys(s.Brokers))
	}
	if len(ids) == 0 {
		return 0, false
	}
	level := CommandLevel
	for _, id := range ids {
		b, ok := s.Brokers[id]
		if !ok {
			return 0, false
		}
		level = min(level, b.Level)
	}
	return level, true
}

// settle brings what apply derives from the state up to date after an
// entry: it raises ClusterLevel once every member registered a higher
// level, and gives the moves waiting their turn the turns that are free.
func (sm *StateMachine) settle(next *State, index uint64) {
	if level, ok := next.memberLevel(); ok && level > next.ClusterLevel {
		sm.log.Info().Int("from", next.ClusterLevel).Int("to", level).Uint64("index", index).Msg("cluster command level raised: every member registered it")
		next.ClusterLevel = level
	}
	if next.ClusterLevel < movesPerBrokerLevel {
		return
	}
	moves := next.movesInOrder()
	adding := map[uint64]int{}
	waiting := false
	for _, ref := range moves {
		if ref.Partition.Running {
			for _, id := range ref.Partition.Adding {
				adding[id]++
			}
		} else {
			waiting = true
		}
	}
	if !waiting {
		return
	}
	start := map[uint64]bool{}
	for _, ref := range moves {
		p := ref.Partition
		if p.Running || slices.ContainsFunc(p.Adding, func(id uint64) bool { return adding[id] >= MaxMovesPerBroker }) {
			continue
		}
		for _, id := range p.Adding {
			adding[id]++
		}
		start[p.Group] = true
		sm.log.Info().Str("topic", ref.Topic.Name).Int32("partition", p.Index).Uints64("adding", p.Adding).
			Uint64("index", index).Msg("partition reassignment has its turn")
	}
	markRunning(next, start)
}

// markRunning marks the reassignments of the given groups Running.
func markRunning(next *State, groups map[uint64]bool) {
	if len(groups) == 0 {
		return
	}
	topics := maps.Clone(next.Topics)
	for name, t := range next.Topics {
		var nt *Topic
		for i, p := range t.Partitions {
			if !groups[p.Group] || p.Running {
				continue
			}
			if nt == nil {
				c := *t
				c.Partitions = slices.Clone(t.Partitions)
				nt = &c
			}
			nt.Partitions[i].Running = true
		}
		if nt != nil {
			topics[name] = nt
		}
	}
	next.Topics = topics
	next.byID = indexTopics(topics)
}
