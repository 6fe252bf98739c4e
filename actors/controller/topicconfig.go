package controller

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ConfigDef is one topic-level config that Flotilla keeps: its broker
// default and what values it accepts. DescribeConfigs reports these; any
// other key is refused at CreateTopics.
type ConfigDef struct {
	Name    string
	Default string
	Doc     string
	// Type is Kafka's type of the config (LogConfig's ConfigDef), which
	// DescribeConfigs reports; a LIST is the only kind
	// IncrementalAlterConfigs may APPEND to or SUBTRACT from.
	Type kmsg.ConfigType
	// parse checks a value and returns it as it is stored.
	parse func(string) (string, error)
}

// TopicConfigDefs returns the topic configs Flotilla keeps, sorted by name.
func TopicConfigDefs() []ConfigDef {
	return []ConfigDef{
		{"cleanup.policy", "delete", "Only delete: log compaction is not supported.", kmsg.ConfigTypeList, oneOf("delete")},
		{"compression.type", "producer", "Batches are stored as the producer compressed them.", kmsg.ConfigTypeString, oneOf("producer")},
		{"max.message.bytes", "1048588", "Largest record batch the topic accepts.", kmsg.ConfigTypeInt, intAtLeast(0)},
		// KIP-937, with Kafka 4's defaults (KIP-1030 brought after.max.ms
		// down from forever to an hour).
		{"message.timestamp.after.max.ms", "3600000", "How far after the broker's clock a CreateTime record's timestamp may be.", kmsg.ConfigTypeLong, intAtLeast(0)},
		{"message.timestamp.before.max.ms", "9223372036854775807", "How far before the broker's clock a CreateTime record's timestamp may be.", kmsg.ConfigTypeLong, intAtLeast(0)},
		{"message.timestamp.type", "CreateTime", "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's.", kmsg.ConfigTypeString, oneOf("CreateTime", "LogAppendTime")},
		{"min.insync.replicas", "1", "Replicas that must have an acks=all write.", kmsg.ConfigTypeInt, intAtLeast(1)},
		{"retention.bytes", "-1", "Bytes a partition keeps before deleting old segments; -1: no limit.", kmsg.ConfigTypeLong, intAtLeast(-1)},
		{"retention.ms", "604800000", "Age after which segments are deleted; -1: forever.", kmsg.ConfigTypeLong, intAtLeast(-1)},
		// At least one batch header and at most 32-bit index positions:
		// the partition log refuses other sizes.
		{"segment.bytes", "1073741824", "Size at which a partition rolls its segment.", kmsg.ConfigTypeInt, intBetween(61, math.MaxInt32)},
		// Raft elects only a replica holding every committed entry, so the
		// one value Flotilla can honour is Kafka's default; tools that
		// harden topics set it explicitly.
		{"unclean.leader.election.enable", "false", "Only false: a leader always holds every committed record.", kmsg.ConfigTypeBoolean, oneOf("false")},
	}
}

// TopicConfigDefault returns the broker default of a topic config.
func TopicConfigDefault(name string) (string, bool) {
	d, ok := topicConfigDef(name)
	return d.Default, ok
}

// topicConfigDef returns the definition of topic config name.
func topicConfigDef(name string) (ConfigDef, bool) {
	defs := TopicConfigDefs()
	i := slices.IndexFunc(defs, func(d ConfigDef) bool { return d.Name == name })
	if i < 0 {
		return ConfigDef{}, false
	}
	return defs[i], true
}

// TopicDefaults are the values a broker gives the configs a topic does not
// set, by topic config name. A name it lacks has its built-in default
// (TopicConfigDefs); the broker's config file sets the others (Kafka's
// log.retention.ms and the like). A TopicDefaults in use is not modified:
// a reload makes a new one.
type TopicDefaults map[string]string

// Value returns the default of topic config name.
func (d TopicDefaults) Value(name string) string {
	if v, ok := d[name]; ok {
		return v
	}
	v, _ := TopicConfigDefault(name)
	return v
}

// Overridden reports whether the broker's default of name differs from the
// built-in one, i.e. comes from its config file.
func (d TopicDefaults) Overridden(name string) bool {
	v, ok := d[name]
	if !ok {
		return false
	}
	def, _ := TopicConfigDefault(name)
	return v != def
}

// CanonicalTopicConfigs checks a topic's configs, given at its creation or
// the outcome of an alteration, and returns them as they are stored:
// integers in their canonical form. strconv.ParseInt, like Kafka's
// ConfigDef (Long.parseLong), takes any number of leading zeros, so a
// value passes at any length; stored as given it would make a controller
// entry as large as the request, and Kafka's DescribeConfigs reports the
// parsed value (ConfigDef.convertToString) anyway. The error is
// INVALID_CONFIG wrapped with the key and the reason; of several bad keys
// it names the least. Each key is checked on its own: no config's validity
// depends on another's, so an alteration checked against one state of a
// topic stays valid against a later one (alterations apply as changes of
// single keys, as Kafka's ConfigRecords do).
func CanonicalTopicConfigs(configs map[string]string) (map[string]string, error) {
	if configs == nil {
		return nil, nil
	}
	out := make(map[string]string, len(configs))
	for _, k := range slices.Sorted(maps.Keys(configs)) {
		v := configs[k]
		d, ok := topicConfigDef(k)
		if !ok {
			return nil, fmt.Errorf("%w: unknown or unsupported topic config %q", kerr.InvalidConfig, k)
		}
		c, err := d.parse(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s=%q: %v", kerr.InvalidConfig, k, v, err)
		}
		out[k] = c
	}
	return out, nil
}

func oneOf(values ...string) func(string) (string, error) {
	return func(v string) (string, error) {
		if slices.Contains(values, v) {
			return v, nil
		}
		return "", fmt.Errorf("must be one of %v", values)
	}
}

func intAtLeast(lo int64) func(string) (string, error) {
	return intBetween(lo, math.MaxInt64)
}

// intBetween parses an integer from lo to hi, and stores it canonically.
func intBetween(lo, hi int64) func(string) (string, error) {
	return func(v string) (string, error) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", fmt.Errorf("not an integer")
		}
		if n < lo {
			return "", fmt.Errorf("must be at least %d", lo)
		}
		if n > hi {
			return "", fmt.Errorf("must be at most %d", hi)
		}
		return strconv.FormatInt(n, 10), nil
	}
}
