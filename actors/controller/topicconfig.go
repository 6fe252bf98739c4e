package controller

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
)

// ConfigDef is one topic-level config that Flotilla keeps: its broker
// default and what values it accepts. DescribeConfigs reports these; any
// other key is refused at CreateTopics.
type ConfigDef struct {
	Name    string
	Default string
	Doc     string
	check   func(string) error
}

// TopicConfigDefs returns the topic configs Flotilla keeps, sorted by name.
func TopicConfigDefs() []ConfigDef {
	return []ConfigDef{
		{"cleanup.policy", "delete", "Only delete: log compaction is not supported.", oneOf("delete")},
		{"compression.type", "producer", "Batches are stored as the producer compressed them.", oneOf("producer")},
		{"max.message.bytes", "1048588", "Largest record batch the topic accepts.", intAtLeast(0)},
		{"message.timestamp.type", "CreateTime", "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's.", oneOf("CreateTime", "LogAppendTime")},
		{"min.insync.replicas", "1", "Replicas that must have an acks=all write.", intAtLeast(1)},
		{"retention.bytes", "-1", "Bytes a partition keeps before deleting old segments; -1: no limit.", intAtLeast(-1)},
		{"retention.ms", "604800000", "Age after which segments are deleted; -1: forever.", intAtLeast(-1)},
		{"segment.bytes", "1073741824", "Size at which a partition rolls its segment.", intAtLeast(14)},
	}
}

// TopicConfigDefault returns the broker default of a topic config.
func TopicConfigDefault(name string) (string, bool) {
	i := slices.IndexFunc(TopicConfigDefs(), func(d ConfigDef) bool { return d.Name == name })
	if i < 0 {
		return "", false
	}
	return TopicConfigDefs()[i].Default, true
}

// ValidateTopicConfigs checks configs given at topic creation. The error is
// INVALID_CONFIG wrapped with the key and the reason.
func ValidateTopicConfigs(configs map[string]string) error {
	defs := TopicConfigDefs()
	for k, v := range configs {
		i := slices.IndexFunc(defs, func(d ConfigDef) bool { return d.Name == k })
		if i < 0 {
			return fmt.Errorf("%w: unknown or unsupported topic config %q", kerr.InvalidConfig, k)
		}
		if err := defs[i].check(v); err != nil {
			return fmt.Errorf("%w: %s=%q: %v", kerr.InvalidConfig, k, v, err)
		}
	}
	return nil
}

func oneOf(values ...string) func(string) error {
	return func(v string) error {
		if slices.Contains(values, v) {
			return nil
		}
		return fmt.Errorf("must be one of %v", values)
	}
}

func intAtLeast(lo int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer")
		}
		if n < lo {
			return fmt.Errorf("must be at least %d", lo)
		}
		return nil
	}
}
