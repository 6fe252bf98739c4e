package controller

import (
	"cmp"
	"maps"
	"slices"
	"strconv"

	"github.com/rs/zerolog"
)

// Which reassignments run at once. Catching up a new replica reads and
// sends its whole log, so a bound keeps moves from starving client traffic
// on the brokers they touch; the others wait their turn, carried out as
// the assignment they had before (Partition.InEffect). Every broker
// decides it alike from the applied state, in the same order: the order
// the moves started (MoveSeq), then by group.
//
// Brokers before CommandLevel 2 run the MaxActiveMoves started first across
// the cluster: a few moves stuck on a dead target broker then hold every
// later one. From ClusterLevel 2 the bound is per broker a move adds a
// replica to (MaxMovesPerBroker): moves towards one broker never hold moves
// that do not add to it, and a move that adds none (a shrink, a
// cancellation) needs no turn. Apply marks a move Running when it gets its
// turn, and a running move that started a replica beyond its original ones
// is never held again until it ends: holding it would stop, and delete,
// replicas that may be voters of its raft group by then. Such a move given
// a new target keeps its turn even where that target adds a replica to a
// broker that has MaxMovesPerBroker running moves already: the one way past
// the bound (a cancel and a new ask included), at one extra catch-up per
// retarget, which an operator asks for. Any other move given a new target
// waits its turn again, in its place (its MoveSeq): a
// shrink that grows, and a waiting move cancelled, which ends at once, as
// its replicas beyond the original ones never started.
//
// The cluster switches rules at the one entry that raises ClusterLevel to
// 2; until then the brokers already upgraded compute the older rule, as
// those not yet upgraded do. The moves the older rule ran keep running
// across the switch: the first MaxActiveMoves moves always fit, as
// MaxMovesPerBroker is no smaller.

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
	for _, ref := range s.movesInOrder() {
		if ref.Partition.Running {
			out[ref.Partition.Group] = true
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
// the order of their turns: the order they started (MoveSeq), and, for
// moves that started alike (a state written before MoveSeq existed has
// them all at 0), by group, so that every broker orders them alike. The
// caller must not modify it.
func (s *State) movesInOrder() []PartitionRef {
	if s.byID != nil || len(s.Topics) == 0 {
		return s.moving
	}
	var moves []PartitionRef
	for _, t := range s.Topics {
		moves = appendMoving(moves, t)
	}
	sortMoves(moves)
	return moves
}

// appendMoving appends t's partitions being reassigned to moves.
func appendMoving(moves []PartitionRef, t *Topic) []PartitionRef {
	for i := range t.Partitions {
		// By index: a Partition is large, and copying every one of many
		// thousands is most of the walk's cost.
		if p := &t.Partitions[i]; p.Reassigning() {
			moves = append(moves, PartitionRef{Topic: t, Partition: *p})
		}
	}
	return moves
}

// sortMoves sorts moves in the order of their turns (movesInOrder).
func sortMoves(moves []PartitionRef) {
	slices.SortFunc(moves, func(a, b PartitionRef) int {
		return cmp.Or(cmp.Compare(a.Partition.MoveSeq, b.Partition.MoveSeq), cmp.Compare(a.Partition.Group, b.Partition.Group))
	})
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

// members returns the ids whose registered levels make ClusterLevel: the
// controller's voters and learners, or, before the membership is known,
// the registered brokers.
func (s *State) members() []uint64 {
	ids := append(slices.Clone(s.Voters), s.Learners...)
	if len(ids) == 0 {
		ids = slices.Sorted(maps.Keys(s.Brokers))
	}
	return ids
}

// memberLevel returns the lowest CommandLevel the members registered, and
// false while some member has not registered (or, before the membership is
// known, no broker has).
func (s *State) memberLevel() (int, bool) {
	ids := s.members()
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
// It runs after every entry, so it reads only the members and the moves
// under way (movesInOrder), never every partition.
func (sm *StateMachine) settle(next *State, index uint64) {
	if level, ok := next.memberLevel(); ok && level > next.ClusterLevel {
		sm.log.Info().Int("from", next.ClusterLevel).Int("to", level).Uint64("index", index).Msg("cluster command level raised: every member registered it")
		next.ClusterLevel = level
	}
	sm.logHeldBack(next, index)
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

// logHeldBack tells the operator, once each time they change, which
// members keep ClusterLevel below this broker's CommandLevel, and so the
// rules that need it off: those not upgraded yet, or not registered since.
func (sm *StateMachine) logHeldBack(next *State, index uint64) {
	var held []heldMember
	if next.ClusterLevel < CommandLevel {
		for _, id := range next.members() {
			if b, ok := next.Brokers[id]; !ok {
				held = append(held, heldMember{id, -1})
			} else if b.Level < CommandLevel {
				held = append(held, heldMember{id, b.Level})
			}
		}
	}
	if slices.Equal(held, sm.heldBack) {
		return
	}
	sm.heldBack = held
	if len(held) == 0 {
		return
	}
	levels := zerolog.Dict()
	for _, m := range held {
		if m.level < 0 {
			levels.Str(strconv.FormatUint(m.id, 10), "unregistered")
		} else {
			levels.Int(strconv.FormatUint(m.id, 10), m.level)
		}
	}
	sm.log.Info().Int("cluster_level", next.ClusterLevel).Int("command_level", CommandLevel).Dict("held_by", levels).
		Uint64("index", index).Msg("cluster command level held back: these members have not registered this broker's level")
}

// heldMember is a member below CommandLevel: its registered level, -1
// while it has not registered.
type heldMember struct {
	id    uint64
	level int
}

// markRunning marks the reassignments of the given groups Running.
func markRunning(next *State, groups map[uint64]bool) {
	if len(groups) == 0 {
		return
	}
	cur := *next
	next.Topics = maps.Clone(cur.Topics)
	var changed []string
	for _, ref := range cur.movesInOrder() {
		if !groups[ref.Partition.Group] || ref.Partition.Running {
			continue
		}
		name := ref.Topic.Name
		nt := next.Topics[name]
		if !slices.Contains(changed, name) {
			c := *nt
			c.Partitions = slices.Clone(nt.Partitions)
			nt = &c
			next.Topics[name] = nt
			changed = append(changed, name)
		}
		nt.Partitions[ref.Partition.Index].Running = true
	}
	next.reindexTopics(&cur, changed...)
}
