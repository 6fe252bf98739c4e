package partition

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
	MaxUncommittedBytes uint64
	SnapshotEntries     uint64
	SnapshotBytes       uint64
	CatchUpEntries      uint64
	CatchUpBytes        uint64
	// ReplicaLagTicks is replica.lag.time.max.ms in ticks (ISR time rule).
	ReplicaLagTicks uint64
}

// Config returns the raft config of the replica of a partition-like group
// (a partition or an offsets-topic partition) on node: every replica
// founds the group with the assignment's replicas, as etcd's StartNode,
// and its state machine proposes its own entries. The caller sets the
// state machine, storage, transport, recovered state, board and logger.
func (rs RaftSettings) Config(group uint64, name string, node uint64, replicas []uint64) raftactor.Config {
	return raftactor.Config{
		Group:                     group,
		Name:                      name,
		NodeID:                    node,
		Bootstrap:                 true,
		Peers:                     replicas,
		ElectionTicks:             rs.ElectionTicks,
		HeartbeatTicks:            rs.HeartbeatTicks,
		MaxSizePerMsg:             rs.MaxSizePerMsg,
		MaxInflightMsgs:           rs.MaxInflightMsgs,
		MaxUncommittedBytes:       rs.MaxUncommittedBytes,
		DisableProposalForwarding: true,
		SnapshotEntries:           rs.SnapshotEntries,
		SnapshotBytes:             rs.SnapshotBytes,
		CatchUpEntries:            rs.CatchUpEntries,
		CatchUpBytes:              rs.CatchUpBytes,
		RawEntries:                true,
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
	// Leaders is this broker's view of every partition's leadership;
	// Broadcast sends the leaderships of this broker to its peers.
	Leaders   *Leaders
	Broadcast func(ctx actor.SenderContext, infos []netactor.LeaderInfo)
	Log       zerolog.Logger
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

// NewManager returns the producer of the replica manager actor (kind
// "partitions", name "partitions"): on every other tick it compares the
// controller's applied assignments with the replicas it runs, and starts or
// stops partition raft groups (as its children) to match.
func NewManager(o ManagerOptions, replicas *Replicas) actor.Producer {
	return func() actor.Actor { return &manager{o: o, replicas: replicas, deleting: map[string]*Replica{}} }
}

type manager struct {
	o        ManagerOptions
	replicas *Replicas
	seen     uint64 // controller applied index last reconciled
	ticks    uint64
	deleting map[string]*Replica // by PID id: stopping, files to delete
}

func (mg *manager) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		mg.seen = 0
		mg.o.Router.Set(netactor.LeadersSink, ctx.Self())
		mg.reconcile(ctx)
	case *raftactor.Tick:
		mg.ticks++
		if mg.ticks%2 == 0 {
			mg.reconcile(ctx)
		}
		if mg.ticks%leadersEveryTicks == 0 {
			mg.broadcastLeaders(ctx)
		}
	case *netactor.LeadersReceived:
		mg.o.Leaders.Note(m.Infos)
	case *actor.Terminated:
		mg.deleted(ctx, m.Who)
	case *actor.Stopping:
		mg.o.Router.Remove(netactor.LeadersSink)
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
	view := mg.o.Controller.View()
	if view.Applied == mg.seen && mg.seen != 0 {
		return
	}
	mg.seen = view.Applied
	cur := mg.replicas.All()
	next := make(map[TopicPartition]*Replica, len(cur))
	want := map[uint64]bool{}
	for _, t := range view.Topics {
		if t.Name == controller.OffsetsTopic {
			continue // its partitions are group coordinators (actors/group)
		}
		for _, p := range t.Partitions {
			if !hosts(p.Replicas, mg.o.NodeID) {
				continue
			}
			want[p.Group] = true
			tp := TopicPartition{t.Name, p.Index}
			if r := cur[tp]; r != nil && r.Group == p.Group {
				next[tp] = r
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
	for tp, r := range cur {
		if next[tp] == r {
			continue
		}
		if want[r.Group] {
			continue
		}
		mg.stop(ctx, r)
	}
	mg.replicas.Publish(next)
}

// broadcastLeaders tells every peer, and this broker's own board, which
// partitions this broker leads, their epoch and ISR.
func (mg *manager) broadcastLeaders(ctx actor.Context) {
	var infos []netactor.LeaderInfo
	for _, r := range mg.replicas.All() {
		if v := r.Machine.View(); v.Leader {
			infos = append(infos, netactor.LeaderInfo{Group: r.Group, Leader: mg.o.NodeID, Term: uint64(v.Epoch), ISR: v.ISR})
		}
	}
	if len(infos) == 0 {
		return
	}
	mg.o.Leaders.Note(infos)
	if mg.o.Broadcast != nil {
		mg.o.Broadcast(ctx, infos)
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
	log := mg.o.Log.With().Str("partition", name).Uint64("group", p.Group).Logger()
	settings, err := SettingsOf(t.Configs)
	if err != nil {
		return nil, err
	}
	dir := mg.partitionDir(t, p)
	m, err := NewMachine(MachineOptions{Topic: t.Name, Partition: p.Index, Dir: dir, Settings: settings, Replicas: p.Replicas,
		ReplicaLagTicks: mg.o.Raft.ReplicaLagTicks, Log: log})
	if err != nil {
		return nil, err
	}
	cfg := mg.o.Raft.Config(p.Group, name, mg.o.NodeID, p.Replicas)
	cfg.StateMachine, cfg.Storage, cfg.Transport = m, mg.o.Storage, mg.o.Transport
	cfg.Recovered, cfg.Board, cfg.Log = mg.o.Recovered[p.Group], mg.o.Board, log
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
	log.Info().Uints64("replicas", p.Replicas).Msg("partition replica started")
	return &Replica{TopicPartition: TopicPartition{t.Name, p.Index}, TopicID: t.ID, Group: p.Group, PID: pid, Machine: m, dir: dir}, nil
}

// stop stops a replica whose topic is gone; its data is deleted once its
// actor has stopped (Terminated), never under a running raft group.
func (mg *manager) stop(ctx actor.Context, r *Replica) {
	mg.o.Ticker.Unsubscribe(r.PID)
	mg.o.Router.Remove(r.Group)
	mg.deleting[r.PID.Id] = r
	ctx.Watch(r.PID)
	ctx.Stop(r.PID)
	mg.o.Log.Info().Str("topic", r.Topic).Int32("partition", r.Partition).Msg("partition replica stopping: topic deleted")
}

func (mg *manager) deleted(ctx actor.Context, pid *actor.PID) {
	r, ok := mg.deleting[pid.Id]
	if !ok {
		return
	}
	delete(mg.deleting, pid.Id)
	mg.o.Leaders.forget(r.Group)
	_ = r.Machine.Close()
	if err := os.RemoveAll(r.dir); err != nil {
		mg.o.Log.Error().Err(err).Str("dir", r.dir).Msg("remove deleted partition")
	}
	// The WAL may now drop the group's records.
	ctx.Send(mg.o.Storage, &storage.Forget{Group: r.Group})
}
