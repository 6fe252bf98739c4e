package group

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf16"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/actors/storage"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// PartitionFor is the offsets-topic partition of a group: Kafka's
// abs(groupId.hashCode()) % partitions, Java's String.hashCode over UTF-16,
// so that a group maps where Kafka would map it.
func PartitionFor(group string, partitions int32) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(u)
	}
	if h == -1<<31 {
		h = 0 // Kafka's Utils.abs
	} else if h < 0 {
		h = -h
	}
	return h % partitions
}

// Coordinator is an offsets-topic partition replica hosted on this broker.
type Coordinator struct {
	Partition int32
	Group     uint64     // its raft group id
	PID       *actor.PID // send it Call, List and ViewGroups
	Machine   *Machine   // read its Leadership
}

// Coordinators is the set of offsets-topic replicas this broker hosts, by
// partition.
type Coordinators = partition.Registry[int32, *Coordinator]

// NewCoordinators returns an empty set.
func NewCoordinators() *Coordinators { return partition.NewRegistry[int32, *Coordinator]() }

// ManagerOptions configure the coordinator manager.
type ManagerOptions struct {
	NodeID     uint64
	Sys        *actors.System
	Controller *controller.StateMachine
	Storage    *actor.PID
	Transport  raftactor.Transport
	Router     *netactor.Router
	Ticker     *raftactor.Ticker
	Board      *raftactor.StatusBoard
	Recovered  map[uint64]*storage.GroupState
	// Raft is the partition groups' tuning; offsets partitions keep their
	// groups in memory and snapshot them, so they take their own
	// snapshot bounds below.
	Raft     partition.RaftSettings
	Tick     time.Duration
	Settings Settings
	// Leaders and Broadcast are the partition manager's: this broker's
	// leaderships of offsets partitions are disseminated with the others,
	// so FindCoordinator is right on every broker.
	Leaders   *partition.Leaders
	Broadcast func(ctx actor.SenderContext, infos []netactor.LeaderInfo)
	// ControllerActor is the local controller actor: offsets-partition
	// leaders tell it when a reassignment reached its target.
	ControllerActor *actor.PID
	Log             zerolog.Logger
}

// NewManager returns the producer of the coordinator manager actor (kind
// "groups", name "groups"): on every other tick it compares the
// controller's assignment of the offsets topic with the replicas it runs
// and starts or stops offsets-partition raft groups, as its children, to
// match.
func NewManager(o ManagerOptions, coordinators *Coordinators) actor.Producer {
	return func() actor.Actor {
		return &manager{o: o, coordinators: coordinators, assigned: map[int32]controller.Partition{}, forgotten: map[uint64]bool{},
			stopping: map[string]uint64{}, dead: map[uint64]bool{}}
	}
}

type manager struct {
	o            ManagerOptions
	coordinators *Coordinators
	seen         uint64
	ticks        uint64
	// assigned is the assignment each running replica was last given;
	// forgotten the groups whose replica was stopped since the broker
	// started (what the WAL recovered for them is gone).
	assigned  map[int32]controller.Partition
	forgotten map[uint64]bool
	// topics are the topic ids by name as of the last reconcile, to tell
	// the offsets partitions which topics were deleted since.
	topics map[string]controller.TopicID
	// stopping are the replicas stopped and not yet terminated, by PID id:
	// their group, which the WAL forgets and which may start here again
	// only once they are gone (the actor name is theirs until then, and a
	// write of theirs after the tombstone would count as the new one's).
	stopping map[string]uint64
	// dead are the groups whose actor its supervisor stopped (died): they
	// are not started again before the broker restarts.
	dead map[uint64]bool
	// closing is set when the manager stops, and its replicas with it.
	closing bool
}

// leadersEveryTicks paces the broadcast of this broker's coordinator
// leaderships, as the partition manager paces its own.
const leadersEveryTicks = 10

func (mg *manager) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		mg.seen = 0
		mg.reconcile(ctx)
	case *actor.Terminated:
		if group, ok := mg.stopping[m.Who.Id]; ok {
			delete(mg.stopping, m.Who.Id)
			ctx.Send(mg.o.Storage, &storage.Forget{Group: group})
		} else {
			mg.died(m.Who)
		}
	case *raftactor.Tick:
		mg.ticks++
		if mg.ticks%2 == 0 {
			mg.reconcile(ctx)
		}
		if mg.ticks%leadersEveryTicks == 0 {
			mg.broadcastLeaders(ctx)
		}
	case *actor.Stopping:
		mg.closing = true
		for _, c := range mg.coordinators.All() {
			mg.o.Ticker.Unsubscribe(c.PID)
			mg.o.Router.Remove(c.Group)
		}
	case *actor.Stopped:
		mg.coordinators.Publish(map[int32]*Coordinator{})
	}
}

func (mg *manager) reconcile(ctx actor.Context) {
	if !mg.o.Controller.CaughtUp() {
		return // a state the cluster may have moved past (partition's manager)
	}
	view := mg.o.Controller.View()
	if view.Applied == mg.seen && mg.seen != 0 {
		return
	}
	mg.seen = view.Applied
	gone := mg.deletedTopics(view)
	cur := mg.coordinators.All()
	next := make(map[int32]*Coordinator, len(cur))
	if t := view.Topics[controller.OffsetsTopic]; t != nil {
		active := view.ActiveMoves()
		for _, p := range t.Partitions {
			p = p.InEffect(active) // a move waiting its turn is not carried out yet
			if !slices.Contains(p.Replicas, mg.o.NodeID) {
				continue
			}
			if c := cur[p.Index]; c != nil && c.Group == p.Group {
				next[p.Index] = c
				if !partition.AssignmentEqual(mg.assigned[p.Index], p) {
					mg.assigned[p.Index] = p
					ctx.Send(c.PID, &partition.SetAssignment{Replicas: p.Replicas, Adding: p.Adding, Removing: p.Removing})
				}
				continue
			}
			if mg.dead[p.Group] {
				continue // shown halted until the broker restarts (died)
			}
			if mg.isStopping(p.Group) {
				// Moved back before the old replica is gone: start it once
				// it has stopped.
				mg.seen = 0
				continue
			}
			c, err := mg.start(ctx, p)
			if err != nil {
				mg.o.Log.Error().Err(err).Str("topic", controller.OffsetsTopic).Int32("partition", p.Index).Msg("cannot start offsets partition replica")
				continue
			}
			next[p.Index] = c
			mg.assigned[p.Index] = p
		}
	}
	if len(gone) > 0 {
		for _, c := range next {
			ctx.Send(c.PID, &topicsDeleted{names: gone})
		}
	}
	// Unpublished first, so that connections stop finding the
	// coordinators being stopped before their poison pills are queued.
	mg.coordinators.Publish(next)
	for idx, c := range cur {
		if next[idx] != c {
			mg.o.Ticker.Unsubscribe(c.PID)
			mg.o.Router.Remove(c.Group)
			// Out of the router, it hears nothing more: what it last saw
			// of the group's leader replaces this broker's own leadership
			// (Leaders.Left), which FindCoordinator here would otherwise
			// answer until the new leader's broadcast.
			mg.o.Leaders.Left(c.Group, mg.o.NodeID, groupLives(view, c), mg.o.Board.Get(c.Group))
			mg.stopping[c.PID.Id] = c.Group
			ctx.Watch(c.PID)
			ctx.Poison(c.PID) // group calls already queued are answered, not lost
			mg.forgotten[c.Group] = true
			if next[idx] == nil {
				delete(mg.assigned, idx)
			}
			mg.o.Log.Info().Str("topic", controller.OffsetsTopic).Int32("partition", idx).Msg("offsets partition replica stopped: no longer assigned here")
		}
	}
}

// groupLives reports whether c's offsets partition is still in view,
// under the same group: c moved away from this broker.
func groupLives(view *controller.State, c *Coordinator) bool {
	t := view.Topics[controller.OffsetsTopic]
	return t != nil && int(c.Partition) < len(t.Partitions) && t.Partitions[c.Partition].Group == c.Group
}

// deletedTopics returns the topics deleted (or deleted and created again)
// since the last call, and remembers view's. The first call only
// remembers: a deletion this broker did not see happen (it was down) is
// not acted on here, and the topic's offsets stay until their group
// expires them. A topic merely missing from a lagging view must never
// be taken for deleted.
func (mg *manager) deletedTopics(view *controller.State) []string {
	ids := make(map[string]controller.TopicID, len(view.Topics))
	for name, t := range view.Topics {
		if name != controller.OffsetsTopic {
			ids[name] = t.ID
		}
	}
	var gone []string
	if mg.topics != nil {
		for name, id := range mg.topics {
			if now, ok := ids[name]; !ok || now != id {
				gone = append(gone, name)
			}
		}
	}
	mg.topics = ids
	slices.Sort(gone)
	return gone
}

func (mg *manager) isStopping(group uint64) bool {
	for _, g := range mg.stopping {
		if g == group {
			return true
		}
	}
	return false
}

func (mg *manager) start(ctx actor.Context, p controller.Partition) (*Coordinator, error) {
	name := controller.OffsetsTopic + "/" + strconv.Itoa(int(p.Index))
	log := mg.o.Log.With().Uint64("raft_group", p.Group).Str("topic", controller.OffsetsTopic).Int32("partition", p.Index).Logger()
	m := NewMachine(MachineOptions{
		Partition:  p.Index,
		Replicas:   p.Replicas,
		Adding:     p.Adding,
		Removing:   p.Removing,
		Group:      p.Group,
		Controller: mg.o.ControllerActor,
		Tick:       mg.o.Tick,
		Settings:   mg.o.Settings,
		Topics: func(topic string) int32 {
			if t := mg.o.Controller.View().Topics[topic]; t != nil {
				return int32(len(t.Partitions))
			}
			return 0
		},
		MaxEntryBytes:   mg.o.Raft.MaxEntryBytes,
		ReplicaLagTicks: mg.o.Raft.ReplicaLagTicks,
		Announce:        partition.Announcer(mg.o.Leaders, mg.o.Broadcast),
		Log:             log,
	})
	cfg := mg.o.Raft.Config(p, name, mg.o.NodeID)
	// The state is every group of the partition: snapshot it every few
	// thousand writes and keep a short tail for followers a little behind.
	cfg.SnapshotEntries, cfg.SnapshotBytes, cfg.CatchUpEntries, cfg.CatchUpBytes = 4096, 16<<20, 0, 0
	cfg.StateMachine, cfg.Storage, cfg.Transport = m, mg.o.Storage, mg.o.Transport
	cfg.Board, cfg.Log = mg.o.Board, log
	if !mg.forgotten[p.Group] {
		cfg.Recovered = mg.o.Recovered[p.Group]
	}
	producer, err := raftactor.NewProducer(cfg)
	if err != nil {
		return nil, err
	}
	pid, err := ctx.SpawnNamed(mg.o.Sys.Props("raft", "raft/"+name, producer), "raft-"+strconv.FormatUint(p.Group, 10))
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", name, err)
	}
	mg.o.Router.Set(p.Group, pid)
	mg.o.Ticker.Subscribe(pid)
	log.Info().Uints64("replicas", p.Replicas).Bool("bootstrap", cfg.Bootstrap).Msg("offsets partition replica started")
	return &Coordinator{Partition: p.Index, Group: p.Group, PID: pid, Machine: m}, nil
}

// broadcastLeaders tells every peer, and this broker's own board, which
// offsets partitions this broker leads.
func (mg *manager) broadcastLeaders(ctx actor.Context) {
	if infos := Led(mg.coordinators, mg.o.NodeID); len(infos) > 0 {
		partition.Announcer(mg.o.Leaders, mg.o.Broadcast)(ctx, infos)
	}
}

// Led returns the offsets partitions of coordinators that self leads now,
// with their term and ISR, in a slice of its own (partition.Led). Safe for
// concurrent use.
func Led(coordinators *Coordinators, self uint64) []netactor.LeaderInfo {
	var infos []netactor.LeaderInfo
	for _, c := range coordinators.All() {
		if l := c.Machine.Leadership(); l.Leader {
			infos = append(infos, netactor.LeaderInfo{Group: c.Group, Leader: self, Term: l.Term, ISR: l.ISR})
		}
	}
	return infos
}

// died handles the end of an offsets replica's actor that nobody stopped:
// its supervisor gave up on it after repeated panics. It shows as halted,
// so that /healthz and flotilla_raft_role tell the operator to restart the
// broker. It leaves the registry, so that group requests are answered
// NOT_COORDINATOR (and clients look for the coordinator again) rather than
// sent to a dead actor, and it is not started again into the same panics
// before the broker restarts.
func (mg *manager) died(pid *actor.PID) {
	if mg.closing {
		return
	}
	cur := mg.coordinators.All()
	for idx, c := range cur {
		if c.PID.Id == pid.Id {
			next := maps.Clone(cur)
			delete(next, idx)
			mg.coordinators.Publish(next)
			mg.o.Ticker.Unsubscribe(c.PID)
			mg.o.Router.Remove(c.Group)
			delete(mg.assigned, idx)
			mg.dead[c.Group] = true
			mg.o.Board.PublishStopped(c.Group, controller.OffsetsTopic+"/"+strconv.Itoa(int(c.Partition)))
			mg.o.Log.Error().Uint64("raft_group", c.Group).Str("topic", controller.OffsetsTopic).Int32("partition", c.Partition).
				Msg("offsets partition replica stopped after repeated failures; restart the broker")
			return
		}
	}
}
