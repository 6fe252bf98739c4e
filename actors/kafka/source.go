package kafka

import (
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/raftactor"
)

// ClusterSource is the broker's MetadataSource: brokers and topics from the
// controller's applied state, leaders and epochs from the raft status of
// the partition groups. Safe for concurrent use: it reads published views
// only, and sends auto-creations through a root context.
type ClusterSource struct {
	Self       uint64 // this broker's node id
	Machine    *controller.StateMachine
	Board      *raftactor.StatusBoard
	Replicas   *partition.Replicas
	Leaders    *partition.Leaders // leaderships learnt from the peers
	Controller *actor.PID
	Sender     actor.SenderContext // the actor system's root context
	// AutoCreate reports whether Metadata creates the topics it names
	// that do not exist, when the request allows it (Kafka's
	// auto.create.topics.enable, which a reload may change); nil never
	// does.
	AutoCreate func() bool
	// OffsetsPartitions is the partition count of the offsets topic, for
	// its auto-creation (the group coordinator's setting, as
	// FindCoordinator creates it; the controller chooses its replication
	// factor).
	OffsetsPartitions int32
	// Now is the clock that paces auto-creations and TopicLed hints; nil
	// is time.Now.
	Now func() time.Time
	// Alive reports whether this broker has heard from a broker within
	// the session timeout (netactor.Liveness); nil finds every broker
	// alive. A dead broker is answered as Kafka answers a fenced one.
	Alive func(id uint64) bool
	// Stopping reports whether a broker announced a clean stop
	// (netactor.Liveness.Stopping); nil finds none stopping. A stopping
	// broker is answered as Kafka answers one in controlled shutdown: out
	// of the ISRs, and fenced once it leads nothing (stoppingLeaders).
	Stopping func(id uint64) bool
	Log      zerolog.Logger

	// led holds the topics being created whose created partitions this
	// broker saw all led, until the controller's state says so too.
	led sync.Map // controller.TopicID → time.Time of the last hint sent

	mu    sync.Mutex
	asked map[string]time.Time // auto-creations sent, by topic name
}

// autoCreateRetry is how long a topic's auto-creation is not asked again:
// clients ask for a missing topic's metadata every retry.backoff.ms (100
// ms) until it appears, and one creation under way is enough; past it a
// creation the controller refused (or lost) is asked again.
const autoCreateRetry = time.Second

func (s *ClusterSource) alive(id uint64) bool { return s.Alive == nil || s.Alive(id) }

// listed reports whether a broker is unfenced in Metadata: alive, and,
// when stopping, still leading (stopping, from stoppingLeaders).
func (s *ClusterSource) listed(id uint64, stopping map[uint64]bool) bool {
	leads, ok := stopping[id]
	return s.alive(id) && (!ok || leads)
}

// stoppingLeaders returns the alive brokers that announced a clean stop,
// each with whether this broker still knows it as the leader (or the
// outgoing leader) of some partition; nil when no broker is stopping, the
// common case, without looking at the partitions. A Metadata answer takes
// it once and judges every broker by it: a stop announced while the
// answer is being built would otherwise fence a broker halfway, with
// every partition it leads answered LEADER_NOT_AVAILABLE. Kafka keeps a broker in controlled
// shutdown registered and unfenced, named as the leader of what it leads,
// until its leaderships have moved (ReplicationControlManager.
// handleBrokerInControlledShutdown moves them in the same record batch
// that takes it out of the ISRs): hiding it sooner answers its partitions
// LEADER_NOT_AVAILABLE until their new leader is known here, where its
// held produce path answers NOT_LEADER_OR_FOLLOWER naming the new one.
// Once it leads nothing it is fenced, so that clients do not meet its
// closed sockets.
func (s *ClusterSource) stoppingLeaders(view *controller.State) map[uint64]bool {
	if s.Stopping == nil {
		return nil
	}
	var stopping []uint64
	for id := range view.Brokers {
		if s.Stopping(id) && s.alive(id) {
			stopping = append(stopping, id)
		}
	}
	if len(stopping) == 0 {
		return nil
	}
	leading := make(map[uint64]bool, len(stopping))
	for _, id := range stopping {
		leading[id] = false
	}
	for _, t := range view.Topics {
		for _, p := range t.Partitions {
			if leader, _, _, _ := s.leadership(t, p); leader != 0 && slices.Contains(stopping, leader) {
				leading[leader] = true
			}
		}
	}
	return leading
}

// Cluster implements MetadataSource: the registered brokers that are
// alive, and not stopping unless they still lead; the others are Fenced,
// as Kafka's Metadata lists only unfenced brokers.
func (s *ClusterSource) Cluster() Cluster {
	view := s.Machine.View()
	leading := s.stoppingLeaders(view)
	c := Cluster{ClusterID: view.ClusterID, ControllerID: -1}
	if st := s.Board.Get(controller.ControllerGroup); st != nil && st.Leader != 0 {
		c.ControllerID = int32(st.Leader)
	}
	for _, b := range view.BrokerList() {
		kb, err := NewBroker(b.NodeID, b.KafkaAddr)
		if err != nil {
			s.Log.Warn().Err(err).Msg("registered broker cannot be advertised")
			continue
		}
		if s.listed(b.NodeID, leading) {
			c.Brokers = append(c.Brokers, kb)
		} else {
			c.Fenced = append(c.Fenced, kb)
		}
	}
	return c
}

// Topics implements MetadataSource.
func (s *ClusterSource) Topics(q TopicQuery) []Topic {
	if !s.Machine.CaughtUp() {
		return notCaughtUp(s.Machine.View(), q)
	}
	view := s.Machine.View()
	leading := s.stoppingLeaders(view)
	var out []Topic
	if q.All {
		for _, name := range view.TopicNames() {
			out = append(out, s.topic(view, view.Topics[name], leading))
		}
		return out
	}
	var create []controller.TopicSpec
	for _, name := range q.Names {
		if t := view.Topics[name]; t != nil {
			out = append(out, s.topic(view, t, leading))
		} else if controller.ValidateTopicName(name) != nil {
			// Kafka answers a name no topic can have at once, auto-creation
			// or not (AutoTopicCreationManager.filterCreatableTopics), so
			// that a producer fails instead of retrying until it times out.
			out = append(out, Topic{Name: name, ErrorCode: kerr.InvalidTopicException.Code})
		} else if q.AllowAutoCreate && s.AutoCreate != nil && s.AutoCreate() {
			if s.askCreate(name) {
				create = append(create, s.autoSpec(name))
			}
			out = append(out, Topic{Name: name, ErrorCode: kerr.LeaderNotAvailable.Code})
		}
	}
	for _, id := range q.IDs {
		if t := view.TopicByID(controller.TopicID(id)); t != nil {
			out = append(out, s.topic(view, t, leading))
		}
	}
	if len(create) > 0 {
		// Fire and forget: the client asks again, as Kafka clients do after
		// LEADER_NOT_AVAILABLE, and the creation is asked again past
		// autoCreateRetry; a topic the controller refuses (a name
		// colliding with another's) simply never appears, as in Kafka.
		s.Sender.Send(s.Controller, &controller.CreateTopics{Topics: create})
	}
	return out
}

// notCaughtUp answers every topic asked (every topic of view for All)
// with LEADER_NOT_AVAILABLE and nothing else, while the controller state
// has not caught up (controller.StateMachine.CaughtUp): its topics, ids
// and partitions may be ones the cluster has deleted or replaced since,
// and a name missing from it may exist, so nothing is auto-created either.
// Clients retry, as they would until a Kafka broker has loaded the
// metadata log and serves.
func notCaughtUp(view *controller.State, q TopicQuery) []Topic {
	var out []Topic
	if q.All {
		for _, name := range view.TopicNames() {
			out = append(out, Topic{Name: name, ErrorCode: kerr.LeaderNotAvailable.Code})
		}
		return out
	}
	for _, name := range q.Names {
		out = append(out, Topic{Name: name, ErrorCode: kerr.LeaderNotAvailable.Code})
	}
	for _, id := range q.IDs {
		var name string
		if t := view.TopicByID(controller.TopicID(id)); t != nil {
			name = t.Name
		}
		out = append(out, Topic{Name: name, ID: id, ErrorCode: kerr.LeaderNotAvailable.Code})
	}
	return out
}

// autoSpec is the topic Metadata creates for a missing name: with the
// broker defaults, or the offsets topic with its own settings, as Kafka's
// AutoTopicCreationManager creates it (the controller refuses it
// otherwise).
func (s *ClusterSource) autoSpec(name string) controller.TopicSpec {
	if name == controller.OffsetsTopic {
		return controller.TopicSpec{Name: name, Partitions: s.OffsetsPartitions, ReplicationFactor: -1, Internal: true}
	}
	return controller.TopicSpec{Name: name, Partitions: -1, ReplicationFactor: -1}
}

// askCreate reports whether name's auto-creation should be sent now: not
// if it was within autoCreateRetry. It forgets the older ones.
func (s *ClusterSource) askCreate(name string) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.asked[name]; ok && now.Sub(at) < autoCreateRetry {
		return false
	}
	for n, at := range s.asked {
		if now.Sub(at) >= autoCreateRetry {
			delete(s.asked, n)
		}
	}
	if s.asked == nil {
		s.asked = map[string]time.Time{}
	}
	s.asked[name] = now
	return true
}

// topic converts one topic. Its partitions' replicas are the assignment,
// which during a reassignment is the union of the target and the replicas
// leaving, as Kafka reports it. A replica is offline when its broker is not
// (or no longer) registered, or fenced in Metadata (listed: dead to this
// broker, not heard from within the session timeout, or stopping and
// leading nothing); a fenced broker is in no ISR, and a partition whose
// latest known leader is fenced has none (LEADER_NOT_AVAILABLE), at the
// epoch last known, as Kafka answers for a partition whose leader was
// fenced with no other replica to take over. A stopping broker still
// leading (leading) stays the leader of what it leads, and in no other
// ISR.
func (s *ClusterSource) topic(view *controller.State, t *controller.Topic, leading map[uint64]bool) Topic {
	kt := Topic{Name: t.Name, ID: t.ID, Internal: t.Name == controller.OffsetsTopic}
	allLed := true
	for _, p := range t.Partitions {
		kp := Partition{Partition: p.Index, Leader: -1, LeaderEpoch: -1}
		for _, id := range p.Replicas {
			kp.Replicas = append(kp.Replicas, int32(id))
			if _, ok := view.Brokers[id]; !ok || view.IsRemoved(id) || !s.listed(id, leading) {
				kp.Offline = append(kp.Offline, int32(id))
			}
		}
		leader, term, isr, known := s.leadership(t, p)
		allLed = allLed && (leader != 0 || p.AddedAt != 0)
		if known {
			kp.LeaderEpoch = int32(term)
		}
		// A leader out of the replicas is stale (namesLeader); liveness here is
		// Metadata's own, which also fences a stopping broker leading
		// nothing.
		if namesLeader(p, leader, nil) && s.listed(leader, leading) {
			kp.Leader = int32(leader)
		}
		for _, id := range isr {
			// Kafka's leader is always in its ISR; a stopping broker is in
			// no other (handleBrokerInControlledShutdown). No ISR member
			// is ever out of the replicas: Kafka takes the removed ones
			// out of the ISR in the record that completes a reassignment
			// (PartitionReassignmentReplicas.maybeCompleteReassignment),
			// while a leader's broadcast from before may still name them.
			if _, stopping := leading[id]; slices.Contains(p.Replicas, id) && s.listed(id, leading) && (id == leader || !stopping) {
				kp.ISR = append(kp.ISR, int32(id))
			}
		}
		kt.Partitions = append(kt.Partitions, kp)
	}
	// A topic being created is LEADER_NOT_AVAILABLE as a whole until every
	// partition it was created with has had a leader, as Kafka answers for
	// a topic being created: clients retry instead of caching leaderless
	// partitions (kafka-go gives up on those). That fact is the
	// controller's (Topic.Creating), so every broker, one restarted or
	// added later too, shows the topic from then on; later elections show
	// per partition, as in Kafka, and so do partitions added later
	// (CreatePartitions): hiding the whole topic then would make clients,
	// the Java one first, drop the partitions they use. Until the
	// controller records it, what this broker saw itself counts.
	if t.Creating {
		if allLed {
			s.sawLed(view, t.ID)
		} else if _, seen := s.led.Load(t.ID); !seen {
			kt.ErrorCode = kerr.LeaderNotAvailable.Code
		}
	}
	return kt
}

// markLedEvery paces the hints a front door sends the controller for a
// topic it saw led while the controller still has it being created: the
// proposal of one may be lost (a leader change), and the controller's
// leader marks only what it sees led itself.
const markLedEvery = time.Second

// now is the source's clock: Now, or the wall clock.
func (s *ClusterSource) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// sawLed notes that the topic being created with this id had its created
// partitions all led, and tells the controller, again every markLedEvery
// while the controller's state has it being created; it forgets the
// topics the controller has marked since, or deleted.
func (s *ClusterSource) sawLed(view *controller.State, id controller.TopicID) {
	now := s.now()
	if at, known := s.led.Load(id); known && now.Sub(at.(time.Time)) < markLedEvery {
		return
	}
	s.led.Store(id, now)
	s.Sender.Send(s.Controller, &controller.MarkTopicLed{ID: id})
	s.led.Range(func(k, _ any) bool {
		if t := view.TopicByID(k.(controller.TopicID)); t == nil || !t.Creating {
			s.led.Delete(k)
		}
		return true
	})
}

// leadership returns what this broker knows of a partition's leadership
// (partitionLeadership).
func (s *ClusterSource) leadership(t *controller.Topic, p controller.Partition) (leader, term uint64, isr []uint64, known bool) {
	return partitionLeadership(s.Board, s.Leaders, s.Replicas, s.Self, s.Alive, t, p)
}
