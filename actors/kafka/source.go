package kafka

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"sync"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/raftactor"
)

// ClusterSource is the broker's MetadataSource: brokers and topics from the
// controller's applied state, leaders and epochs from the raft status of
// the partition groups. Safe for concurrent use: it reads published views
// only, and sends auto-creations through a root context.
type ClusterSource struct {
	Machine    *controller.StateMachine
	Board      *raftactor.StatusBoard
	Replicas   *partition.Replicas
	Leaders    *partition.Leaders // leaderships learnt from the peers
	Controller *actor.PID
	Sender     actor.SenderContext // the actor system's root context
	AutoCreate bool
	Log        zerolog.Logger

	led sync.Map // topic id → true once its partitions all had a leader
}

// Cluster implements MetadataSource.
func (s *ClusterSource) Cluster() Cluster {
	view := s.Machine.View()
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
		c.Brokers = append(c.Brokers, kb)
	}
	return c
}

// Topics implements MetadataSource.
func (s *ClusterSource) Topics(q TopicQuery) []Topic {
	view := s.Machine.View()
	var out []Topic
	if q.All {
		for _, name := range view.TopicNames() {
			out = append(out, s.topic(view, view.Topics[name]))
		}
		return out
	}
	var create []controller.TopicSpec
	for _, name := range q.Names {
		if t := view.Topics[name]; t != nil {
			out = append(out, s.topic(view, t))
		} else if controller.ValidateTopicName(name) != nil {
			// Kafka answers a name no topic can have at once, auto-creation
			// or not (AutoTopicCreationManager.filterCreatableTopics), so
			// that a producer fails instead of retrying until it times out.
			out = append(out, Topic{Name: name, ErrorCode: kerr.InvalidTopicException.Code})
		} else if q.AllowAutoCreate && s.AutoCreate {
			create = append(create, controller.TopicSpec{Name: name, Partitions: -1, ReplicationFactor: -1})
			out = append(out, Topic{Name: name, ErrorCode: kerr.LeaderNotAvailable.Code})
		}
	}
	for _, id := range q.IDs {
		if t := view.TopicByID(controller.TopicID(id)); t != nil {
			out = append(out, s.topic(view, t))
		}
	}
	if len(create) > 0 {
		// Fire and forget: the client asks again, as Kafka clients do after
		// LEADER_NOT_AVAILABLE; a topic the controller refuses (a name
		// colliding with another's) simply never appears, as in Kafka.
		s.Sender.Send(s.Controller, &controller.CreateTopics{Topics: create})
	}
	return out
}

// topic converts one topic. Its partitions' replicas are the assignment,
// which during a reassignment is the union of the target and the replicas
// leaving, as Kafka reports it; a replica is offline when its broker is not
// (or no longer) registered: the controller knows nothing else of the
// brokers' health.
func (s *ClusterSource) topic(view *controller.State, t *controller.Topic) Topic {
	kt := Topic{Name: t.Name, ID: t.ID, Internal: t.Name == controller.OffsetsTopic}
	for _, p := range t.Partitions {
		kp := Partition{Partition: p.Index, Leader: -1, LeaderEpoch: -1}
		for _, id := range p.Replicas {
			kp.Replicas = append(kp.Replicas, int32(id))
			if _, ok := view.Brokers[id]; !ok || view.IsRemoved(id) {
				kp.Offline = append(kp.Offline, int32(id))
			}
		}
		if st := s.Board.Get(p.Group); st != nil && st.Leader != 0 {
			kp.Leader, kp.LeaderEpoch = int32(st.Leader), int32(st.Term)
			kp.ISR = []int32{int32(st.Leader)}
		}
		// The leader keeps the ISR (Kafka's time rule) and answers from its
		// live view; it also tells every broker, which is how the others —
		// those that do not host the partition too — know it.
		if v := s.localLeaderView(t.Name, p.Index); v != nil {
			kp.Leader, kp.LeaderEpoch = int32(v.LeaderID), v.Epoch
			kp.ISR = kp.ISR[:0]
			for _, id := range v.ISR {
				kp.ISR = append(kp.ISR, int32(id))
			}
		} else if li, ok := s.Leaders.Get(p.Group); ok && int32(li.Term) >= kp.LeaderEpoch {
			kp.Leader, kp.LeaderEpoch = int32(li.Leader), int32(li.Term)
			kp.ISR = kp.ISR[:0]
			for _, id := range li.ISR {
				kp.ISR = append(kp.ISR, int32(id))
			}
		}
		kt.Partitions = append(kt.Partitions, kp)
	}
	// A new topic is LEADER_NOT_AVAILABLE as a whole until every partition
	// has had a leader once (known locally or from its leader's broadcast),
	// as Kafka answers for a topic being created: clients retry instead of
	// caching leaderless partitions (kafka-go gives up on those). Later
	// elections show per partition, as in Kafka.
	if _, known := s.led.Load(t.ID); !known {
		if allLed(kt) {
			s.led.Store(t.ID, true)
		} else {
			kt.ErrorCode = kerr.LeaderNotAvailable.Code
		}
	}
	return kt
}

// localLeaderView returns the view of a partition this broker leads, or nil.
func (s *ClusterSource) localLeaderView(topic string, p int32) *partition.View {
	if r := s.Replicas.Get(partition.TopicPartition{Topic: topic, Partition: p}); r != nil {
		if v := r.Machine.View(); v.Leader && len(v.ISR) > 0 {
			return v
		}
	}
	return nil
}

func allLed(kt Topic) bool {
	for _, p := range kt.Partitions {
		if p.Leader < 0 {
			return false
		}
	}
	return true
}
