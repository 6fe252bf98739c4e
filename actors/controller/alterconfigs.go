package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/raftactor"
)

// ConfigOpType is an IncrementalAlterConfigs operation, numbered as on the
// wire (Kafka's AlterConfigOp.OpType).
type ConfigOpType int8

// The operations of IncrementalAlterConfigs. APPEND and SUBTRACT apply only
// to list configs (ConfigDef.Type LIST).
const (
	ConfigSet ConfigOpType = iota
	ConfigDelete
	ConfigAppend
	ConfigSubtract
)

// String returns the operation's name as Kafka spells it.
func (o ConfigOpType) String() string {
	switch o {
	case ConfigSet:
		return "SET"
	case ConfigDelete:
		return "DELETE"
	case ConfigAppend:
		return "APPEND"
	case ConfigSubtract:
		return "SUBTRACT"
	}
	return fmt.Sprintf("operation %d", int8(o))
}

// ConfigOp is one operation on one config of a topic.
type ConfigOp struct {
	Name  string
	Op    ConfigOpType
	Value string // unused by ConfigDelete
}

// TopicAlteration is the operations on one topic's configs that one
// resource of an AlterConfigs request asks for. Its config names are
// distinct: the front door refuses a resource naming one twice, as
// Kafka's ConfigAdminManager does.
type TopicAlteration struct {
	Name string
	Ops  []ConfigOp
}

// planAlterConfigs checks one topic's alteration against view and returns
// the command that makes it, or the error to answer with, in the order of
// Kafka's ConfigurationControlManager: the operations (APPEND and SUBTRACT
// only on list configs), the resource's name, the configs the topic would
// have (ControllerConfigurationValidator), and last whether the topic
// exists. With replace (legacy AlterConfigs) the topic's configs become
// exactly those the operations set, which are all ConfigSet.
//
// The command carries single keys' new values, not the whole outcome, as
// Kafka's ConfigRecords do: an alteration of other keys applied meanwhile
// is kept, and since CanonicalTopicConfigs checks each key on its own, the
// outcome stays valid. The values it carries are canonical.
func planAlterConfigs(view *State, a TopicAlteration, replace bool) (*AlterTopicConfigs, error) {
	t := view.Topics[a.Name]
	next := map[string]string{}
	if t != nil && !replace {
		next = maps.Clone(t.Configs)
		if next == nil {
			next = map[string]string{}
		}
	}
	changed := map[string]*string{} // nil: deleted
	for _, op := range a.Ops {
		switch op.Op {
		case ConfigSet:
			next[op.Name] = op.Value
		case ConfigDelete:
			delete(next, op.Name)
		case ConfigAppend, ConfigSubtract:
			d, ok := topicConfigDef(op.Name)
			if !ok || d.Type != kmsg.ConfigTypeList {
				return nil, fmt.Errorf("%w: Can't %s to key %s because its type is not LIST", kerr.InvalidConfig, op.Op, op.Name)
			}
			cur, ok := next[op.Name]
			if !ok {
				cur = d.Default
			}
			next[op.Name] = alterList(cur, op.Op, op.Value)
		default:
			return nil, fmt.Errorf("%w: unknown operation %d on config %s", kerr.InvalidRequest, int8(op.Op), op.Name)
		}
		if v, ok := next[op.Name]; ok {
			changed[op.Name] = &v
		} else {
			changed[op.Name] = nil
		}
	}
	if a.Name == "" {
		return nil, fmt.Errorf("%w: Default topic resources are not allowed", kerr.InvalidRequest)
	}
	if err := ValidateTopicName(a.Name); err != nil {
		return nil, err
	}
	canonical, err := CanonicalTopicConfigs(next)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, fmt.Errorf("%w: The topic '%s' does not exist", kerr.UnknownTopicOrPartition, a.Name)
	}
	if t.Name == OffsetsTopic {
		// Its partitions are group coordinators (actors/group), not logs
		// these configs apply to: accepting a change would do nothing.
		return nil, fmt.Errorf("%w: the configs of %s cannot be changed: its partitions hold the consumer groups, which keep committed offsets for kafka.offsets_retention_minutes, not a log these configs apply to", kerr.InvalidConfig, OffsetsTopic)
	}
	cmd := &AlterTopicConfigs{ID: t.ID, Replace: replace}
	for _, k := range slices.Sorted(maps.Keys(changed)) {
		if changed[k] != nil {
			if cmd.Set == nil {
				cmd.Set = map[string]string{}
			}
			cmd.Set[k] = canonical[k]
		} else {
			cmd.Delete = append(cmd.Delete, k)
		}
	}
	return cmd, nil
}

// needLevel returns nil if every broker registered in view has a
// CommandLevel of level or more, and otherwise an INVALID_REQUEST error
// naming those that do not, which cannot do what.
func needLevel(view *State, level int, what string) error {
	var ids []uint64
	for id, b := range view.Brokers {
		if b.Level < level {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	return fmt.Errorf("%w: brokers %v run a version that does not %s; upgrade every broker first", kerr.InvalidRequest, ids, what)
}

// alterList appends the comma-separated values to the list config value
// cur (those it lacks) or subtracts them (the first occurrence of each),
// as Kafka's ConfigurationControlManager does; empty elements are dropped.
func alterList(cur string, op ConfigOpType, values string) string {
	parts := listParts(cur)
	for _, v := range listParts(values) {
		i := slices.Index(parts, v)
		switch {
		case op == ConfigAppend && i < 0:
			parts = append(parts, v)
		case op == ConfigSubtract && i >= 0:
			parts = slices.Delete(parts, i, i+1)
		}
	}
	return strings.Join(parts, ",")
}

func listParts(v string) []string {
	var parts []string
	for p := range strings.SplitSeq(v, ",") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return parts
}

// applyAlterTopicConfigs applies an AlterTopicConfigs entry: a no-op for a
// topic that is gone (deleted, its name perhaps taken again since).
func (sm *StateMachine) applyAlterTopicConfigs(next, cur *State, index uint64, a *AlterTopicConfigs) {
	t := cur.TopicByID(a.ID)
	if t == nil {
		return
	}
	configs := map[string]string{}
	if !a.Replace {
		maps.Copy(configs, t.Configs)
	}
	maps.Copy(configs, a.Set)
	for _, k := range a.Delete {
		delete(configs, k)
	}
	if len(configs) == 0 {
		configs = nil
	}
	nt := *t
	nt.Configs = configs
	next.Topics = maps.Clone(cur.Topics)
	next.Topics[t.Name] = &nt
	next.reindexTopics(cur, t.Name)
	set := slices.Sorted(maps.Keys(a.Set))
	sm.log.Info().Str("topic", t.Name).Str("topic_id", t.ID.String()).Strs("set", set).Strs("deleted", a.Delete).
		Bool("replace", a.Replace).Uint64("index", index).Msg("topic configs altered")
}

// alterConfigs plans each topic's alteration against the applied state,
// proposes the valid ones (none when validate-only), and answers once
// every one is decided. Like Kafka's controller, it answers once the
// change is committed (and applied here): the brokers hosting the topic's
// partitions apply it to them as their controller state reaches it.
func (c *controllerActor) alterConfigs(ctx actor.Context, m *AlterConfigs) {
	view := c.o.Machine.View()
	errs := make([]error, len(m.Topics))
	waiting := 0
	reply := func() { ctx.Send(m.ReplyTo, &AlterConfigsDone{Ref: m.Ref, Errs: errs}) }
	older := needLevel(view, 1, "apply topic config changes")
	for i, a := range m.Topics {
		cmd, err := planAlterConfigs(view, a, m.Replace)
		if err == nil {
			err = older
		}
		if err != nil || m.ValidateOnly {
			errs[i] = err
			continue
		}
		waiting++
		c.propose(ctx, &Command{AlterTopicConfigs: cmd}, func(p *raftactor.Proposed) {
			if p.Err != nil {
				errs[i] = proposalError(p.Err)
			} else if c.o.Machine.View().TopicByID(cmd.ID) == nil {
				errs[i] = fmt.Errorf("%w: topic %q was deleted before its configs were altered", kerr.UnknownTopicOrPartition, a.Name)
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
