package kafka

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
)

func (c *serviceConn) createTopics(ctx actor.Context, r *Request, req *kmsg.CreateTopicsRequest) {
	ref := c.ref()
	c.admin[ref] = r
	specs := make([]controller.TopicSpec, len(req.Topics))
	for i, t := range req.Topics {
		spec := controller.TopicSpec{Name: t.Topic, Partitions: t.NumPartitions, ReplicationFactor: t.ReplicationFactor}
		if len(t.ReplicaAssignment) > 0 {
			// Partitions must be numbered 0 to N-1: one out of that range,
			// or repeated, leaves a partition unassigned, which the
			// controller refuses. The request never sizes anything here.
			spec.Assignment = make([][]uint64, len(t.ReplicaAssignment))
		}
		for _, a := range t.ReplicaAssignment {
			if a.Partition < 0 || int(a.Partition) >= len(spec.Assignment) {
				continue
			}
			ids := make([]uint64, len(a.Replicas))
			for j, id := range a.Replicas {
				ids[j] = uint64(max(id, 0))
			}
			spec.Assignment[a.Partition] = ids
		}
		if len(t.Configs) > 0 {
			spec.Configs = map[string]string{}
			for _, cfg := range t.Configs {
				if cfg.Value != nil {
					spec.Configs[cfg.Name] = *cfg.Value
				}
			}
		}
		specs[i] = spec
	}
	ctx.Send(c.s.Controller, &controller.CreateTopics{Ref: ref, Topics: specs, ValidateOnly: req.ValidateOnly,
		TimeoutTicks: c.s.adminTicks(req.TimeoutMillis), ReplyTo: ctx.Self()})
}

func (c *serviceConn) createTopicsDone(ctx actor.Context, m *controller.CreateTopicsDone) {
	r, ok := c.takeAdmin(m.Ref)
	if !ok {
		return
	}
	req := r.Msg.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	for _, res := range m.Results {
		rt := kmsg.NewCreateTopicsResponseTopic()
		rt.Topic = res.Name
		rt.TopicID = res.ID
		rt.ErrorCode, rt.ErrorMessage = code(res.Err), message(res.Err)
		rt.NumPartitions, rt.ReplicationFactor = -1, -1
		if res.Err == nil {
			rt.NumPartitions, rt.ReplicationFactor = res.Partitions, res.ReplicationFactor
			for _, e := range topicConfigEntries(res.Configs, c.s.topicDefaults()) {
				rc := kmsg.NewCreateTopicsResponseTopicConfig()
				rc.Name, rc.Value, rc.ReadOnly, rc.Source, rc.IsSensitive = e.name, &e.value, false, e.source, false
				rt.Configs = append(rt.Configs, rc)
			}
		}
		resp.Topics = append(resp.Topics, rt)
	}
	ctx.Send(r.ReplyTo, r.Reply(resp))
}

func (c *serviceConn) deleteTopics(ctx actor.Context, r *Request, req *kmsg.DeleteTopicsRequest) {
	ref := c.ref()
	c.admin[ref] = r
	m := &controller.DeleteTopics{Ref: ref, ReplyTo: ctx.Self()}
	m.Names = append(m.Names, req.TopicNames...) // v0-v5
	for _, t := range req.Topics {               // v6+: by name or by id
		switch {
		case t.Topic != nil && t.TopicID != [16]byte{}:
			// Refused in deleteTopicsDone, as Kafka refuses it.
		case t.Topic != nil:
			m.Names = append(m.Names, *t.Topic)
		default:
			m.IDs = append(m.IDs, controller.TopicID(t.TopicID))
		}
	}
	ctx.Send(c.s.Controller, m)
}

func (c *serviceConn) deleteTopicsDone(ctx actor.Context, m *controller.DeleteTopicsDone) {
	r, ok := c.takeAdmin(m.Ref)
	if !ok {
		return
	}
	req := r.Msg.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	for _, res := range m.Results {
		rt := kmsg.NewDeleteTopicsResponseTopic()
		if res.Name != "" {
			name := res.Name
			rt.Topic = &name
		}
		rt.TopicID = res.ID
		rt.ErrorCode, rt.ErrorMessage = code(res.Err), message(res.Err)
		resp.Topics = append(resp.Topics, rt)
	}
	for _, t := range req.Topics {
		if t.Topic != nil && t.TopicID != [16]byte{} {
			rt := kmsg.NewDeleteTopicsResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			rt.ErrorCode, rt.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr("You may not specify both topic name and topic id.")
			resp.Topics = append(resp.Topics, rt)
		}
	}
	ctx.Send(r.ReplyTo, r.Reply(resp))
}

// adminTicks converts the timeout of a CreateTopics or CreatePartitions
// into ticks: 0, not waiting for leaders, for a timeout <= 0 (Kafka then
// answers as soon as the creation has started).
func (s *Service) adminTicks(ms int32) uint64 {
	if ms <= 0 {
		return 0
	}
	return s.ticks(ms)
}

func (c *serviceConn) createPartitions(ctx actor.Context, r *Request, req *kmsg.CreatePartitionsRequest) {
	ref := c.ref()
	c.admin[ref] = r
	specs := make([]controller.PartitionsSpec, len(req.Topics))
	for i, t := range req.Topics {
		spec := controller.PartitionsSpec{Name: t.Topic, Count: t.Count}
		if t.Assignment != nil { // null: the controller places them
			spec.Assignment = make([][]uint64, len(t.Assignment))
			for j, a := range t.Assignment {
				ids := make([]uint64, len(a.Replicas))
				for k, id := range a.Replicas {
					ids[k] = uint64(max(id, 0)) // 0 is never a broker id
				}
				spec.Assignment[j] = ids
			}
		}
		specs[i] = spec
	}
	ctx.Send(c.s.Controller, &controller.CreatePartitions{Ref: ref, Topics: specs, ValidateOnly: req.ValidateOnly,
		TimeoutTicks: c.s.adminTicks(req.TimeoutMillis), ReplyTo: ctx.Self()})
}

func (c *serviceConn) createPartitionsDone(ctx actor.Context, m *controller.CreatePartitionsDone) {
	r, ok := c.takeAdmin(m.Ref)
	if !ok {
		return
	}
	resp := r.Msg.(*kmsg.CreatePartitionsRequest).ResponseKind().(*kmsg.CreatePartitionsResponse)
	for _, res := range m.Results {
		rt := kmsg.NewCreatePartitionsResponseTopic()
		rt.Topic = res.Name
		rt.ErrorCode, rt.ErrorMessage = code(res.Err), message(res.Err)
		resp.Topics = append(resp.Topics, rt)
	}
	ctx.Send(r.ReplyTo, r.Reply(resp))
}

func (c *serviceConn) initProducerID(ctx actor.Context, r *Request, req *kmsg.InitProducerIDRequest) {
	if req.TransactionalID != nil {
		resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code // transactions are not supported
		ctx.Send(r.ReplyTo, r.Reply(resp))
		return
	}
	// An idempotent producer asking to bump its epoch (KIP-360) gets a new
	// id instead: it restarts its sequences either way.
	ref := c.ref()
	c.admin[ref] = r
	ctx.Send(c.s.Controller, &controller.InitProducerID{Ref: ref, ReplyTo: ctx.Self()})
}

func (c *serviceConn) producerIDDone(ctx actor.Context, m *controller.ProducerIDDone) {
	r, ok := c.takeAdmin(m.Ref)
	if !ok {
		return
	}
	resp := r.Msg.(*kmsg.InitProducerIDRequest).ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch, resp.ErrorCode = m.ID, m.Epoch, code(m.Err)
	if m.Err != nil {
		resp.ProducerID, resp.ProducerEpoch = -1, -1
	}
	ctx.Send(r.ReplyTo, r.Reply(resp))
}

type configEntry struct {
	name, value string
	source      int8 // kmsg.ConfigSource
	typ         kmsg.ConfigType
	doc         string
}

// topicDefaults returns this broker's topic config defaults now.
func (s *Service) topicDefaults() controller.TopicDefaults {
	if s.TopicDefaults == nil {
		return nil
	}
	return s.TopicDefaults()
}

// defaultEntry is a config at this broker's default: from its config
// file (STATIC_BROKER_CONFIG) when that differs from the built-in one, as
// Kafka reports a default its server.properties sets.
func defaultEntry(name string, d controller.ConfigDef, defaults controller.TopicDefaults) configEntry {
	e := configEntry{name: name, value: defaults.Value(d.Name), source: int8(kmsg.ConfigSourceDefaultConfig), typ: d.Type, doc: d.Doc}
	if defaults.Overridden(d.Name) {
		e.source = int8(kmsg.ConfigSourceStaticBrokerConfig)
	}
	return e
}

// topicConfigEntries lists every topic config Flotilla keeps with its
// effective value: set on the topic, or this broker's default.
func topicConfigEntries(set map[string]string, defaults controller.TopicDefaults) []configEntry {
	var out []configEntry
	for _, d := range controller.TopicConfigDefs() {
		e := defaultEntry(d.Name, d, defaults)
		if v, ok := set[d.Name]; ok {
			e.value, e.source = v, int8(kmsg.ConfigSourceDynamicTopicConfig)
		}
		out = append(out, e)
	}
	return out
}

// describeConfigs answers for topics (their configs over the defaults) and
// for this broker (the topic defaults it applies, under Kafka's broker
// names, and its id).
func (s *Service) describeConfigs(req *kmsg.DescribeConfigsRequest) *kmsg.DescribeConfigsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	view := s.Machine.View()
	for _, rs := range req.Resources {
		rr := kmsg.NewDescribeConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = rs.ResourceType, rs.ResourceName
		var entries []configEntry
		switch rs.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			t := view.Topics[rs.ResourceName]
			if t == nil {
				rr.ErrorCode = kerr.UnknownTopicOrPartition.Code
				break
			}
			entries = topicConfigEntries(t.Configs, s.topicDefaults())
		case kmsg.ConfigResourceTypeBroker:
			if rs.ResourceName != "" && rs.ResourceName != strconv.FormatUint(s.NodeID, 10) {
				rr.ErrorCode = kerr.InvalidRequest.Code
				msg := fmt.Sprintf("this is broker %d", s.NodeID)
				rr.ErrorMessage = &msg
				break
			}
			entries = brokerConfigEntries(s.NodeID, s.AutoCreate != nil && s.AutoCreate(), s.topicDefaults())
		case kmsg.ConfigResourceTypeBrokerLogger:
			// Kafka lists its log4j loggers; Flotilla has one level.
			rr.ErrorCode = kerr.InvalidRequest.Code
			rr.ErrorMessage = kmsg.StringPtr("broker loggers are not supported: the broker logs at the log.level of its YAML config file")
		default:
			// The wording of Kafka's ConfigHelper.describeConfigs. Kafka
			// itself never gets there: its authorization step fails the
			// whole request (INVALID_REQUEST for every resource, no
			// message); the other resources are answered here.
			rr.ErrorCode = kerr.InvalidRequest.Code
			rr.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Unsupported resource type: %s", rs.ResourceType))
		}
		want := map[string]bool{}
		for _, k := range rs.ConfigNames {
			want[k] = true
		}
		for _, e := range entries {
			if len(want) > 0 && !want[e.name] {
				continue
			}
			rc := kmsg.NewDescribeConfigsResponseResourceConfig()
			value := e.value
			// Topic configs are altered through the controller; a broker's
			// come from its config file, read-only to Kafka clients.
			readOnly := rs.ResourceType != kmsg.ConfigResourceTypeTopic
			rc.Name, rc.Value, rc.ReadOnly, rc.Source = e.name, &value, readOnly, kmsg.ConfigSource(e.source)
			rc.IsDefault = e.source == int8(kmsg.ConfigSourceDefaultConfig)
			rc.ConfigType = e.typ
			if req.IncludeDocumentation {
				doc := e.doc
				rc.Documentation = &doc
			}
			rr.Configs = append(rr.Configs, rc)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp
}

// brokerNames maps topic configs to the broker configs that default them.
var brokerNames = map[string]string{
	"cleanup.policy":                  "log.cleanup.policy",
	"compression.type":                "compression.type",
	"max.message.bytes":               "message.max.bytes",
	"message.timestamp.after.max.ms":  "log.message.timestamp.after.max.ms",
	"message.timestamp.before.max.ms": "log.message.timestamp.before.max.ms",
	"message.timestamp.type":          "log.message.timestamp.type",
	"min.insync.replicas":             "min.insync.replicas",
	"retention.bytes":                 "log.retention.bytes",
	"retention.ms":                    "log.retention.ms",
	"segment.bytes":                   "log.segment.bytes",
	"unclean.leader.election.enable":  "unclean.leader.election.enable",
}

func brokerConfigEntries(nodeID uint64, autoCreate bool, defaults controller.TopicDefaults) []configEntry {
	create := configEntry{name: "auto.create.topics.enable", value: "true", source: int8(kmsg.ConfigSourceDefaultConfig),
		typ: kmsg.ConfigTypeBoolean, doc: "Whether Metadata and a producer's first send create a topic that does not exist."}
	if !autoCreate {
		create.value, create.source = "false", int8(kmsg.ConfigSourceStaticBrokerConfig)
	}
	out := []configEntry{
		{name: "broker.id", value: strconv.FormatUint(nodeID, 10), source: int8(kmsg.ConfigSourceStaticBrokerConfig),
			typ: kmsg.ConfigTypeInt, doc: "This broker's node_id."},
		create,
		{name: "num.partitions", value: "1", source: int8(kmsg.ConfigSourceDefaultConfig),
			typ: kmsg.ConfigTypeInt, doc: "Partitions of an auto-created topic."},
	}
	for _, d := range controller.TopicConfigDefs() {
		out = append(out, defaultEntry(brokerNames[d.Name], d, defaults))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// takeAdmin returns the admin request waiting on the controller under
// ref, and forgets it.
func (c *serviceConn) takeAdmin(ref uint64) (*Request, bool) {
	r, ok := c.admin[ref]
	delete(c.admin, ref)
	return r, ok
}
