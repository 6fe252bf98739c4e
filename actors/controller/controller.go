package controller

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.etcd.io/raft/v3"

	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// ControllerGroup is the raft group id of the controller.
const ControllerGroup = 0

// checkEveryTicks paces the controller actor's reconciliation: often enough
// that a broker registers within a tick or two of a leader appearing, rarely
// enough to cost nothing.
const checkEveryTicks = 2

// Options configure the controller actor.
type Options struct {
	NodeID    uint64
	KafkaAddr string // advertised Kafka address
	RaftAddr  string
	Raft      *actor.PID // the controller group's actor
	Machine   *StateMachine
	Board     *raftactor.StatusBoard
	// Announced returns what the leader of a partition group last said
	// of its leadership, as far as this broker heard (its board of
	// leaderships): a leader says so only once it serves clients, having
	// applied an entry of its term. CreateTopics and CreatePartitions
	// answer once every new partition's leader serves (served). Nil: what
	// raft knows here is taken instead, and a partition not hosted here
	// is not waited for.
	Announced func(group uint64) (netactor.LeaderInfo, bool)
	// LeaderServes reports whether this broker's replica of partition p
	// of t, which raft made leader, serves clients yet (it has applied
	// an entry of its term). Nil: raft's leadership is enough.
	LeaderServes func(t *Topic, p Partition) bool
	// Network is the peer transport (nil in tests without peers); Router
	// finds the raft groups this broker hosts.
	Network Network
	Router  *netactor.Router
	// ConfigPeers returns the peers of the config the broker runs with now
	// (a reload may change them).
	ConfigPeers func() map[uint64]string
	// Fresh is set when the controller group recovered nothing from this
	// broker's WAL at startup: until it applies a cluster id it knows of no
	// cluster, as little as a broker still waiting to start (NewProbe), and
	// tells a broker that asks so.
	Fresh bool
	// OnRemoved is called once when this broker finds that the cluster
	// removed it; the broker stops and must not start again.
	OnRemoved func(reason string)
	// Alive reports whether this broker has heard from a broker within
	// the session timeout (netactor.Liveness); nil finds every broker
	// alive. New replicas are placed on live brokers only, as Kafka places
	// them on unfenced brokers only.
	Alive func(id uint64) bool
	// Liveness is this broker's raw judgement of its peers: a registered
	// broker it finds dead, or alive again, is logged once, and counted
	// in DeadPeers (NewDeadPeersGauge). Nil for neither.
	Liveness  *netactor.Liveness
	DeadPeers prometheus.Gauge
	// ReplicaLagTicks is replica.lag.time.max.ms in ticks: a voter that
	// has not caught up with the controller leader for this long leaves
	// the group's ISR (insync.go). 0: 200.
	ReplicaLagTicks uint64
	// Leaderships hands the controller group's leadership and ISR, while
	// this broker leads it, to this broker's board of leaderships and to
	// its peers, every leadershipEveryTicks; nil: nobody.
	Leaderships func(ctx actor.SenderContext, infos []netactor.LeaderInfo)
	// MaxCommandBytes is the largest encoded command the raft transport
	// carries to the peers (netactor.MaxEntryBytes less what the raft
	// actor adds to an entry); 0: no limit. A larger command is refused,
	// never proposed: its entry would be appended on the leader and
	// dropped from every append message as too large for a frame, and
	// every later command would wait behind it.
	MaxCommandBytes int
	Log             zerolog.Logger
}

// NewActor returns the producer of the controller actor.
func NewActor(o Options) actor.Producer {
	if o.ReplicaLagTicks == 0 {
		o.ReplicaLagTicks = 200
	}
	return func() actor.Actor {
		return &controllerActor{
			o:          o,
			watch:      peerWatch{liveness: o.Liveness, gauge: o.DeadPeers},
			pending:    map[uint64]func(*raftactor.Proposed){},
			peers:      map[uint64]string{},
			completing: map[uint64]bool{},
			drainMoves: map[uint64]bool{},
			marking:    map[TopicID]uint64{},
			mb: membership{
				removedAt:     map[uint64]uint64{},
				wantRemoved:   map[uint64]bool{},
				requesting:    map[uint64]bool{},
				starting:      map[uint64]bool{},
				reregistering: map[uint64]bool{},
				askers:        map[uint64]asker{},
				activeAt:      map[uint64]uint64{},
				complained:    map[string]bool{},
			},
		}
	}
}

type controllerActor struct {
	o       Options
	ticks   uint64
	nextID  uint64
	pending map[uint64]func(*raftactor.Proposed) // proposal id → what to do with its outcome
	// ownInflight is the id of this broker's own reconciliation proposal
	// (registration, cluster id) awaiting its answer; 0 when none.
	ownInflight uint64
	ownSentAt   uint64

	// CreateTopics and CreatePartitions answers waiting for their
	// partitions' leaders.
	awaitLeaders []*leaderWait

	// marking holds the topics with a TopicLed in flight, and the tick it
	// was proposed at.
	marking map[TopicID]uint64

	// Producer ids: the rest of this broker's block, the requests waiting
	// for a block, and whether an allocation is under way.
	pidNext, pidEnd int64
	pidWaiters      []*InitProducerID
	pidAllocating   bool

	// Membership (cluster.go) and reassignments (reassign.go).
	mb         membership
	peers      map[uint64]string // the transport's peer table as this actor set it
	watch      peerWatch
	completing map[uint64]bool // groups with a CompleteReassignment in flight
	drainMoves map[uint64]bool // groups with a drain's Reassign in flight
	// stopping is this broker's notice of a clean stop, once AnnounceStop
	// came (control.go).
	stopping *stopAnnouncement
	// isr is the controller group's ISR while this broker leads it.
	isr inSync
}

// pidBlockSize is how many producer ids a broker takes at a time.
const pidBlockSize = 1000

// servePIDs answers waiting InitProducerID requests from the local block,
// allocating a new block through the controller log when it runs out.
func (c *controllerActor) servePIDs(ctx actor.Context) {
	for len(c.pidWaiters) > 0 && c.pidNext < c.pidEnd {
		w := c.pidWaiters[0]
		c.pidWaiters = c.pidWaiters[1:]
		ctx.Send(w.ReplyTo, &ProducerIDDone{Ref: w.Ref, ID: c.pidNext})
		c.pidNext++
	}
	if len(c.pidWaiters) == 0 || c.pidAllocating {
		return
	}
	c.pidAllocating = true
	c.propose(ctx, &Command{AllocatePIDs: &AllocatePIDs{NodeID: c.o.NodeID, Count: pidBlockSize}}, func(p *raftactor.Proposed) {
		c.pidAllocating = false
		if b, ok := c.o.Machine.View().PIDBlocks[c.o.NodeID]; p.Err == nil && ok && b.At == p.Index {
			c.pidNext, c.pidEnd = b.Start, b.Start+b.Count
		} else {
			err := proposalError(p.Err)
			if p.Err == nil {
				err = fmt.Errorf("%w: producer id block not found after allocation", kerr.UnknownServerError)
			}
			for _, w := range c.pidWaiters {
				ctx.Send(w.ReplyTo, &ProducerIDDone{Ref: w.Ref, ID: -1, Epoch: -1, Err: err})
			}
			c.pidWaiters = nil
			return
		}
		c.servePIDs(ctx)
	})
}

// proposalPatienceTicks is how long the actor waits for its own
// reconciliation proposal before proposing again; the raft group itself
// times proposals out well before.
const proposalPatienceTicks = 200

func (c *controllerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if c.o.Router != nil {
			c.o.Router.Set(netactor.ControlSink, ctx.Self())
		}
	case *actor.Stopping:
		if c.o.Router != nil {
			c.o.Router.Remove(netactor.ControlSink)
		}
	case *raftactor.Tick:
		c.ticks++
		if c.ticks%checkEveryTicks == 0 {
			c.reconcile(ctx)
			c.tickMembership(ctx)
			c.markLedTopics(ctx)
			c.watchPeers(c.o.Machine.View())
		}
		if c.ticks%isrEveryTicks == 0 {
			c.sampleISR()
		}
		if c.ticks%leadershipEveryTicks == 0 {
			c.broadcastLeadership(ctx)
		}
		c.answerLed(ctx)
		c.repeatStopNotice(ctx)
	case *netactor.ControlReceived:
		c.onControl(ctx, m.From, m.Data)
	case *AlterReassignments:
		c.alterReassignments(ctx, m)
	case *ReassignmentReached:
		c.reassignmentReached(ctx, m)
	case *ElectPreferred:
		c.electPreferred(ctx, m, true)
	case *AnnounceStop:
		c.announceStop(ctx, m)
	case *RequestRemoval:
		for _, id := range m.NodeIDs {
			c.mb.wantRemoved[id] = true
		}
	case *raftactor.Proposed:
		if done, ok := c.pending[m.ID]; ok {
			delete(c.pending, m.ID)
			done(m)
		}
	case *MarkTopicLed:
		c.markLed(ctx, m.ID)
	case *CreateTopics:
		c.createTopics(ctx, m)
	case *DeleteTopics:
		c.deleteTopics(ctx, m)
	case *CreatePartitions:
		c.createPartitions(ctx, m)
	case *AlterConfigs:
		c.alterConfigs(ctx, m)
	case *InitProducerID:
		c.pidWaiters = append(c.pidWaiters, m)
		c.servePIDs(ctx)
	}
}

// propose sends cmd to the controller group and calls done with the outcome,
// always from a later message: a command larger than MaxCommandBytes fails
// with RECORD_LIST_TOO_LARGE without being proposed: a raft frame could
// not carry it. (Kafka's controller refuses such a CreateTopics earlier, by
// its record count: POLICY_VIOLATION past MAX_RECORDS_PER_USER_OP.) Any of
// this broker's entries applied here catches its state up.
func (c *controllerActor) propose(ctx actor.Context, cmd *Command, done func(*raftactor.Proposed)) uint64 {
	c.nextID++
	c.pending[c.nextID] = func(p *raftactor.Proposed) {
		if p.Err == nil {
			c.o.Machine.MarkCaughtUp()
		}
		done(p)
	}
	data := cmd.Encode()
	if most := c.o.MaxCommandBytes; most > 0 && len(data) > most {
		err := fmt.Errorf("%w: a controller command of %d bytes, the raft transport carries at most %d (raft.max_frame_bytes less framing)", kerr.RecordListTooLarge, len(data), most)
		c.o.Log.Warn().Int("bytes", len(data)).Int("max_bytes", most).Msg("controller command too large for the raft transport; refused")
		ctx.Send(ctx.Self(), &raftactor.Proposed{ID: c.nextID, Err: err})
		return c.nextID
	}
	ctx.Send(c.o.Raft, &raftactor.Propose{ID: c.nextID, Data: data, ReplyTo: ctx.Self()})
	return c.nextID
}

// reconcile proposes what this broker should have in the controller state
// but does not yet, one command at a time; after the broker starts, at
// least one, which catches its state up (CatchUp).
func (c *controllerActor) reconcile(ctx actor.Context) {
	if c.ownInflight != 0 && c.ticks-c.ownSentAt < proposalPatienceTicks {
		return
	}
	st := c.o.Board.Get(ControllerGroup)
	if st == nil || st.Leader == 0 {
		return // no leader: a proposal would only be dropped
	}
	view := c.o.Machine.View()
	var cmd *Command
	switch {
	case view.ClusterID == "" && st.Role == "leader":
		cmd = &Command{InitCluster: &InitCluster{ClusterID: newClusterID()}}
	case !c.registered(view):
		cmd = &Command{RegisterBroker: &RegisterBroker{NodeID: c.o.NodeID, KafkaAddr: c.o.KafkaAddr, RaftAddr: c.o.RaftAddr, Level: CommandLevel}}
	case !c.o.Machine.CaughtUp():
		cmd = &Command{CatchUp: &CatchUp{NodeID: c.o.NodeID}}
	default:
		return
	}
	c.ownSentAt = c.ticks
	c.ownInflight = c.propose(ctx, cmd, func(p *raftactor.Proposed) {
		c.ownInflight = 0
		if p.Err != nil {
			c.o.Log.Debug().Err(p.Err).Msg("controller proposal failed; retrying")
		}
	})
}

func (c *controllerActor) registered(view *State) bool {
	b, ok := view.Brokers[c.o.NodeID]
	return ok && b.KafkaAddr == c.o.KafkaAddr && b.RaftAddr == c.o.RaftAddr && b.Level == CommandLevel
}

// createTopics validates each topic against the applied state, proposes the
// valid ones and answers when all are decided. A topic counts as created
// only if, once its entry is applied, the name maps to the id it proposed:
// a concurrent creation of the same name may have been applied first.
func (c *controllerActor) createTopics(ctx actor.Context, m *CreateTopics) {
	view := c.o.Machine.View()
	results := make([]TopicResult, len(m.Topics))
	waiting := 0
	reply := func() {
		if m.ReplyTo == nil { // auto-creation from Metadata does not wait
			return
		}
		// Answered once the new partitions' leaders serve (or the
		// request's timeout passed): a client that produces or fetches
		// right after must not find them leaderless, nor meet a leader
		// that refuses it. Kafka's ZooKeeper-era broker held the answer
		// until its metadata named every leader (DelayedCreatePartitions).
		var created []TopicID
		for _, r := range results {
			if r.Err == nil && !m.ValidateOnly {
				created = append(created, r.ID)
			}
		}
		c.await(ctx, &leaderWait{
			done:    &CreateTopicsDone{Ref: m.Ref, Results: results},
			results: results,
			replyTo: m.ReplyTo,
			topics:  created,
			what:    "was created",
		}, m.TimeoutTicks)
	}
	// Every copy of a repeated name is refused and none created, as
	// Kafka's ControllerApis.createTopics does before anything else (it
	// answers a repeated name once; here each copy has its answer).
	copies := make(map[string]int, len(m.Topics))
	for _, spec := range m.Topics {
		copies[spec.Name]++
	}
	var planned []string // the names this request creates so far
	for i, spec := range m.Topics {
		if copies[spec.Name] > 1 {
			results[i] = TopicResult{Name: spec.Name, Err: fmt.Errorf("%w: Duplicate topic name", kerr.InvalidRequest)}
			continue
		}
		cmd, res, err := planTopic(view, c.o.Alive, spec, planned)
		res.Err = err
		results[i] = res
		if err != nil {
			continue
		}
		planned = append(planned, spec.Name)
		if m.ValidateOnly {
			continue
		}
		waiting++
		c.propose(ctx, &Command{CreateTopic: cmd}, func(p *raftactor.Proposed) {
			if p.Err != nil {
				results[i].Err = proposalError(p.Err)
			} else if t := c.o.Machine.View().Topics[cmd.Name]; t == nil {
				// Created, then deleted before this answer.
				results[i].Err = fmt.Errorf("%w: topic '%s' was created concurrently and deleted since", kerr.TopicAlreadyExists, cmd.Name)
			} else if t.ID != cmd.ID {
				results[i].Err = fmt.Errorf("%w: Topic '%s' already exists", kerr.TopicAlreadyExists, cmd.Name)
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

// leaderWait is a CreateTopics or CreatePartitions answer held until the
// partitions of the topics it created or grew have leaders.
type leaderWait struct {
	done    any           // the answer
	results []TopicResult // the answer's results, to mark timed out
	replyTo *actor.PID
	topics  []TopicID
	// from is, per topic grown by CreatePartitions, its first new
	// partition: the older ones are not waited for (one may have lost its
	// leader long ago).
	from     map[TopicID]int32
	deadline uint64 // in ticks
	what     string // what happened to a topic, for the timeout's message
}

// await answers w once the partitions it waits for have leaders, or at
// once when its request's timeout was 0.
func (c *controllerActor) await(ctx actor.Context, w *leaderWait, timeoutTicks uint64) {
	if timeoutTicks == 0 {
		ctx.Send(w.replyTo, w.done)
		return
	}
	w.deadline = c.ticks + timeoutTicks
	c.awaitLeaders = append(c.awaitLeaders, w)
	c.answerLed(ctx)
}

// answerLed sends the held answers whose partitions all have leaders
// that serve, as far as this broker can tell (served). Past the request's
// timeout the topics still without them get REQUEST_TIMED_OUT, as Kafka
// answers them; they exist and will get leaders.
func (c *controllerActor) answerLed(ctx actor.Context) {
	if len(c.awaitLeaders) == 0 {
		return
	}
	view := c.o.Machine.View()
	kept := c.awaitLeaders[:0]
	for _, w := range c.awaitLeaders {
		ready := true
		for _, id := range w.topics {
			if t := view.TopicByID(id); t != nil && !c.led(t, w.from[id]) {
				ready = false
			}
		}
		switch {
		case ready:
			ctx.Send(w.replyTo, w.done)
		case c.ticks >= w.deadline:
			for i, r := range w.results {
				if t := view.TopicByID(r.ID); r.Err == nil && t != nil && slices.Contains(w.topics, r.ID) && !c.led(t, w.from[r.ID]) {
					w.results[i].Err = fmt.Errorf("%w: topic %q %s but its partitions have no leader yet", kerr.RequestTimedOut, r.Name, w.what)
				}
			}
			ctx.Send(w.replyTo, w.done)
		default:
			kept = append(kept, w)
		}
	}
	c.awaitLeaders = kept
}

// led reports whether every partition of t from index from on has a
// leader that serves clients, as far as this broker knows (served).
// Answering before would let a client that reads Metadata next see a
// partition it just made without a leader, or with one that refuses it.
func (c *controllerActor) led(t *Topic, from int32) bool {
	return c.partitionsLed(t, t.Partitions[min(int(max(from, 0)), len(t.Partitions)):])
}

// partitionsLed reports whether every partition ps of t has a leader that
// serves clients, as far as this broker knows (served).
func (c *controllerActor) partitionsLed(t *Topic, ps []Partition) bool {
	for _, p := range ps {
		if !c.served(t, p) {
			return false
		}
	}
	return true
}

// served reports whether partition p of t has a leader that serves
// clients, as far as this broker knows: its own replica, which leads and
// has applied an entry of its term (LeaderServes), or a leader that said
// so itself (Announced), in a term no older than this broker's replica
// knows. That raft here knows a leader is not enough: a follower learns
// its leader from the leader's first append, before the leader has
// applied an entry of its term, and until then the leader refuses Fetch
// and ListOffsets with NOT_LEADER_OR_FOLLOWER and holds Produce. This
// broker's own word counts only through its replica: one that halted, or
// stepped down in the term it said it served, leads no more, and Metadata
// here names no leader for it (kafka's knownLeader).
func (c *controllerActor) served(t *Topic, p Partition) bool {
	st := c.o.Board.Get(p.Group)
	if st != nil && (st.Halted != "" || !slices.Contains(p.Replicas, c.o.NodeID)) {
		st = nil // a replica that knows nothing, or one no longer assigned here
	}
	if st != nil && st.Leader == c.o.NodeID {
		return c.o.LeaderServes == nil || c.o.LeaderServes(t, p)
	}
	if c.o.Announced == nil {
		return st == nil || st.Leader != 0
	}
	li, ok := c.o.Announced(p.Group)
	return ok && li.Leader != 0 && li.Leader != c.o.NodeID && (st == nil || li.Term >= st.Term)
}

// markLedTopics, on the controller's leader, proposes TopicLed for the
// topics being created whose created partitions all have leaders that
// serve (partitionsLed): the front doors mark the topics they show, and
// this marks those nobody asked about, so that a topic all of whose
// partitions were led once is not hidden later (a restarted broker would
// find it leaderless in part).
func (c *controllerActor) markLedTopics(ctx actor.Context) {
	if st := c.o.Board.Get(ControllerGroup); st == nil || st.Role != "leader" {
		return
	}
	for _, t := range c.o.Machine.View().Topics {
		if t.Creating && c.partitionsLed(t, t.CreatedPartitions()) {
			c.markLed(ctx, t.ID)
		}
	}
}

// markLed proposes TopicLed for a topic still being created, unless one
// is in flight: one proposal per topic at a time, another after
// proposalPatienceTicks without an answer.
func (c *controllerActor) markLed(ctx actor.Context, id TopicID) {
	if t := c.o.Machine.View().TopicByID(id); t == nil || !t.Creating {
		delete(c.marking, id)
		return
	}
	if at, ok := c.marking[id]; ok && c.ticks-at < proposalPatienceTicks {
		return
	}
	c.marking[id] = c.ticks
	c.propose(ctx, &Command{TopicLed: &TopicLed{ID: id}}, func(p *raftactor.Proposed) {
		delete(c.marking, id)
		if p.Err != nil {
			c.o.Log.Debug().Err(p.Err).Str("topic_id", id.String()).Msg("marking a topic's creation finished failed; retrying when its leaders are seen again")
		}
	})
}

// deleteTopics deletes the topics m names, refusing with INVALID_REQUEST,
// as Kafka's ControllerApis.deleteTopics does, the zero id, a name or an id
// given twice, and a name and an id of the same topic: such a request is
// ambiguous, so none of those topics is deleted.
func (c *controllerActor) deleteTopics(ctx actor.Context, m *DeleteTopics) {
	view := c.o.Machine.View()
	names := make(map[string]int, len(m.Names))
	for _, name := range m.Names {
		names[name]++
	}
	ids := make(map[TopicID]int, len(m.IDs))
	for _, id := range m.IDs {
		ids[id]++
	}
	named := make(map[TopicID]bool, len(m.Names)) // the ids of the topics given by name
	for name := range names {
		if t := view.Topics[name]; t != nil {
			named[t.ID] = true
		}
	}
	results := make([]TopicResult, 0, len(m.Names)+len(m.IDs))
	var targets []*Topic // parallel to results; nil where the lookup failed
	for _, name := range m.Names {
		t := view.Topics[name]
		r := TopicResult{Name: name}
		switch {
		case names[name] > 1:
			r.Err, t = fmt.Errorf("%w: Duplicate topic name", kerr.InvalidRequest), nil
		case t != nil && ids[t.ID] > 0:
			r.ID, r.Err, t = t.ID, fmt.Errorf("%w: The provided topic name maps to an ID that was already supplied", kerr.InvalidRequest), nil
		case t == nil:
			r.Err = kerr.UnknownTopicOrPartition // bare, as Kafka answers (KafkaApis.handleDeleteTopicsRequest)
		case t.Name == OffsetsTopic:
			r.ID, r.Err, t = t.ID, errInternalTopic, nil
		default:
			r.ID = t.ID
		}
		results, targets = append(results, r), append(targets, t)
	}
	for _, id := range m.IDs {
		t := view.TopicByID(id)
		r := TopicResult{ID: id}
		switch {
		case id == TopicID{}:
			r.Err, t = fmt.Errorf("%w: Neither topic name nor id were specified", kerr.InvalidRequest), nil
		case ids[id] > 1:
			r.Err, t = fmt.Errorf("%w: Duplicate topic id", kerr.InvalidRequest), nil
		case named[id]:
			r.Name, r.Err, t = t.Name, fmt.Errorf("%w: The provided topic id is also supplied by name", kerr.InvalidRequest), nil
		case t == nil:
			r.Err = kerr.UnknownTopicID
		case t.Name == OffsetsTopic:
			r.Name, r.Err, t = t.Name, errInternalTopic, nil
		default:
			r.Name = t.Name
		}
		results, targets = append(results, r), append(targets, t)
	}
	waiting := 0
	reply := func() { ctx.Send(m.ReplyTo, &DeleteTopicsDone{Ref: m.Ref, Results: results}) }
	for i, t := range targets {
		if t == nil {
			continue
		}
		waiting++
		c.propose(ctx, &Command{DeleteTopic: &DeleteTopic{ID: t.ID}}, func(p *raftactor.Proposed) {
			if p.Err != nil {
				results[i].Err = proposalError(p.Err)
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

// proposalError maps a failed controller proposal to what a Kafka client
// should see: the outcome is unknown, so a retriable timeout, or "not
// controller" when there is no leader to take it, wrapping raft's reason
// (raftactor.ErrLeaderChanged: the proposal may still be applied); a
// command refused as too large (propose) as it is.
func proposalError(err error) error {
	if errors.Is(err, kerr.RecordListTooLarge) {
		return err
	}
	if errors.Is(err, raftactor.ErrNotReady) || errors.Is(err, raftactor.ErrLeaderChanged) || errors.Is(err, raft.ErrProposalDropped) {
		return fmt.Errorf("%w: %w", kerr.NotController, err)
	}
	return fmt.Errorf("%w: %v", kerr.RequestTimedOut, err)
}

func newClusterID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}
