package kafka

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// metadataResponse answers a Metadata request from src, with Kafka's
// semantics: a null topic array (v1+), or an empty one in v0, asks for all
// topics and an empty one (v1+) for none; v12+ may name topics by id;
// auto-creation is allowed before v4 and when the request allows it; a topic
// the source does not know is UNKNOWN_TOPIC_OR_PARTITION (by name) or
// UNKNOWN_TOPIC_ID (by id).
func metadataResponse(req *kmsg.MetadataRequest, src MetadataSource) *kmsg.MetadataResponse {
	v := req.Version
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	cl := src.Cluster()
	resp.Brokers = make([]kmsg.MetadataResponseBroker, 0, len(cl.Brokers))
	for _, b := range cl.Brokers {
		mb := kmsg.NewMetadataResponseBroker()
		mb.NodeID, mb.Host, mb.Port, mb.Rack = b.NodeID, b.Host, b.Port, b.Rack
		resp.Brokers = append(resp.Brokers, mb)
	}
	if cl.ClusterID != "" {
		resp.ClusterID = &cl.ClusterID
	}
	resp.ControllerID = cl.ControllerID
	if v >= 8 && v <= 10 && req.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = clusterAuthorizedOps
	}
	includeOps := v >= 8 && req.IncludeTopicAuthorizedOperations

	if (v == 0 && len(req.Topics) == 0) || (v >= 1 && req.Topics == nil) {
		for _, t := range sortedTopics(src.Topics(TopicQuery{All: true})) {
			resp.Topics = append(resp.Topics, responseTopic(&t, includeOps))
		}
		return resp
	}

	// Classify what was asked, in request order, without duplicates.
	type ask struct {
		name    string
		id      [16]byte
		byID    bool
		invalid bool
	}
	q := TopicQuery{AllowAutoCreate: v < 4 || req.AllowAutoTopicCreation}
	asks := make([]ask, 0, len(req.Topics))
	seenName := make(map[string]bool, len(req.Topics))
	seenID := make(map[[16]byte]bool)
	for _, t := range req.Topics {
		hasID := t.TopicID != [16]byte{}
		switch {
		case v >= 12 && hasID:
			if !seenID[t.TopicID] {
				seenID[t.TopicID] = true
				q.IDs = append(q.IDs, t.TopicID)
				asks = append(asks, ask{id: t.TopicID, byID: true})
			}
		case t.Topic == nil || hasID:
			// A null name, or an id before v12 (Kafka refuses both).
			asks = append(asks, ask{id: t.TopicID, invalid: true})
		default:
			if !seenName[*t.Topic] {
				seenName[*t.Topic] = true
				q.Names = append(q.Names, *t.Topic)
				asks = append(asks, ask{name: *t.Topic})
			}
		}
	}
	var byName map[string]*Topic
	var byID map[[16]byte]*Topic
	if len(q.Names)+len(q.IDs) > 0 {
		found := src.Topics(q)
		byName = make(map[string]*Topic, len(found))
		byID = make(map[[16]byte]*Topic, len(q.IDs))
		for i := range found {
			t := &found[i]
			byName[t.Name] = t
			if t.ID != [16]byte{} {
				byID[t.ID] = t
			}
		}
	}
	resp.Topics = make([]kmsg.MetadataResponseTopic, 0, len(asks))
	for _, a := range asks {
		var t *Topic
		if a.byID {
			t = byID[a.id]
		} else if !a.invalid {
			t = byName[a.name]
		}
		if t != nil {
			resp.Topics = append(resp.Topics, responseTopic(t, includeOps))
			continue
		}
		mt := kmsg.NewMetadataResponseTopic()
		mt.TopicID = a.id
		switch {
		case a.invalid:
			mt.ErrorCode = codeInvalidRequest
		case a.byID:
			mt.ErrorCode = codeUnknownTopicID
		default:
			mt.ErrorCode = codeUnknownTopicOrPartition
		}
		// Names are nullable only from v12; before, an unnamed answer is "".
		if !a.byID || v < 12 {
			name := a.name
			mt.Topic = &name
		}
		resp.Topics = append(resp.Topics, mt)
	}
	return resp
}

// responseTopic converts one topic to its Metadata form.
func responseTopic(t *Topic, includeOps bool) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.Name
	mt.Topic = &name
	mt.TopicID = t.ID
	mt.ErrorCode = t.ErrorCode
	mt.IsInternal = t.Internal
	if includeOps {
		mt.AuthorizedOperations = topicAuthorizedOps
	}
	mt.Partitions = make([]kmsg.MetadataResponseTopicPartition, 0, len(t.Partitions))
	for _, p := range t.Partitions {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition = p.Partition
		mp.ErrorCode = p.ErrorCode
		if p.Leader < 0 && p.ErrorCode == codeNone {
			mp.ErrorCode = codeLeaderNotAvailable
		}
		mp.Leader = p.Leader
		mp.LeaderEpoch = p.LeaderEpoch
		mp.Replicas = p.Replicas
		mp.ISR = p.ISR
		mp.OfflineReplicas = p.Offline
		mt.Partitions = append(mt.Partitions, mp)
	}
	return mt
}

// Endpoint types of DescribeCluster v1+.
const (
	endpointBrokers     int8 = 1
	endpointControllers int8 = 2
)

// describeClusterResponse answers a DescribeCluster request from src. A
// broker serves the brokers endpoint only; Kafka's brokers answer a request
// for the controllers endpoint with UNSUPPORTED_ENDPOINT_TYPE. Fenced (dead)
// brokers are listed, marked, only when a v2+ request asks for them
// (KIP-1073).
func describeClusterResponse(req *kmsg.DescribeClusterRequest, src MetadataSource) *kmsg.DescribeClusterResponse {
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	if req.Version >= 1 {
		resp.EndpointType = req.EndpointType
		var msg string
		switch req.EndpointType {
		case endpointBrokers:
		case endpointControllers:
			resp.ErrorCode, msg = codeUnsupportedEndpointType, "this broker does not serve the controllers endpoint"
		default:
			resp.ErrorCode, msg = codeInvalidRequest, "unknown endpoint type"
		}
		if resp.ErrorCode != codeNone {
			resp.ErrorMessage = &msg
			return resp
		}
	}
	cl := src.Cluster()
	resp.ClusterID = cl.ClusterID
	resp.ControllerID = cl.ControllerID
	resp.Brokers = make([]kmsg.DescribeClusterResponseBroker, 0, len(cl.Brokers))
	for _, b := range cl.Brokers {
		db := kmsg.NewDescribeClusterResponseBroker()
		db.NodeID, db.Host, db.Port, db.Rack = b.NodeID, b.Host, b.Port, b.Rack
		resp.Brokers = append(resp.Brokers, db)
	}
	if req.Version >= 2 && req.IncludeFencedBrokers {
		for _, b := range cl.Fenced {
			db := kmsg.NewDescribeClusterResponseBroker()
			db.NodeID, db.Host, db.Port, db.Rack, db.IsFenced = b.NodeID, b.Host, b.Port, b.Rack, true
			resp.Brokers = append(resp.Brokers, db)
		}
	}
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = clusterAuthorizedOps
	}
	return resp
}
