package partition

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/storage"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// RaftSettings are the raft tuning of partition groups.
type RaftSettings struct {
	ElectionTicks       int
	HeartbeatTicks      int
	MaxSizePerMsg       uint64
	MaxInflightMsgs     int
	MaxInflightBytes    uint64 // raftactor.Config.MaxInflightBytes
	MaxUncommittedBytes uint64
	SnapshotEntries     uint64
	SnapshotBytes       uint64
	CatchUpEntries      uint64
	CatchUpBytes        uint64
	// ReplicaLagTicks is replica.lag.time.max.ms in ticks (ISR time rule).
	ReplicaLagTicks uint64
	// MaxEntryBytes is the largest batch the raft transport can carry to
	// the followers (raft.max_frame_bytes less a frame's overhead); 0: no
	// limit. A leader refuses a larger one whatever max.message.bytes
	// says: proposed, it would never replicate, and every later entry of
	// the partition would wait behind it.
	MaxEntryBytes int
	// Stopping reports whether a broker announced that it is stopping:
	// no leadership is handed to it (raftactor.Config.Stopping).
	Stopping func(node uint64) bool
	// Restarts returns how many times a broker was seen to restart: its
	// replicas leave the ISRs until they catch up again
	// (raftactor.Config.Restarts).
	Restarts func(node uint64) uint64
	// Reachable reports whether a frame from a broker arrived lately:
	// reassignments remove unreachable voters first
	// (raftactor.Config.Reachable).
	Reachable func(node uint64) bool
	// Quiet reports whether a broker can follow quiet raft groups
	// (raftactor.Config.Quiet; nil: groups never go quiet).
	Quiet func(node uint64) bool
}

// Config returns the raft config of the replica of a partition-like group
// (a partition or an offsets-topic partition) on node: the replicas the
// partition was created with found the group, as etcd's StartNode; any
// replica added later starts empty and waits for the leader to add it
// (controller.Partition.Bootstraps). The preferred replica, the first of
// the assignment, is the group's raftactor.Config.Preferred: a founding
// group starts on it, the leader PreferLeader would otherwise hand the
// group to. Its state machine proposes its own entries. The caller sets
// the state machine, storage, transport, recovered state, board and
// logger.
func (rs RaftSettings) Config(p controller.Partition, name string, node uint64) raftactor.Config {
	var preferred uint64
	if len(p.Replicas) > 0 {
		preferred = p.Replicas[0]
	}
	return raftactor.Config{
		Group:                     p.Group,
		Name:                      name,
		NodeID:                    node,
		Bootstrap:                 p.Bootstraps(node),
		Peers:                     p.FoundingVoters(),
		Preferred:                 preferred,
		ElectionTicks:             rs.ElectionTicks,
		HeartbeatTicks:            rs.HeartbeatTicks,
		MaxSizePerMsg:             rs.MaxSizePerMsg,
		MaxInflightMsgs:           rs.MaxInflightMsgs,
		MaxInflightBytes:          rs.MaxInflightBytes,
		MaxUncommittedBytes:       rs.MaxUncommittedBytes,
		DisableProposalForwarding: true,
		SnapshotEntries:           rs.SnapshotEntries,
		SnapshotBytes:             rs.SnapshotBytes,
		CatchUpEntries:            rs.CatchUpEntries,
		CatchUpBytes:              rs.CatchUpBytes,
		RawEntries:                true,
		QuietStart:                true,
		Stopping:                  rs.Stopping,
		Restarts:                  rs.Restarts,
		Reachable:                 rs.Reachable,
		Quiet:                     rs.Quiet,
	}
}

// ManagerOptions configure the replica manager.
type ManagerOptions struct {
	NodeID     uint64
	DataDir    string // partitions live in DataDir/partitions
	Sys        *actors.System
	Controller *controller.StateMachine
	Storage    *actor.PID
	Transport  raftactor.Transport
	Router     *netactor.Router
	Ticker     *raftactor.Ticker
	Board      *raftactor.StatusBoard
	Recovered  map[uint64]*storage.GroupState
	Raft       RaftSettings
	// Defaults are this broker's topic config defaults, until a
	// SetTopicDefaults replaces them.
	Defaults controller.TopicDefaults
	// ProducerExpirationMs and ProducerExpiryTicks are the partitions'
	// MachineOptions of the same names (0: their defaults).
	ProducerExpirationMs int64
	ProducerExpiryTicks  uint64
	// Leaders is this broker's view of every partition's leadership;
	// Broadcast sends the leaderships of this broker to its peers.
	Leaders   *Leaders
	Broadcast func(ctx actor.SenderContext, infos []netactor.LeaderInfo)
	// ControllerActor is the local controller actor: partition leaders
	// tell it when a reassignment reached its target.
	ControllerActor *actor.PID
	Metrics         *Metrics // nil: none
	// Space refuses produce requests while the disk is nearly full (nil:
	// never).
	Space *storage.Space
	Log   zerolog.Logger
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Replica is a partition replica hosted on this broker.
type Replica struct {
	TopicPartition
	TopicID controller.TopicID
	Group   uint64
	PID     *actor.PID // the partition's raft group actor: send it Produce, WatchFetch
	Machine *Machine   // read View() for Fetch and ListOffsets
	dir     string
	// assigned is the assignment the replica was last given.
	assigned controller.Partition
	// settings are the settings the replica was last given.
	settings Settings
}

// Registry is a set of things a manager runs on this broker, published as
// an immutable map so that Kafka connections look them up without
// messages. Only the manager that owns it publishes.
type Registry[K comparable, V any] struct {
	m atomic.Pointer[map[K]V]
}

// NewRegistry returns an empty registry.
func NewRegistry[K comparable, V any]() *Registry[K, V] {
	r := &Registry[K, V]{}
	r.m.Store(&map[K]V{})
	return r
}

// Get returns the entry of k, or V's zero value.
func (r *Registry[K, V]) Get(k K) V { return (*r.m.Load())[k] }

// All returns every entry (the map must not be modified).
func (r *Registry[K, V]) All() map[K]V { return *r.m.Load() }

// Publish replaces the entries with m, which must not be modified after.
func (r *Registry[K, V]) Publish(m map[K]V) { r.m.Store(&m) }

// Replicas is the set of partition replicas this broker hosts.
type Replicas = Registry[TopicPartition, *Replica]

// NewReplicas returns an empty set.
func NewReplicas() *Replicas { return NewRegistry[TopicPartition, *Replica]() }

// Lookup returns the replica hosted here of partition tp of the topic with
// id, or nil. The set is by name, and the replica under a name may be
// another topic's until the manager's next reconcile: one deleted, its
// name since given to a new topic. It must never answer for the other
// (Kafka's Partition.checkTopicId).
func Lookup(replicas *Replicas, tp TopicPartition, id controller.TopicID) *Replica {
	if r := replicas.Get(tp); r != nil && r.TopicID == id {
		return r
	}
	return nil
}

// Current is Lookup of the topic that the controller state view names
// tp.Topic: nil if there is none.
func Current(replicas *Replicas, view *controller.State, tp TopicPartition) *Replica {
	t := view.Topics[tp.Topic]
	if t == nil {
		return nil
	}
	return Lookup(replicas, tp, t.ID)
}

// NewManager returns the producer of the replica manager actor (kind
// "partitions", name "partitions"): on every other tick it compares the
// controller's applied assignments with the replicas it runs, and starts or
// stops partition raft groups (as its children) to match, once the
// controller state has caught up (controller.StateMachine.CaughtUp).
func NewManager(o ManagerOptions, replicas *Replicas) actor.Producer {
	return func() actor.Actor {
		return &manager{o: o, replicas: replicas, deleting: map[string]*Replica{}, forgotten: map[uint64]bool{}, dead: map[uint64]bool{}}
	}
}

type manager struct {
	o        ManagerOptions
	replicas *Replicas
	seen     uint64 // controller applied index last reconciled
	ticks    uint64
	deleting map[string]*Replica // by PID id: stopping, files to delete
	// forgotten are the groups whose replica was deleted since the broker
	// started: what the WAL recovered for them is gone, and a replica
	// moved back here starts empty.
	forgotten map[uint64]bool
	// swept is set once sweepLeftovers has run.
	swept bool
	// closing is set when the manager stops, and its replicas with it.
	closing bool
	// dead are the groups whose actor its supervisor stopped (died): they
	// are not started again before the broker restarts.
	dead map[uint64]bool
}

func (mg *manager) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		mg.seen = 0
		mg.reconcile(ctx)
	case *raftactor.Tick:
		mg.ticks++
		if mg.ticks%2 == 0 {
			mg.reconcile(ctx)
		}
		if mg.ticks%leadersEveryTicks == 0 {
			mg.broadcastLeaders(ctx)
			mg.o.Leaders.Prune(mg.o.Controller.View())
		}
	case *SetTopicDefaults:
		mg.setDefaults(ctx, m.Defaults)
	case *actor.Terminated:
		mg.deleted(ctx, m.Who)
	case *actor.Stopping:
		mg.closing = true
		for _, r := range mg.replicas.All() {
			mg.o.Ticker.Unsubscribe(r.PID)
			mg.o.Router.Remove(r.Group)
		}
	case *actor.Stopped:
		for _, r := range mg.replicas.All() {
			_ = r.Machine.Close()
		}
		mg.replicas.Publish(map[TopicPartition]*Replica{})
	}
}

func (mg *manager) reconcile(ctx actor.Context) {
	if !mg.o.Controller.CaughtUp() {
		// A state the cluster may have moved past: a replica started from
		// it could be a deleted topic's, founded afresh and acknowledging
		// writes that are then deleted, or one moved away, founded again.
		return
	}
	view := mg.o.Controller.View()
	if view.Applied == mg.seen && mg.seen != 0 {
		return
	}
	mg.seen = view.Applied
	mg.sweepLeftovers(ctx, view)
	cur := mg.replicas.All()
	next := make(map[TopicPartition]*Replica, len(cur))
	want := map[uint64]bool{}
	active := view.ActiveMoves()
	for _, t := range view.Topics {
		if t.Name == controller.OffsetsTopic {
			continue // its partitions are group coordinators (actors/group)
		}
		for _, p := range t.Partitions {
			p = p.InEffect(active) // a move waiting its turn is not carried out yet
			if !hosts(p.Replicas, mg.o.NodeID) {
				continue
			}
			want[p.Group] = true
			tp := TopicPartition{t.Name, p.Index}
			if r := cur[tp]; r != nil && r.Group == p.Group {
				next[tp] = r
				mg.assign(ctx, r, p)
				mg.configure(ctx, r, t)
				continue
			}
			if mg.dead[p.Group] {
				continue // shown halted until the broker restarts (died)
			}
			if mg.stillDeleting(p.Group) {
				// Moved back before its old data is gone: start it once
				// the old replica has stopped and its files are deleted.
				mg.seen = 0
				continue
			}
			r, err := mg.start(ctx, t, p)
			if err != nil {
				mg.o.Log.Error().Err(err).Str("topic", t.Name).Int32("partition", p.Index).Msg("cannot start partition replica")
				continue
			}
			next[tp] = r
		}
	}
	// Unpublished first, so that connections stop finding the replicas
	// being stopped before their poison pills are queued.
	mg.replicas.Publish(next)
	for tp, r := range cur {
		if next[tp] == r {
			continue
		}
		if want[r.Group] {
			continue
		}
		mg.stop(ctx, r)
	}
}

// broadcastLeaders tells every peer, and this broker's own board, which
// partitions this broker leads, their epoch and ISR.
func (mg *manager) broadcastLeaders(ctx actor.Context) {
	if infos := Led(mg.replicas, mg.o.NodeID); len(infos) > 0 {
		Announcer(mg.o.Leaders, mg.o.Broadcast)(ctx, infos)
	}
}

// Led returns the partitions of replicas that self leads now, with their
// epoch and ISR, in a slice of its own: what the broker broadcasts, and
// sends a peer that connects (netactor.Peers.Leads). Safe for concurrent
// use.
func Led(replicas *Replicas, self uint64) []netactor.LeaderInfo {
	var infos []netactor.LeaderInfo
	for _, r := range replicas.All() {
		if v := r.Machine.View(); v.Leader {
			infos = append(infos, netactor.LeaderInfo{Group: r.Group, Leader: self, Term: uint64(v.Epoch), ISR: v.ISR})
		}
	}
	return infos
}

func (mg *manager) stillDeleting(group uint64) bool {
	for _, r := range mg.deleting {
		if r.Group == group {
			return true
		}
	}
	return false
}

// sweepLeftovers removes, once, what replicas deleted just before the
// broker stopped left behind: a replica is deleted (its directory removed,
// its WAL state forgotten) when its actor has stopped, and a broker that
// stopped in between restarts with a controller state that no longer
// assigns the replica, so nothing would ever start or delete it again. Its
// directory would stay forever, and its records would hold back the WAL's
// oldest file, which then grows without bound. It waits until the
// controller state has applied the commit index the broker recovered, so
// that every replica the broker was ever given is in it: a group missing
// then was deleted or moved away (group ids are never reused). Offsets
// partitions' groups count too; the controller's own never goes.
func (mg *manager) sweepLeftovers(ctx actor.Context, view *controller.State) {
	var commit uint64
	if st := mg.o.Recovered[controller.ControllerGroup]; st != nil {
		commit = max(st.HardState.GetCommit(), st.Snapshot.GetMetadata().GetIndex())
	}
	if mg.swept || view.Applied < commit {
		return
	}
	mg.swept = true
	hosted := map[uint64]bool{controller.ControllerGroup: true}
	active := view.ActiveMoves()
	for _, t := range view.Topics {
		for _, p := range t.Partitions {
			if hosts(p.InEffect(active).Replicas, mg.o.NodeID) {
				hosted[p.Group] = true
			}
		}
	}
	for group := range mg.o.Recovered {
		if hosted[group] || mg.forgotten[group] {
			continue
		}
		mg.forgotten[group] = true
		ctx.Send(mg.o.Storage, &storage.Forget{Group: group})
		mg.o.Log.Info().Uint64("raft_group", group).Msg("forgot the WAL state of a replica deleted before the broker restarted")
	}
	dir := filepath.Join(mg.o.DataDir, "partitions")
	des, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		mg.o.Log.Error().Err(err).Str("dir", dir).Msg("list partition directories")
	}
	for _, de := range des {
		name := de.Name()
		i := strings.LastIndex(name, "-g")
		group, err := strconv.ParseUint(name[i+2:], 10, 64)
		if i < 0 || err != nil || hosted[group] {
			continue // not a partition's directory, or one hosted here
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			mg.o.Log.Error().Err(err).Str("dir", name).Msg("remove the directory of a replica deleted before the broker restarted")
			continue
		}
		mg.o.Log.Info().Str("dir", name).Uint64("raft_group", group).Msg("removed the directory of a replica deleted before the broker restarted")
	}
}

func hosts(replicas []uint64, id uint64) bool {
	for _, r := range replicas {
		if r == id {
			return true
		}
	}
	return false
}

func (mg *manager) partitionDir(t *controller.Topic, p controller.Partition) string {
	return filepath.Join(mg.o.DataDir, "partitions", t.Name+"-"+strconv.Itoa(int(p.Index))+"-g"+strconv.FormatUint(p.Group, 10))
}

func (mg *manager) start(ctx actor.Context, t *controller.Topic, p controller.Partition) (*Replica, error) {
	name := t.Name + "/" + strconv.Itoa(int(p.Index))
	log := mg.o.Log.With().Uint64("raft_group", p.Group).Str("topic", t.Name).Int32("partition", p.Index).Logger()
	settings, err := SettingsOf(t.Configs, mg.o.Defaults)
	if err != nil {
		return nil, err
	}
	dir := mg.partitionDir(t, p)
	var recovered *storage.GroupState
	if !mg.forgotten[p.Group] {
		recovered = mg.o.Recovered[p.Group]
	}
	m, err := NewMachine(MachineOptions{Topic: t.Name, Partition: p.Index, Dir: dir, Settings: settings,
		Replicas: p.Replicas, Adding: p.Adding, Removing: p.Removing, Group: p.Group, Controller: mg.o.ControllerActor,
		ReplicaLagTicks: mg.o.Raft.ReplicaLagTicks, Metrics: mg.o.Metrics, Space: mg.o.Space, Log: log, Recovered: recoveredEntries(recovered),
		MaxEntryBytes: mg.o.Raft.MaxEntryBytes, ProducerExpirationMs: mg.o.ProducerExpirationMs, ProducerExpiryTicks: mg.o.ProducerExpiryTicks,
		Announce: Announcer(mg.o.Leaders, mg.o.Broadcast)})
	if err != nil {
		return nil, err
	}
	cfg := mg.o.Raft.Config(p, name, mg.o.NodeID)
	cfg.StateMachine, cfg.Storage, cfg.Transport = m, mg.o.Storage, mg.o.Transport
	cfg.Board, cfg.Log = mg.o.Board, log
	cfg.Recovered = recovered
	producer, err := raftactor.NewProducer(cfg)
	if err != nil {
		_ = m.Close()
		return nil, err
	}
	pid, err := ctx.SpawnNamed(mg.o.Sys.Props("raft", "raft/"+name, producer), "raft-"+strconv.FormatUint(p.Group, 10))
	if err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("spawn %s: %w", name, err)
	}
	mg.o.Router.Set(p.Group, pid)
	mg.o.Ticker.Subscribe(pid)
	// The one info line of a replica's start: the partition log, the raft
	// group and the actor log theirs at debug.
	v := m.View()
	log.Info().Uints64("replicas", p.Replicas).Bool("bootstrap", cfg.Bootstrap).Str("dir", dir).
		Int64("log_start", v.LogStart).Int64("log_end", v.LogEnd).Msg("partition replica started")
	return &Replica{TopicPartition: TopicPartition{t.Name, p.Index}, TopicID: t.ID, Group: p.Group, PID: pid, Machine: m, dir: dir, assigned: p, settings: settings}, nil
}

// setDefaults takes this broker's new topic config defaults and gives
// each running replica whose settings they change its new settings.
func (mg *manager) setDefaults(ctx actor.Context, d controller.TopicDefaults) {
	mg.o.Defaults = d
	view := mg.o.Controller.View()
	for _, r := range mg.replicas.All() {
		t := view.Topics[r.Topic]
		if t == nil || t.ID != r.TopicID {
			continue // deleted: the next reconcile stops it
		}
		mg.configure(ctx, r, t)
	}
}

// configure gives a running replica of topic t its settings again when
// they changed: t's configs (altered through the controller) resolved over
// this broker's defaults (reloaded).
func (mg *manager) configure(ctx actor.Context, r *Replica, t *controller.Topic) {
	s, err := SettingsOf(t.Configs, mg.o.Defaults)
	if err != nil {
		mg.o.Log.Error().Err(err).Str("topic", r.Topic).Int32("partition", r.Partition).Msg("cannot resolve partition settings")
		return
	}
	if s == r.settings {
		return
	}
	r.settings = s
	ctx.Send(r.PID, &SetSettings{Settings: s})
}

// assign gives a running replica its partition's assignment when the
// controller changed it.
func (mg *manager) assign(ctx actor.Context, r *Replica, p controller.Partition) {
	if AssignmentEqual(r.assigned, p) {
		return
	}
	r.assigned = p
	ctx.Send(r.PID, &SetAssignment{Replicas: p.Replicas, Adding: p.Adding, Removing: p.Removing})
}

// AssignmentEqual reports whether a and b assign the same replicas.
func AssignmentEqual(a, b controller.Partition) bool {
	return slices.Equal(a.Replicas, b.Replicas) && slices.Equal(a.Adding, b.Adding) && slices.Equal(a.Removing, b.Removing)
}

// stop stops a replica whose topic is gone or that is no longer among its
// partition's replicas (moved away); its data is deleted once its actor
// has stopped (Terminated), never under a running raft group. A poison
// pill, not Stop: the produces and fetches already in its mailbox are
// answered (NOT_LEADER_OR_FOLLOWER, or their data) rather than lost, which
// would hold up their connections' in-order answers until the clients
// time out. What this broker knows of the group's leadership is updated
// first (Leaders.Left), from the replica's last status.
func (mg *manager) stop(ctx actor.Context, r *Replica) {
	mg.o.Ticker.Unsubscribe(r.PID)
	mg.o.Router.Remove(r.Group)
	mg.o.Leaders.Left(r.Group, mg.o.NodeID, groupLives(mg.o.Controller.View(), r), mg.o.Board.Get(r.Group))
	mg.deleting[r.PID.Id] = r
	ctx.Watch(r.PID)
	ctx.Poison(r.PID)
	mg.o.Log.Info().Str("topic", r.Topic).Int32("partition", r.Partition).Msg("partition replica stopping: no longer assigned here")
}

func (mg *manager) deleted(ctx actor.Context, pid *actor.PID) {
	r, ok := mg.deleting[pid.Id]
	if !ok {
		mg.died(pid)
		return
	}
	delete(mg.deleting, pid.Id)
	mg.forgotten[r.Group] = true
	_ = r.Machine.Close()
	if err := os.RemoveAll(r.dir); err != nil {
		mg.o.Log.Error().Err(err).Str("dir", r.dir).Msg("remove deleted partition")
	}
	// The WAL may now drop the group's records.
	ctx.Send(mg.o.Storage, &storage.Forget{Group: r.Group})
}

// groupLives reports whether r's partition is still in view: r moved away
// from this broker rather than went with its topic.
func groupLives(view *controller.State, r *Replica) bool {
	t := view.Topics[r.Topic]
	return t != nil && t.ID == r.TopicID && int(r.Partition) < len(t.Partitions) && t.Partitions[r.Partition].Group == r.Group
}

// died handles the end of a replica's actor that nobody stopped: its
// supervisor gave up on it after repeated panics. It shows as halted, so
// that /healthz and flotilla_raft_role tell the operator to restart the
// broker. It leaves the registry, so that clients are answered
// NOT_LEADER_OR_FOLLOWER rather than wait on a dead actor and Metadata no
// longer names this broker from the dead replica's last view, and it is
// not started again into the same panics before the broker restarts.
func (mg *manager) died(pid *actor.PID) {
	if mg.closing {
		return
	}
	cur := mg.replicas.All()
	for tp, r := range cur {
		if r.PID.Id != pid.Id {
			continue
		}
		next := maps.Clone(cur)
		delete(next, tp)
		mg.replicas.Publish(next)
		mg.o.Ticker.Unsubscribe(r.PID)
		mg.o.Router.Remove(r.Group)
		mg.dead[r.Group] = true
		// Its machine stays open: connections that looked it up before
		// may still read its view and files.
		mg.o.Board.PublishStopped(r.Group, tp.Topic+"/"+strconv.Itoa(int(tp.Partition)))
		mg.o.Log.Error().Uint64("raft_group", r.Group).Str("topic", tp.Topic).Int32("partition", tp.Partition).
			Msg("partition replica stopped after repeated failures; restart the broker")
		return
	}
}
