package partition

import (
	"slices"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3/tracker"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// Leaders is what this broker knows of every partition's leadership, from
// its own replicas and from what its peers say they lead (dissemination,
// not the controller log): Metadata answers from it for partitions this
// broker does not host or does not lead. Per group the highest term wins.
// It is the raft transport's netactor.LeaderBoard. Safe for concurrent use.
type Leaders struct {
	m sync.Map // group → netactor.LeaderInfo
	// noting serialises Note and Left: the raft transport's readers, one
	// per peer, the managers and the replicas' announcements (Announcer)
	// note at once, and a group's lower term must not overwrite a higher
	// one noted in between.
	noting sync.Mutex
	// complete holds the peers whose whole set of leaderships arrived
	// (peer id → struct{}); completed has a value while one arrived that
	// nobody has waited for yet (Completed).
	complete  sync.Map
	completed chan struct{}
}

// NewLeaders returns an empty board.
func NewLeaders() *Leaders { return &Leaders{completed: make(chan struct{}, 1)} }

var _ netactor.LeaderBoard = (*Leaders)(nil)

// PeerLeads implements netactor.LeaderBoard: it notes infos, and once
// complete, that it knows everything peer led when it connected.
func (l *Leaders) PeerLeads(peer uint64, infos []netactor.LeaderInfo, complete bool) {
	l.Note(infos)
	if !complete {
		return
	}
	if _, known := l.complete.LoadOrStore(peer, struct{}{}); !known {
		select {
		case l.completed <- struct{}{}:
		default:
		}
	}
}

// Complete reports whether the whole set of peer's leaderships has
// arrived since this broker started.
func (l *Leaders) Complete(peer uint64) bool {
	_, ok := l.complete.Load(peer)
	return ok
}

// Completed returns a channel that has a value when a peer's whole set
// has arrived since the last receive from it.
func (l *Leaders) Completed() <-chan struct{} { return l.completed }

// Get returns what is known of group's leadership.
func (l *Leaders) Get(group uint64) (netactor.LeaderInfo, bool) {
	v, ok := l.m.Load(group)
	if !ok {
		return netactor.LeaderInfo{}, false
	}
	return v.(netactor.LeaderInfo), true
}

// Note records infos, each unless a higher term is already known (an equal
// term replaces: the ISR changes within a term).
func (l *Leaders) Note(infos []netactor.LeaderInfo) {
	l.noting.Lock()
	defer l.noting.Unlock()
	for _, li := range infos {
		if cur, ok := l.Get(li.Group); ok && cur.Term > li.Term {
			continue
		}
		l.m.Store(li.Group, li)
	}
}

// Left updates what is known of group's leadership as this broker's
// replica of it, self's, stops: the replica moved away (lives true), or
// its topic was deleted. A deleted topic's group is dropped now rather
// than at the next Prune (group ids are never reused). A group that lives
// on elsewhere keeps its leader's broadcast, which still holds: dropping
// it answered the partition LEADER_NOT_AVAILABLE here until the leader's
// next broadcast, while the leader never changed.
//
// This broker's own leadership, noted while it led, does not hold: it
// leads no group it has no replica of. A replica that led handed its
// leadership over before its group let it go (raftactor.Reconciler), so
// last, its raft status as it stops (nil for none), knows the successor:
// that leader, at its term, replaces this broker's, with the ISR last
// broadcast and the successor in it, as a broker that hosts the group
// answers before the new leader's first broadcast (a clean election keeps
// the ISR). Dropping it answered the partition LEADER_NOT_AVAILABLE here
// until that broadcast. A status that knows no other leader, or none of a
// later term than the broadcast, leaves nothing but the peers' news.
//
// Call it before the replica's actor stops, when it is out of the raft
// router and hears nothing more: its status leaves the board as it stops,
// and Metadata here then answers from this alone.
func (l *Leaders) Left(group, self uint64, lives bool, last *raftactor.GroupStatus) {
	l.noting.Lock()
	defer l.noting.Unlock()
	li, ok := l.Get(group)
	if !lives {
		l.m.Delete(group)
		return
	}
	if leader, term := lastLeader(last); leader != 0 && leader != self && (!ok || term > li.Term) {
		var isr []uint64
		if ok {
			isr = li.ISRWith(leader)
		}
		l.m.Store(group, netactor.LeaderInfo{Group: group, Leader: leader, Term: term, ISR: isr})
		return
	}
	if ok && li.Leader == self {
		l.m.Delete(group)
	}
}

// lastLeader is the leader a replica's status names, and its term
// (raftactor.GroupStatus.Leading); 0 for none.
func lastLeader(st *raftactor.GroupStatus) (leader, term uint64) {
	if st == nil {
		return 0, 0
	}
	return st.Leading()
}

// Prune drops the groups that view shows deleted: below its NextGroup
// (group ids are handed out in order and never reused) and in none of its
// topics. Every broker keeps what its peers broadcast, also of partitions
// it never hosted, and a broadcast in flight can bring a deleted group
// back after Left; without this the board would grow with every topic
// deleted. A group at or above NextGroup is newer than view: a peer's news
// of a topic this broker has not applied yet, kept; and so is the
// controller group's.
func (l *Leaders) Prune(view *controller.State) {
	live := make(map[uint64]bool)
	for _, t := range view.Topics {
		for _, p := range t.Partitions {
			live[p.Group] = true
		}
	}
	l.m.Range(func(k, _ any) bool {
		if g := k.(uint64); g != controller.ControllerGroup && g < view.NextGroup && !live[g] {
			l.m.Delete(g)
		}
		return true
	})
}

// leadersEveryTicks paces the broadcast of this broker's leaderships
// (10 ticks: 500 ms at 50 ms). A replica that begins to serve as leader
// tells every broker at once (Announcer); the broadcast brings the ISR
// changes since, and repairs what a lost connection dropped.
const leadersEveryTicks = 10

// Announcer returns what tells this broker's board of leaderships (leaders)
// and every peer (broadcast, nil for none) of leaderships of this broker:
// what the managers broadcast every leadersEveryTicks, and what a replica
// that has just begun to serve as leader announces at once, from its own
// actor. Each peer's sender merges what it is told into its next frame,
// so that many leaders ready at once (a topic's new partitions, the
// partitions of a broker that died) travel in a few frames. It is safe
// for concurrent use.
func Announcer(leaders *Leaders, broadcast func(actor.SenderContext, []netactor.LeaderInfo)) func(actor.SenderContext, []netactor.LeaderInfo) {
	return func(ctx actor.SenderContext, infos []netactor.LeaderInfo) {
		leaders.Note(infos)
		if broadcast != nil {
			broadcast(ctx, infos)
		}
	}
}

// PreferLeader hands a group's leadership to its preferred replica (the
// assignment's first) once that replica has caught up, so that leaders
// spread as the controller spread the assignments instead of piling up
// where elections happened to land. Call it on the ready leader. Raft
// refuses proposals while the transfer runs (an election timeout at most):
// a partition holds produce requests until it knows the new leader, then
// answers NOT_LEADER_OR_FOLLOWER naming it (awaitleader.go); an offsets
// partition answers NOT_COORDINATOR, and clients look it up again.
func PreferLeader(h *raftactor.Handle, replicas []uint64, log zerolog.Logger) {
	if len(replicas) == 0 || replicas[0] == h.NodeID() {
		return
	}
	preferred := replicas[0]
	if !slices.Contains(h.ConfState().GetVoters(), preferred) {
		return // a replica being added: raft would ignore the transfer until it votes
	}
	st := h.Status()
	pr, ok := st.Progress[preferred]
	// Not RecentActive: CheckQuorum clears it every election timeout, and a
	// check that happens to run just after would never see it.
	if !ok || pr.State != tracker.StateReplicate || pr.Match < st.HardState.GetCommit() {
		return
	}
	// Not to a replica that announced it is stopping: it would lead only
	// until it stopped (raftactor.Config.Stopping).
	if h.TransferLeader(preferred) {
		log.Info().Uint64("node_id", preferred).Uint64("term", st.HardState.GetTerm()).Msg("transferring leadership to the preferred replica")
	}
}

// PreferredLeaderEveryTicks paces the preferred-leader check (20 ticks: 1 s
// at 50 ms).
const PreferredLeaderEveryTicks = 20
