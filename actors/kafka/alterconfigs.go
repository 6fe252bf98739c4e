package kafka

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
)

// alterResource is one resource of an IncrementalAlterConfigs or a
// (legacy) AlterConfigs request; the legacy request's configs are all SETs.
type alterResource struct {
	typ     kmsg.ConfigResourceType
	name    string
	configs []alterEntry
}

type alterEntry struct {
	name  string
	op    kmsg.IncrementalAlterConfigOp
	value *string
}

// alterResources returns the resources of an IncrementalAlterConfigs or
// AlterConfigs request, whether it is the legacy one (which replaces a
// resource's configs) and whether it only validates.
func alterResources(msg kmsg.Request) (rs []alterResource, legacy, validateOnly bool) {
	switch req := msg.(type) {
	case *kmsg.IncrementalAlterConfigsRequest:
		for _, res := range req.Resources {
			ar := alterResource{typ: res.ResourceType, name: res.ResourceName}
			for _, c := range res.Configs {
				ar.configs = append(ar.configs, alterEntry{name: c.Name, op: c.Op, value: c.Value})
			}
			rs = append(rs, ar)
		}
		return rs, false, req.ValidateOnly
	case *kmsg.AlterConfigsRequest:
		for _, res := range req.Resources {
			ar := alterResource{typ: res.ResourceType, name: res.ResourceName}
			for _, c := range res.Configs {
				ar.configs = append(ar.configs, alterEntry{name: c.Name, op: kmsg.IncrementalAlterConfigOpSet, value: c.Value})
			}
			rs = append(rs, ar)
		}
		return rs, true, req.ValidateOnly
	}
	return nil, false, false
}

// alterPlan is what the front door makes of a config alteration, as Kafka's
// ConfigAdminManager.preprocess does on the broker that receives it: the
// answers of the resources it settles itself, and the topic alterations it
// leaves to the controller.
type alterPlan struct {
	errs    []error // per resource
	topics  []controller.TopicAlteration
	resOfTo []int // per topic alteration, the index of its resource
}

// errBrokerConfigsStatic ends the answer to an alteration of a broker
// resource: Kafka's error for configs it cannot change at runtime
// (DynamicBrokerConfig), and where Flotilla's are changed instead.
const errBrokerConfigsStatic = "Flotilla's broker configs come from its YAML config file: edit the file and send the broker SIGHUP (kill -HUP) to reload it; DescribeConfigs shows the values in force"

// planAlter settles what the receiving broker settles of resources, in
// the order Kafka's ConfigAdminManager checks it: a resource named twice
// (every copy refused), a config named twice in a resource, a null value
// (allowed only to delete), the resource type and, for a broker resource,
// its name and configs. Broker resources are settled here, as Kafka
// validates them on the receiving broker: Flotilla changes none of their
// configs at runtime. Topic resources go to the controller.
func planAlter(rs []alterResource, nodeID uint64, legacy bool) alterPlan {
	plan := alterPlan{errs: make([]error, len(rs))}
	type key struct {
		typ  kmsg.ConfigResourceType
		name string
	}
	times := map[key]int{}
	for _, r := range rs {
		times[key{r.typ, r.name}]++
	}
	for i, r := range rs {
		if times[key{r.typ, r.name}] > 1 {
			plan.errs[i] = fmt.Errorf("%w: Each resource must appear at most once", kerr.InvalidRequest)
			continue
		}
		if err := checkAlterEntries(r.configs, legacy); err != nil {
			plan.errs[i] = err
			continue
		}
		switch r.typ {
		case kmsg.ConfigResourceTypeTopic:
			a := controller.TopicAlteration{Name: r.name}
			for _, c := range r.configs {
				op := controller.ConfigOp{Name: c.name, Op: controller.ConfigOpType(c.op)}
				if c.value != nil {
					op.Value = *c.value
				}
				a.Ops = append(a.Ops, op)
			}
			plan.topics = append(plan.topics, a)
			plan.resOfTo = append(plan.resOfTo, i)
		case kmsg.ConfigResourceTypeBroker:
			plan.errs[i] = checkBrokerAlteration(r, nodeID)
		case kmsg.ConfigResourceTypeBrokerLogger:
			if legacy {
				plan.errs[i] = fmt.Errorf("%w: Unknown resource type %d", kerr.InvalidRequest, int8(r.typ))
				break
			}
			plan.errs[i] = fmt.Errorf("%w: broker loggers cannot be changed at runtime: set log.level in the broker's YAML config file and send it SIGHUP (kill -HUP)", kerr.InvalidRequest)
		case kmsg.ConfigResourceTypeClientMetrics, kmsg.ConfigResourceTypeGroupConfig:
			plan.errs[i] = fmt.Errorf("%w: %s resources are not supported", kerr.InvalidRequest, r.typ)
		default:
			plan.errs[i] = fmt.Errorf("%w: Unknown resource type %d", kerr.InvalidRequest, int8(r.typ))
		}
	}
	return plan
}

// checkAlterEntries refuses a config named twice, and a null value but
// for a DELETE (legacy AlterConfigs has none).
func checkAlterEntries(cs []alterEntry, legacy bool) error {
	seen := make(map[string]bool, len(cs))
	for _, c := range cs {
		if seen[c.name] {
			return fmt.Errorf("%w: Error due to duplicate config keys", kerr.InvalidRequest)
		}
		seen[c.name] = true
	}
	var nulls []string
	for _, c := range cs {
		if c.value == nil && (legacy || c.op != kmsg.IncrementalAlterConfigOpDelete) {
			nulls = append(nulls, c.name)
		}
	}
	if len(nulls) > 0 {
		return fmt.Errorf("%w: Null value not supported for : %s", kerr.InvalidRequest, strings.Join(nulls, ", "))
	}
	return nil
}

// checkBrokerAlteration answers an alteration of a broker resource: the
// name must be empty (every broker) or this broker's id, as Kafka's
// ConfigAdminManager requires, and any config is one Flotilla cannot
// change at runtime, which Kafka answers with INVALID_REQUEST ("Cannot
// update these configs dynamically"), validate-only or not. No configs
// change nothing, and succeed.
func checkBrokerAlteration(r alterResource, nodeID uint64) error {
	if r.name != "" {
		id, err := strconv.ParseInt(r.name, 10, 32)
		if err != nil {
			return fmt.Errorf("%w: Node id must be an integer, but it is: %s", kerr.InvalidRequest, r.name)
		}
		if uint64(id) != nodeID {
			return fmt.Errorf("%w: Unexpected broker id, expected %d, but received %s", kerr.InvalidRequest, nodeID, r.name)
		}
	}
	for _, c := range r.configs {
		if c.op > kmsg.IncrementalAlterConfigOpSubtract || c.op < 0 {
			return fmt.Errorf("%w: Unknown operations type %d", kerr.InvalidRequest, int8(c.op))
		}
	}
	if len(r.configs) == 0 {
		return nil
	}
	names := make([]string, len(r.configs))
	for i, c := range r.configs {
		names[i] = c.name
	}
	slices.Sort(names)
	return fmt.Errorf("%w: Cannot update these configs dynamically: [%s]. %s", kerr.InvalidRequest, strings.Join(names, ", "), errBrokerConfigsStatic)
}

// alterConfigs serves IncrementalAlterConfigs and AlterConfigs: the
// resources this broker settles are answered with those the controller
// actor decides (any broker's: it proposes to the controller group, whose
// leader raft forwards the entry to, as Kafka forwards the request to its
// active controller).
func (c *serviceConn) alterConfigs(ctx actor.Context, r *Request) {
	rs, legacy, validateOnly := alterResources(r.Msg)
	plan := planAlter(rs, c.s.NodeID, legacy)
	if len(plan.topics) == 0 {
		ctx.Send(r.ReplyTo, r.Reply(alterConfigsResponse(r.Msg, rs, plan.errs)))
		return
	}
	ref := c.ref()
	c.admin[ref] = r
	ctx.Send(c.s.Controller, &controller.AlterConfigs{Ref: ref, Topics: plan.topics, Replace: legacy,
		ValidateOnly: validateOnly, ReplyTo: ctx.Self()})
}

func (c *serviceConn) alterConfigsDone(ctx actor.Context, m *controller.AlterConfigsDone) {
	r, ok := c.takeAdmin(m.Ref)
	if !ok {
		return
	}
	rs, legacy, _ := alterResources(r.Msg)
	plan := planAlter(rs, c.s.NodeID, legacy) // as alterConfigs made it
	for i, err := range m.Errs {
		if i < len(plan.resOfTo) {
			plan.errs[plan.resOfTo[i]] = err
		}
	}
	ctx.Send(r.ReplyTo, r.Reply(alterConfigsResponse(r.Msg, rs, plan.errs)))
}

// alterConfigsResponse answers each resource in request order with its
// error.
func alterConfigsResponse(msg kmsg.Request, rs []alterResource, errs []error) kmsg.Response {
	switch req := msg.(type) {
	case *kmsg.IncrementalAlterConfigsRequest:
		resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
		for i, r := range rs {
			rr := kmsg.NewIncrementalAlterConfigsResponseResource()
			rr.ResourceType, rr.ResourceName = r.typ, r.name
			rr.ErrorCode, rr.ErrorMessage = code(errs[i]), message(errs[i])
			resp.Resources = append(resp.Resources, rr)
		}
		return resp
	case *kmsg.AlterConfigsRequest:
		resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
		for i, r := range rs {
			rr := kmsg.NewAlterConfigsResponseResource()
			rr.ResourceType, rr.ResourceName = r.typ, r.name
			rr.ErrorCode, rr.ErrorMessage = code(errs[i]), message(errs[i])
			resp.Resources = append(resp.Resources, rr)
		}
		return resp
	}
	panic(fmt.Sprintf("alterConfigsResponse of %T", msg)) // Serve routes only these two
}
