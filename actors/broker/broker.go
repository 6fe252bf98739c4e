package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/debug"
	"github.com/flotilla/flotilla/actors/group"
	"github.com/flotilla/flotilla/actors/kafka"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/actors/storage"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// Options are what Start needs besides the config.
type Options struct {
	Config *configs.Config
	Log    zerolog.Logger
	// RaftListener and DebugListener, when set, are used instead of binding
	// the configured addresses (tests bind port 0 first to learn the ports).
	RaftListener  net.Listener
	DebugListener net.Listener
	KafkaListener net.Listener
	// Observer sees every Ready of every group (tests only).
	Observer raftactor.Observer
	// TunePartitions adjusts the partition groups' raft settings (tests
	// only: small checkpoint intervals exercise compaction).
	TunePartitions func(*partition.RaftSettings)
	// WrapTransport, when set, wraps the raft transport of every group
	// (tests only: a fault-injecting transport cuts the network).
	WrapTransport func(raftactor.Transport) raftactor.Transport
}

// Broker is one running broker.
type Broker struct {
	cfg        *configs.Config
	log        zerolog.Logger
	sys        *actors.System
	ticker     *raftactor.Ticker
	board      *raftactor.StatusBoard
	machine    *controller.StateMachine
	registry   *prometheus.Registry
	wal        *storage.WAL
	liveness   *netactor.Liveness
	router     *netactor.Router
	peers      *netactor.Peers
	storage    *actor.PID
	raftLn     *actor.PID
	raftGroup  *actor.PID
	controller *actor.PID
	debug      *actor.PID
	partitions *actor.PID
	kafka      *actor.PID
	replicas   *partition.Replicas
	leaders    *partition.Leaders
	groups     *actor.PID
	coords     *group.Coordinators
	kafkaAddr  string
	raftAddr   string
	debugAddr  string
	unlock     func()

	configPeers   atomic.Pointer[map[uint64]string]        // the peers of the config in force
	topicDefaults atomic.Pointer[controller.TopicDefaults] // of the config in force
	autoCreate    atomic.Bool                              // kafka.auto_create_topics_enable in force
	removedOnce   sync.Once
	askMu         sync.Mutex  // serialises askRemovals (Reload and the start)
	asking        []uint64    // removals asked for that the state may not show yet
	removed       chan string // closed-over reason once the cluster removed this broker
	// duplicate gets a *DuplicateIDError (Duplicate) once, when a peer
	// has refused this process for a hold timeout on end, taking its node
	// id for another live process's.
	duplicate      chan error
	duplicateOnce  sync.Once
	refusedServing sync.Once

	// serving is closed once the broker serves Kafka clients
	// (serveWhenLeadersKnown); stop is closed when it stops.
	serving  chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	// servedFrom is the controller state's applied index when serving
	// was closed (debug.Sources.ServedFrom).
	servedFrom atomic.Uint64
}

// Start starts a broker and returns once its actors are running; the
// controller group elects and the broker registers in the background.
//
// A broker whose data dir is new first asks its configured peers whether
// its node id is a registered broker of their cluster (awaitPeers), and
// starts no raft group until a majority of the voters know of no such
// cluster: Start waits for that, until ctx ends, and fails with a
// *DataLostError when a peer knows the id, or a *DuplicateIDError when a
// peer refuses it as a second live process of its id (Duplicate).
func Start(ctx context.Context, o Options) (_ *Broker, err error) {
	cfg := o.Config
	log := o.Log.With().Uint64("node", cfg.NodeID).Logger()
	unlock, owned, err := claimDataDir(cfg.DataDir, cfg.NodeID)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	fresh := false
	if !owned {
		if fresh, err = newDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}

	// Bind every port first: a taken port must fail startup cleanly.
	raftLn := o.RaftListener
	if raftLn == nil {
		if raftLn, err = net.Listen("tcp", cfg.Raft.Listen); err != nil {
			return nil, fmt.Errorf("raft.listen %s: %w", cfg.Raft.Listen, err)
		}
	}
	kafkaLn := o.KafkaListener
	if kafkaLn == nil {
		if kafkaLn, err = net.Listen("tcp", cfg.Kafka.Listen); err != nil {
			raftLn.Close()
			return nil, fmt.Errorf("kafka.listen %s: %w", cfg.Kafka.Listen, err)
		}
	}
	debugLn := o.DebugListener
	if debugLn == nil && cfg.Debug.Listen != "" {
		if debugLn, err = net.Listen("tcp", cfg.Debug.Listen); err != nil {
			raftLn.Close()
			kafkaLn.Close()
			return nil, fmt.Errorf("debug.listen %s: %w", cfg.Debug.Listen, err)
		}
	}
	closeListeners := func() {
		raftLn.Close()
		kafkaLn.Close()
		if debugLn != nil {
			debugLn.Close()
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	space, err := storage.NewSpace(cfg.DataDir, cfg.Storage.MinFreeBytes, log.With().Str("actor", "storage").Logger())
	if err != nil {
		closeListeners()
		return nil, fmt.Errorf("data dir free space: %w", err)
	}
	reg.MustRegister(space.Collector())
	b := &Broker{
		cfg:       cfg,
		log:       log,
		sys:       actors.NewSystem(log),
		board:     raftactor.NewStatusBoard(),
		machine:   controller.NewStateMachine(log.With().Str("actor", "controller").Logger()),
		registry:  reg,
		router:    netactor.NewRouter(),
		raftAddr:  raftLn.Addr().String(),
		unlock:    unlock,
		debugAddr: "",
		removed:   make(chan string, 1),
		duplicate: make(chan error, 1),
		serving:   make(chan struct{}),
		stop:      make(chan struct{}),
	}
	b.setConfigPeers(cfg.Peers)
	defaults := controller.TopicDefaults(cfg.Kafka.TopicDefaults())
	b.topicDefaults.Store(&defaults)
	b.autoCreate.Store(cfg.Kafka.AutoCreateTopicsEnable)
	reg.MustRegister(raftactor.NewCollector(b.board), b.sys.Collector())
	defer func() {
		if err != nil {
			// Stopped as Stop does, so that the raft listener closes the
			// connections it accepted: in a process that lives on, peers
			// would write into them until a timeout.
			b.shutdown()
			closeListeners()
		}
	}()

	netMetrics := netactor.NewMetrics(reg)
	liveness := netactor.NewLiveness(cfg.NodeID, cfg.BrokerSessionTimeout(), time.Now)
	b.liveness = liveness
	alive := aliveFunc(liveness, cfg.NodeID, b.machine.View)
	peerAddrs := make(map[uint64]string)
	for _, p := range cfg.Peers {
		if p.ID != cfg.NodeID {
			peerAddrs[p.ID] = p.Addr
		}
	}
	senders := senderOptions(cfg, netMetrics, liveness, log)
	// Every start is a new incarnation, which the peers' leaders take for
	// a restart: a replica here holds nothing written while this broker
	// was down, and leaves their ISRs until it has caught up, however
	// soon it is back.
	senders.Incarnation = netactor.NewIncarnation()
	senders.Quiesces = true // the ticker below wakes them (WakeOnLoss)
	senders.OnRefused = b.onRefused
	if b.peers, err = netactor.StartPeers(b.sys, cfg.NodeID, peerAddrs, b.router, senders); err != nil {
		return nil, fmt.Errorf("start peer senders: %w", err)
	}
	// Before the raft listener: a peer sends what it leads as soon as it
	// connects.
	leaders := partition.NewLeaders()
	b.leaders = leaders
	if b.raftLn, err = netactor.StartListener(b.sys, raftLn, netactor.ListenerOptions{
		Self:             cfg.NodeID,
		MaxFrameBytes:    cfg.Raft.MaxFrameBytes,
		MaxSnapshotBytes: cfg.Raft.MaxSnapshotBytes,
		IdleTimeout:      netactor.IdleTimeout(cfg.TickInterval()),
		Router:           b.router,
		Metrics:          netMetrics,
		Liveness:         liveness,
		Leaders:          leaders,
		HoldTimeout:      netactor.HoldTimeout(cfg.TickInterval()),
		PeerAddr:         b.peers.Addr,
		Log:              log,
	}); err != nil {
		return nil, err
	}
	b.ticker = raftactor.NewTicker(b.sys.Root, cfg.TickInterval())
	b.peers.TickWith(b.ticker)
	liveness.WakeOnLoss(netactor.QuietWindow(cfg.TickInterval()), b.ticker.WakePeer)
	raftAdvertised, _ := cfg.PeerAddr(cfg.NodeID)

	// Nothing is written to a data dir that names no owner until the
	// broker may use it: a broker killed while it waits for its peers
	// must ask them again when it restarts.
	if !owned {
		if others := slices.Sorted(maps.Keys(peerAddrs)); fresh && len(others) > 0 {
			if err := b.awaitPeers(ctx, raftAdvertised, others); err != nil {
				return nil, err
			}
		}
		if err := recordIdentity(cfg.DataDir, cfg.NodeID); err != nil {
			return nil, err
		}
	}

	wal, recovered, err := storage.Open(filepath.Join(cfg.DataDir, walDir), storage.Options{
		SegmentBytes: cfg.Storage.WALSegmentBytes,
		BudgetBytes:  cfg.Storage.WALBudgetBytes,
		Fsync:        cfg.Storage.Fsync,
		Log:          log.With().Str("actor", "storage").Logger(),
		Metrics:      storage.NewMetrics(reg),
	})
	if err != nil {
		return nil, fmt.Errorf("open wal: %w", err)
	}
	b.wal = wal
	if b.storage, err = b.sys.Spawn("storage", "storage", storage.NewActor(wal, log.With().Str("actor", "storage").Logger())); err != nil {
		wal.Close()
		return nil, err
	}

	var transport raftactor.Transport = b.peers
	if o.WrapTransport != nil {
		transport = o.WrapTransport(transport)
	}
	voters := make([]uint64, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		voters = append(voters, p.ID)
	}
	producer, err := raftactor.NewProducer(raftactor.Config{
		Group:               controller.ControllerGroup,
		Name:                "controller",
		NodeID:              cfg.NodeID,
		Bootstrap:           cfg.Bootstrap,
		Peers:               voters,
		ElectionTicks:       cfg.Raft.ElectionTicks,
		HeartbeatTicks:      cfg.Raft.HeartbeatTicks,
		MaxSizePerMsg:       cfg.Raft.MaxSizePerMsg,
		MaxInflightMsgs:     cfg.Raft.MaxInflightMsgs,
		MaxUncommittedBytes: cfg.Raft.MaxUncommittedBytes,
		SnapshotEntries:     cfg.Raft.SnapshotEntries,
		Storage:             b.storage,
		Transport:           transport,
		StateMachine:        b.machine,
		Recovered:           recovered[controller.ControllerGroup],
		Board:               b.board,
		Observer:            o.Observer,
		Stopping:            liveness.Stopping,
		Restarts:            liveness.Restarts,
		Log:                 log.With().Uint64("raft_group", controller.ControllerGroup).Str("actor", "raft/controller").Logger(),
	})
	if err != nil {
		return nil, err
	}
	if b.raftGroup, err = b.sys.Spawn("raft", "raft/controller", producer); err != nil {
		return nil, err
	}
	b.router.Set(controller.ControllerGroup, b.raftGroup)

	kafkaAddr := cfg.Kafka.Advertise
	if kafkaAddr == "" {
		kafkaAddr = kafkaLn.Addr().String() // the bound address: port 0 resolved
	}
	b.kafkaAddr = kafkaAddr
	// Before the controller, which asks whether its replicas serve.
	b.replicas = partition.NewReplicas()
	if b.controller, err = b.sys.Spawn("controller", "controller", controller.NewActor(controller.Options{
		NodeID:    cfg.NodeID,
		KafkaAddr: kafkaAddr,
		RaftAddr:  raftAdvertised,
		Raft:      b.raftGroup,
		Machine:   b.machine,
		Board:     b.board,
		Fresh:     recovered[controller.ControllerGroup] == nil,
		Network:   b.peers,
		Router:    b.router,
		ConfigPeers: func() map[uint64]string {
			return *b.configPeers.Load()
		},
		OnRemoved: b.onRemoved,
		Alive:     stayingFunc(liveness, alive),
		Liveness:  liveness,
		DeadPeers: controller.NewDeadPeersGauge(reg),
		Announced: leaders.Get,
		LeaderServes: func(t *controller.Topic, p controller.Partition) bool {
			r := partition.Lookup(b.replicas, partition.TopicPartition{Topic: t.Name, Partition: p.Index}, t.ID)
			return r != nil && r.Machine.View().Leader
		},
		ReplicaLagTicks: cfg.ReplicaLagTicks(),
		// The raft actor puts an 8-byte key before each proposal.
		MaxCommandBytes: netactor.MaxEntryBytes(cfg.Raft.MaxFrameBytes) - 8,
		Leaderships: func(ctx actor.SenderContext, infos []netactor.LeaderInfo) {
			leaders.Note(infos)
			b.peers.Broadcast(ctx, infos)
		},
		Log: log.With().Str("actor", "controller").Logger(),
	})); err != nil {
		return nil, err
	}

	reg.MustRegister(partition.NewHealthCollector(b.replicas))
	b.coords = group.NewCoordinators()
	// A peer that connects is told at once everything this broker leads.
	b.peers.Leads(func() []netactor.LeaderInfo {
		return append(partition.Led(b.replicas, cfg.NodeID), group.Led(b.coords, cfg.NodeID)...)
	})
	if debugLn != nil {
		b.debugAddr = debugLn.Addr().String()
		if b.debug, err = b.sys.Spawn("debug", "debug", debug.NewActor(debugLn, debug.Sources{
			NodeID:       cfg.NodeID,
			Actors:       b.sys,
			Board:        b.board,
			Controller:   b.machine,
			Serving:      b.serving,
			ServedFrom:   b.servedFrom.Load,
			Coordinators: b.coords,
			Replicas:     b.replicas,
			Leaders:      leaders,
			ConfigPeers:  func() map[uint64]string { return *b.configPeers.Load() },
			Liveness:     liveness,
			Gatherer:     reg,
			Log:          log,
		})); err != nil {
			return nil, err
		}
	}

	partitionRaft := partition.RaftSettings{
		ElectionTicks:   cfg.Raft.ElectionTicks,
		HeartbeatTicks:  cfg.Raft.HeartbeatTicks,
		MaxSizePerMsg:   cfg.Raft.MaxSizePerMsg,
		MaxInflightMsgs: cfg.Raft.MaxInflightMsgs,
		// An eighth of a peer's send queue per follower: a few groups
		// catching up at once leave room for the others' appends.
		MaxInflightBytes:    max(uint64(cfg.Raft.PeerQueueBytes)/8, cfg.Raft.MaxSizePerMsg),
		MaxUncommittedBytes: cfg.Raft.MaxUncommittedBytes,
		// A partition snapshots every 8 MiB of batches, which bounds its
		// in-memory log: older applied batches are read back from its
		// segments, so only a short tail stays. It checkpoints (flushes
		// its segments, off its actor, and hands the snapshot to the
		// storage) when the storage asks, so the WAL can let files go.
		SnapshotEntries: 10000,
		SnapshotBytes:   8 << 20,
		CatchUpEntries:  16,
		CatchUpBytes:    1 << 20,
		ReplicaLagTicks: cfg.ReplicaLagTicks(),
		// A partition's entry is its batch, or the batch behind a type
		// byte (batchEntry); 8 bytes leave room for that.
		MaxEntryBytes: netactor.MaxEntryBytes(cfg.Raft.MaxFrameBytes) - 8,
		Stopping:      liveness.Stopping,
		Restarts:      liveness.Restarts,
		// Three election timeouts: peers greet each other more often, so a
		// broker silent for that long is down, not idle.
		Reachable: func(node uint64) bool {
			return liveness.HeardWithin(node, time.Duration(3*cfg.Raft.ElectionTicks*cfg.Raft.TickMs)*time.Millisecond)
		},
		Quiet: liveness.Quiet,
	}
	if o.TunePartitions != nil {
		o.TunePartitions(&partitionRaft)
	}
	if b.partitions, err = b.sys.Spawn("partitions", "partitions", partition.NewManager(partition.ManagerOptions{
		NodeID:          cfg.NodeID,
		DataDir:         cfg.DataDir,
		Sys:             b.sys,
		Controller:      b.machine,
		Storage:         b.storage,
		Transport:       transport,
		Router:          b.router,
		Ticker:          b.ticker,
		Board:           b.board,
		Recovered:       recovered,
		Raft:            partitionRaft,
		Defaults:        defaults,
		Leaders:         leaders,
		Broadcast:       b.peers.Broadcast,
		ControllerActor: b.controller,
		Metrics:         partition.NewMetrics(reg),
		Space:           space,
		Log:             log,
		// Producer expiry is a broker setting, as in Kafka: a partition
		// expires producers by the settings of its leader's broker.
		ProducerExpirationMs: cfg.Kafka.ProducerIDExpirationMs,
		ProducerExpiryTicks:  cfg.ProducerExpiryTicks(),
	}, b.replicas)); err != nil {
		return nil, err
	}

	if b.groups, err = b.sys.Spawn("groups", "groups", group.NewManager(group.ManagerOptions{
		NodeID:     cfg.NodeID,
		Sys:        b.sys,
		Controller: b.machine,
		Storage:    b.storage,
		Transport:  transport,
		Router:     b.router,
		Ticker:     b.ticker,
		Board:      b.board,
		Recovered:  recovered,
		Raft:       partitionRaft,
		Tick:       cfg.TickInterval(),
		Settings: group.Settings{
			MinSessionTimeout:     time.Duration(cfg.Kafka.GroupMinSessionTimeoutMs) * time.Millisecond,
			MaxSessionTimeout:     time.Duration(cfg.Kafka.GroupMaxSessionTimeoutMs) * time.Millisecond,
			InitialRebalanceDelay: time.Duration(cfg.Kafka.GroupInitialRebalanceDelayMs) * time.Millisecond,
			OffsetsRetention:      time.Duration(cfg.Kafka.OffsetsRetentionMinutes) * time.Minute,
		},
		Leaders:         leaders,
		Broadcast:       b.peers.Broadcast,
		ControllerActor: b.controller,
		Log:             log,
	}, b.coords)); err != nil {
		return nil, err
	}

	// Kafka names a log dir by its absolute path (DescribeLogDirs).
	logDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	svc := &kafka.Service{
		NodeID:            cfg.NodeID,
		Tick:              cfg.TickInterval(),
		Controller:        b.controller,
		Ticker:            b.ticker,
		Machine:           b.machine,
		Replicas:          b.replicas,
		Board:             b.board,
		LogDir:            logDir,
		Space:             space,
		Coordinators:      b.coords,
		Leaders:           leaders,
		OffsetsPartitions: int32(cfg.Kafka.OffsetsTopicPartitions),
		Alive:             alive,
		Stopping:          liveness.Stopping,
		TopicDefaults:     func() controller.TopicDefaults { return *b.topicDefaults.Load() },
		AutoCreate:        b.autoCreate.Load,
		Sender:            b.sys.Root,
		Now:               time.Now,
		Log:               log,
	}
	reg.MustRegister(kafka.NewOfflineCollector(svc))
	src := &kafka.ClusterSource{
		Self:       cfg.NodeID,
		Machine:    b.machine,
		Board:      b.board,
		Replicas:   b.replicas,
		Leaders:    leaders,
		Controller: b.controller,
		Sender:     b.sys.Root,
		AutoCreate: b.autoCreate.Load,
		// Metadata auto-creates the offsets topic as FindCoordinator does;
		// only the latter does so with auto-creation off, as in Kafka.
		OffsetsPartitions: svc.OffsetsPartitions,
		Alive:             alive,
		Stopping:          liveness.Stopping,
		Log:               log,
	}
	if b.kafka, err = kafka.StartListener(b.sys, kafkaLn, kafka.Options{
		Handler:  svc,
		Metadata: src,
		// Clients are served from a controller state this broker may act
		// on (controller.StateMachine.CaughtUp), as a Kafka broker serves
		// once it has caught up with the metadata log, and once it knows
		// who leads what (serveWhenLeadersKnown).
		Ready:   b.serving,
		Metrics: kafka.NewMetrics(reg),
		Log:     log,
	}); err != nil {
		return nil, err
	}

	go b.serveWhenLeadersKnown(b.serving, b.stop)
	b.askRemovalsAtStart()
	b.ticker.Subscribe(b.raftGroup)
	b.ticker.Subscribe(b.controller)
	b.ticker.Subscribe(b.partitions)
	b.ticker.Subscribe(b.groups)
	log.Info().Str("raft", b.raftAddr).Str("debug", b.debugAddr).Str("kafka", kafkaLn.Addr().String()).Str("kafka_advertised", kafkaAddr).
		Int("recovered_groups", len(recovered)).Str("process_incarnation", fmt.Sprintf("%016x", senders.Incarnation)).Msg("broker started")
	return b, nil
}

// senderOptions are the options of the raft transport's peer senders that
// cfg sets; configs.Validate refuses the values they would refuse.
func senderOptions(cfg *configs.Config, m *netactor.Metrics, liveness *netactor.Liveness, log zerolog.Logger) netactor.SenderOptions {
	return netactor.SenderOptions{
		MaxFrameBytes:    cfg.Raft.MaxFrameBytes,
		MaxSnapshotBytes: cfg.Raft.MaxSnapshotBytes,
		QueueBytes:       cfg.Raft.PeerQueueBytes,
		Liveness:         liveness,
		Metrics:          m,
		Log:              log,
	}
}

// Stop shuts the broker down cleanly. First it hands the leadership of
// every raft group it leads to another voter (handOver), while it still
// serves its clients, who are told NOT_LEADER_OR_FOLLOWER and follow the
// new leaders; then time stops, the Kafka listener and its connections
// close, the raft actors stop, and the WAL is flushed and fsynced last.
//
// It returns what made the stop unclean: an actor that did not stop in
// time, or a WAL that could not be flushed and closed.
func (b *Broker) Stop() error {
	b.handOver()
	return b.stopNow()
}

// Abort stops a broker that must not speak for its node id (Duplicate)
// at once, without the hand-over of Stop: that would tell the peers that
// the id's broker is stopping, and they know another process by it. Such
// a broker never served, and a peer that refused it took none of its
// votes.
func (b *Broker) Abort() error { return b.stopNow() }

// stopNow is Stop without the hand-over: to the peers, what a crash looks
// like until its connections close (tests use it for one).
func (b *Broker) stopNow() error {
	err := b.shutdown()
	b.unlock()
	if err != nil {
		b.log.Error().Err(err).Msg("broker stopped uncleanly")
		return err
	}
	b.log.Info().Msg("broker stopped")
	return nil
}

// shutdown stops whatever Start started, in order (a failed Start stops
// what it had started), and returns what made the stop unclean.
func (b *Broker) shutdown() error {
	b.stopOnce.Do(func() { close(b.stop) })
	if b.ticker != nil {
		b.ticker.Stop()
	}
	root := b.sys.Root
	var errs []error
	// Clients first, then the partitions, then the controller and the raft
	// transport; the WAL last, once nothing can write to it.
	for _, pid := range []*actor.PID{b.kafka, b.debug, b.groups, b.partitions, b.controller, b.raftGroup, b.raftLn} {
		if pid == nil {
			continue
		}
		if err := root.StopFuture(pid).Wait(); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", pid.GetId(), err))
		}
	}
	if b.peers != nil {
		b.peers.Stop()
	}
	// Poison, not Stop: the storage actor must first answer every Persist
	// already in its mailbox; it flushes and fsyncs its WAL when it stops.
	if b.storage != nil {
		if err := root.PoisonFuture(b.storage).Wait(); err != nil {
			errs = append(errs, fmt.Errorf("stop storage: %w", err))
		} else if err := b.wal.Close(); err != nil {
			// The actor closed the WAL as it stopped; this is how that went.
			errs = append(errs, fmt.Errorf("close wal: %w", err))
		}
	}
	b.sys.Shutdown()
	return errors.Join(errs...)
}

// setConfigPeers records the peers of the config in force.
func (b *Broker) setConfigPeers(peers []configs.Peer) {
	m := make(map[uint64]string, len(peers))
	for _, p := range peers {
		m[p.ID] = p.Addr
	}
	b.configPeers.Store(&m)
}

// Reload takes the peers, the topic config defaults and
// kafka.auto_create_topics_enable of a reloaded config: peers it adds are
// reachable at once (they join by themselves), members it drops are asked
// to be drained and removed from the cluster (which happens once a
// majority of the voters that stay asked), running partitions take
// changed defaults at once, and the next Metadata request creates topics
// or not.
//
// It refuses a config without peers while other brokers are members, or
// whose peers would remove a majority of the controller's voters
// (checkPeerChange), and then changes nothing: such a list is far more
// likely a lost or mangled peers block than a wish to shrink the cluster
// that far at once.
func (b *Broker) Reload(cfg *configs.Config) error {
	old := slices.Collect(maps.Keys(*b.configPeers.Load()))
	next := peerIDs(cfg.Peers)
	if err := checkPeerChange(b.cfg.NodeID, old, next, cfg.PeersDefaulted, b.machine.View()); err != nil {
		return fmt.Errorf("config reload refused: %w", err)
	}
	if d := controller.TopicDefaults(cfg.Kafka.TopicDefaults()); !maps.Equal(d, *b.topicDefaults.Load()) {
		b.topicDefaults.Store(&d)
		b.sys.Root.Send(b.partitions, &partition.SetTopicDefaults{Defaults: d})
	}
	b.autoCreate.Store(cfg.Kafka.AutoCreateTopicsEnable)
	b.setConfigPeers(cfg.Peers)
	b.askRemovals(old, next, "config reload dropped peers: asking the controller to remove them")
	return nil
}

// askRemovals asks the controller to remove the peers of old that next
// drops, and again those asked for before whose requests the controller
// state does not show yet, and records them in peers.json with next: a
// request proposed while the controller has no quorum may never commit,
// and the broker may restart meanwhile, which would otherwise leave the
// removal waiting for this broker's request for ever (a second SIGHUP
// with the same file finds nothing dropped).
func (b *Broker) askRemovals(old, next []uint64, msg string) {
	b.askMu.Lock()
	defer b.askMu.Unlock()
	var gone []uint64
	for _, id := range old {
		if !slices.Contains(next, id) {
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		b.log.Info().Uints64("node_ids", gone).Msg(msg)
	}
	view := b.machine.View()
	var asking []uint64
	for _, id := range slices.Concat(b.asking, gone) {
		shown := view.IsRemoved(id) || view.IsDraining(id) || slices.Contains(view.RemovalRequests[id], b.cfg.NodeID)
		if !slices.Contains(next, id) && !slices.Contains(asking, id) && !shown {
			asking = append(asking, id)
		}
	}
	b.asking = asking
	if len(asking) > 0 {
		b.sys.Root.Send(b.controller, &controller.RequestRemoval{NodeIDs: asking})
	}
	if err := writePeers(b.cfg.DataDir, lastPeers{Peers: next, Asking: asking}); err != nil {
		b.log.Warn().Err(err).Msg("cannot record the config's peers; a restart will compare its config with older ones")
	}
}

// askRemovalsAtStart compares the config's peers with those of the config
// the broker last ran with (peers.json in its data dir) and asks for the
// removal of those it drops, as Reload does, and again for those it asked
// for before whose requests the state may not show: an operator who edits
// the peers of a broker that is down and then starts it asks as one who
// edits a running broker's and sends SIGHUP. A removal waits for a
// majority of the voters that stay, and one that was down when the others
// were edited would otherwise never ask. A data dir from before the file
// existed asks for nothing.
func (b *Broker) askRemovalsAtStart() {
	next := peerIDs(b.cfg.Peers)
	last, ok, err := readPeers(b.cfg.DataDir)
	switch {
	case err != nil:
		b.log.Warn().Err(err).Msg("cannot read the peers the broker last ran with; not comparing")
	case ok:
		if err := checkPeerChange(b.cfg.NodeID, last.Peers, next, b.cfg.PeersDefaulted, b.machine.View()); err != nil {
			b.log.Error().Err(err).Uints64("last_peers", last.Peers).Msg("not asking for the removal of the peers the config dropped since the broker last ran")
			last = lastPeers{Peers: next}
		}
		b.askMu.Lock()
		b.asking = last.Asking
		b.askMu.Unlock()
	default:
		last.Peers = next
	}
	b.askRemovals(last.Peers, next, "the config dropped peers since the broker last ran: asking the controller to remove them")
}

func peerIDs(peers []configs.Peer) []uint64 {
	ids := make([]uint64, len(peers))
	for i, p := range peers {
		ids[i] = p.ID
	}
	return ids
}

// Removed is sent the reason once the cluster removed this broker: the
// broker must then stop; its data dir is marked so it will not start again.
func (b *Broker) Removed() <-chan string { return b.removed }

func (b *Broker) onRemoved(reason string) {
	b.removedOnce.Do(func() {
		if err := markRemoved(b.cfg.DataDir, reason); err != nil {
			b.log.Error().Err(err).Msg("cannot mark the data dir as removed")
		}
		b.removed <- reason
	})
}

// Controller returns the controller state machine (for its view).
func (b *Broker) Controller() *controller.StateMachine { return b.machine }

// Board returns the status of this broker's raft groups.
func (b *Broker) Board() *raftactor.StatusBoard { return b.board }

// Actors returns the broker's actor system.
func (b *Broker) Actors() *actors.System { return b.sys }

// RaftGroup returns the controller group's actor.
func (b *Broker) RaftGroup() *actor.PID { return b.raftGroup }

// ControllerActor returns the controller actor, which takes CreateTopics,
// DeleteTopics and CreatePartitions.
func (b *Broker) ControllerActor() *actor.PID { return b.controller }

// KafkaAddr returns the advertised Kafka address.
func (b *Broker) KafkaAddr() string { return b.kafkaAddr }

// Replicas returns the partition replicas this broker hosts.
func (b *Broker) Replicas() *partition.Replicas { return b.replicas }

// Leaders returns what this broker knows of every partition's leadership.
func (b *Broker) Leaders() *partition.Leaders { return b.leaders }

// Coordinators returns the offsets-topic partition replicas (group
// coordinators) this broker hosts.
func (b *Broker) Coordinators() *group.Coordinators { return b.coords }

// DebugAddr returns the debug endpoint's address, or "" when it is off.
func (b *Broker) DebugAddr() string { return b.debugAddr }
