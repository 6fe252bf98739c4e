package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/partition"
)

// topicConfig is one config of a DescribeConfigs answer.
type topicConfig struct {
	value    string
	source   kmsg.ConfigSource
	readOnly bool
}

// describeTopicOn asks broker i itself for the configs of topic.
func describeTopicOn(t *testing.T, c *testCluster, i int, topic string) map[string]topicConfig {
	t.Helper()
	req := kmsg.NewPtrDescribeConfigsRequest()
	req.Version = 4
	rr := kmsg.NewDescribeConfigsRequestResource()
	rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, topic
	req.Resources = append(req.Resources, rr)
	resp := rawRequest(t, c.brokers[i].KafkaAddr(), req).(*kmsg.DescribeConfigsResponse)
	if len(resp.Resources) != 1 || resp.Resources[0].ErrorCode != 0 {
		t.Fatalf("DescribeConfigs of %s on broker %d: %+v", topic, i+1, resp)
	}
	out := map[string]topicConfig{}
	for _, rc := range resp.Resources[0].Configs {
		out[rc.Name] = topicConfig{value: derefString(rc.Value), source: rc.Source, readOnly: rc.ReadOnly}
	}
	return out
}

// alterTopicOn sends broker i itself an IncrementalAlterConfigs (v1) of
// topic and returns its error.
func alterTopicOn(t *testing.T, c *testCluster, i int, topic string, validateOnly bool, ops ...kmsg.IncrementalAlterConfigsRequestResourceConfig) error {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	req.Version, req.ValidateOnly = 1, validateOnly
	rr := kmsg.NewIncrementalAlterConfigsRequestResource()
	rr.ResourceType, rr.ResourceName, rr.Configs = kmsg.ConfigResourceTypeTopic, topic, ops
	req.Resources = append(req.Resources, rr)
	resp := rawRequest(t, c.brokers[i].KafkaAddr(), req).(*kmsg.IncrementalAlterConfigsResponse)
	if len(resp.Resources) != 1 || resp.Resources[0].ResourceName != topic {
		t.Fatalf("IncrementalAlterConfigs of %s on broker %d: %+v", topic, i+1, resp)
	}
	return kerr.ErrorForCode(resp.Resources[0].ErrorCode)
}

func configOp(name string, op kmsg.IncrementalAlterConfigOp, value *string) kmsg.IncrementalAlterConfigsRequestResourceConfig {
	rc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	rc.Name, rc.Op, rc.Value = name, op, value
	return rc
}

// TestAlterTopicConfigs: a topic's configs altered through any broker
// reach the running replicas on every broker, show in DescribeConfigs on
// every broker, and survive a controller snapshot and a restart of the
// whole cluster. kadm's AlterTopicConfigs (IncrementalAlterConfigs) and
// AlterTopicConfigsState (AlterConfigs, which replaces every config the
// topic sets) both work.
func TestAlterTopicConfigs(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const topic = "tuned"
	cl := c.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	adm := kadm.NewClient(cl)
	c.createTopic(ctx, cl, topic, 1, 3, nil)
	c.waitCreationFinished(topic)
	tp := partition.TopicPartition{Topic: topic, Partition: 0}

	// One record of 600 random (incompressible) bytes per request.
	rng := rand.New(rand.NewPCG(3, 4))
	produce := func(n int) {
		t.Helper()
		for range n {
			value := make([]byte, 600)
			for j := range value {
				value[j] = byte(rng.Uint32())
			}
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
		}
	}
	produce(5)
	c.waitFor(10*time.Second, "every replica holding the 5 records", func() bool {
		for i := range c.brokers {
			if v := c.replicaView(i, tp); v == nil || v.HighWatermark != 5 {
				return false
			}
		}
		return true
	})
	for i := range c.brokers {
		if _, files := segmentFiles(t, c, i, topic); files != 1 {
			t.Fatalf("broker %d: %d segments under the default segment.bytes, want 1", i+1, files)
		}
	}

	// kadm: segment.bytes 1024 takes one 600-byte batch per segment.
	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "segment.bytes", Value: kadm.StringPtr("1024")}}, topic)
	if err != nil || len(rs) != 1 || rs[0].Err != nil {
		t.Fatalf("AlterTopicConfigs segment.bytes: %v %+v", err, rs)
	}
	for i := range c.brokers {
		c.waitFor(10*time.Second, fmt.Sprintf("broker %d describing segment.bytes 1024", i+1), func() bool {
			got := describeTopicOn(t, c, i, topic)
			return got["segment.bytes"] == topicConfig{"1024", kmsg.ConfigSourceDynamicTopicConfig, false}
		})
		got := describeTopicOn(t, c, i, topic)
		if want := (topicConfig{"604800000", kmsg.ConfigSourceDefaultConfig, false}); got["retention.ms"] != want {
			t.Errorf("broker %d: retention.ms %+v, want %+v", i+1, got["retention.ms"], want)
		}
	}
	// Each replica takes the new size once its broker's controller state
	// has the change (a batch it writes before stays in the old segment):
	// every one rolls a segment per batch from then on.
	for n := 0; ; n++ {
		rolled := true
		for i := range c.brokers {
			if _, files := segmentFiles(t, c, i, topic); files < 5 {
				rolled = false
			}
		}
		if rolled {
			break
		}
		if n == 20 {
			for i := range c.brokers {
				_, files := segmentFiles(t, c, i, topic)
				t.Errorf("broker %d: %d segments", i+1, files)
			}
			t.Fatalf("after %d more records, not every replica rolled its segment per batch", n)
		}
		produce(1)
		c.waitFor(10*time.Second, "every replica holding the record", func() bool {
			for i := range c.brokers {
				if v := c.replicaView(i, tp); v == nil || v.HighWatermark != int64(6+n) {
					return false
				}
			}
			return true
		})
	}

	// Through each broker in turn, two of which do not lead the
	// controller: a validate-only change that changes nothing, a lower
	// retention.bytes that every replica's log start follows, and
	// segment.bytes back to its default.
	if err := alterTopicOn(t, c, 0, topic, true, configOp("retention.ms", kmsg.IncrementalAlterConfigOpSet, kadm.StringPtr("1000"))); err != nil {
		t.Fatalf("validate-only on broker 1: %v", err)
	}
	if err := alterTopicOn(t, c, 1, topic, false, configOp("retention.bytes", kmsg.IncrementalAlterConfigOpSet, kadm.StringPtr("2048"))); err != nil {
		t.Fatalf("retention.bytes on broker 2: %v", err)
	}
	c.waitFor(20*time.Second, "every replica's log start moving under retention.bytes 2048", func() bool {
		for i := range c.brokers {
			if v := c.replicaView(i, tp); v == nil || v.LogStart < 5 {
				return false
			}
		}
		return true
	})
	if err := alterTopicOn(t, c, 2, topic, false, configOp("segment.bytes", kmsg.IncrementalAlterConfigOpDelete, nil)); err != nil {
		t.Fatalf("delete segment.bytes on broker 3: %v", err)
	}
	for i := range c.brokers {
		c.waitFor(10*time.Second, fmt.Sprintf("broker %d describing the change", i+1), func() bool {
			got := describeTopicOn(t, c, i, topic)
			return got["segment.bytes"] == topicConfig{"1073741824", kmsg.ConfigSourceDefaultConfig, false} &&
				got["retention.bytes"] == topicConfig{"2048", kmsg.ConfigSourceDynamicTopicConfig, false} &&
				got["retention.ms"].source == kmsg.ConfigSourceDefaultConfig
		})
	}

	// Refusals come back per resource.
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("soon")}}, topic)
	if err != nil || len(rs) != 1 || !errors.Is(rs[0].Err, kerr.InvalidConfig) {
		t.Fatalf("AlterTopicConfigs retention.ms=soon: %v %+v, want INVALID_CONFIG", err, rs)
	}
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("1000")}}, "nope")
	if err != nil || len(rs) != 1 || !errors.Is(rs[0].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("AlterTopicConfigs of an unknown topic: %v %+v, want UNKNOWN_TOPIC_OR_PARTITION", err, rs)
	}

	// kadm's AlterTopicConfigsState (AlterConfigs) replaces the set:
	// retention.bytes returns to its default, max.message.bytes 2048
	// refuses a 4 KiB batch.
	rs, err = adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("2048")}}, topic)
	if err != nil || len(rs) != 1 || rs[0].Err != nil {
		t.Fatalf("AlterTopicConfigsState: %v %+v", err, rs)
	}
	tooLarge := func() error {
		value := make([]byte, 4096)
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		return cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr()
	}
	c.waitFor(10*time.Second, "the leader refusing a 4 KiB batch", func() bool {
		return errors.Is(tooLarge(), kerr.MessageTooLarge)
	})
	wantAfter := map[string]topicConfig{
		"max.message.bytes": {"2048", kmsg.ConfigSourceDynamicTopicConfig, false},
		"retention.bytes":   {"-1", kmsg.ConfigSourceDefaultConfig, false},
	}
	matches := func(got map[string]topicConfig) bool {
		for k, w := range wantAfter {
			if got[k] != w {
				return false
			}
		}
		return true
	}
	for i := range c.brokers {
		c.waitFor(10*time.Second, fmt.Sprintf("broker %d describing the replaced set", i+1), func() bool {
			return matches(describeTopicOn(t, c, i, topic))
		})
	}

	// More controller entries than a snapshot's worth (50 here), so that
	// the brokers restart from a snapshot taken after the alterations.
	c.propose(c.leader(), 60, "pad")
	for i := range c.brokers {
		c.stop(i)
	}
	c.startAll()
	c.waitReady()
	cl = c.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	for i := range c.brokers {
		c.waitFor(10*time.Second, fmt.Sprintf("broker %d describing the configs after the restart", i+1), func() bool {
			return matches(describeTopicOn(t, c, i, topic))
		})
	}
	c.waitFor(20*time.Second, "the restarted leader refusing a 4 KiB batch", func() bool {
		return errors.Is(tooLarge(), kerr.MessageTooLarge)
	})
}

// TestDescribeConfigsTypes: DescribeConfigs (v3+) gives each config its
// type as Kafka's LogConfig and KafkaConfig define it, which the Java
// Admin client reports as ConfigEntry.type(), and its documentation when
// asked for (IncludeDocumentation), as Kafka's ConfigHelper does.
func TestDescribeConfigsTypes(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.createTopic(ctx, c.client(), "typed", 1, 1, nil)
	want := map[string]kmsg.ConfigType{
		"cleanup.policy":                  kmsg.ConfigTypeList,
		"compression.type":                kmsg.ConfigTypeString,
		"max.message.bytes":               kmsg.ConfigTypeInt,
		"message.timestamp.after.max.ms":  kmsg.ConfigTypeLong,
		"message.timestamp.before.max.ms": kmsg.ConfigTypeLong,
		"message.timestamp.type":          kmsg.ConfigTypeString,
		"min.insync.replicas":             kmsg.ConfigTypeInt,
		"retention.bytes":                 kmsg.ConfigTypeLong,
		"retention.ms":                    kmsg.ConfigTypeLong,
		"segment.bytes":                   kmsg.ConfigTypeInt,
		"unclean.leader.election.enable":  kmsg.ConfigTypeBoolean,
		// The broker's, of which the topic's are defaults.
		"broker.id":                           kmsg.ConfigTypeInt,
		"auto.create.topics.enable":           kmsg.ConfigTypeBoolean,
		"num.partitions":                      kmsg.ConfigTypeInt,
		"log.cleanup.policy":                  kmsg.ConfigTypeList,
		"message.max.bytes":                   kmsg.ConfigTypeInt,
		"log.message.timestamp.after.max.ms":  kmsg.ConfigTypeLong,
		"log.message.timestamp.before.max.ms": kmsg.ConfigTypeLong,
		"log.message.timestamp.type":          kmsg.ConfigTypeString,
		"log.retention.bytes":                 kmsg.ConfigTypeLong,
		"log.retention.ms":                    kmsg.ConfigTypeLong,
		"log.segment.bytes":                   kmsg.ConfigTypeInt,
	}
	for _, docs := range []bool{false, true} {
		req := kmsg.NewPtrDescribeConfigsRequest()
		req.Version, req.IncludeDocumentation = 4, docs
		for _, r := range []struct {
			typ  kmsg.ConfigResourceType
			name string
		}{{kmsg.ConfigResourceTypeTopic, "typed"}, {kmsg.ConfigResourceTypeBroker, "1"}} {
			rr := kmsg.NewDescribeConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = r.typ, r.name
			req.Resources = append(req.Resources, rr)
		}
		resp := rawRequest(t, c.brokers[0].KafkaAddr(), req).(*kmsg.DescribeConfigsResponse)
		seen := 0
		for _, rr := range resp.Resources {
			if rr.ErrorCode != 0 {
				t.Fatalf("DescribeConfigs %s: %v", rr.ResourceName, kerr.ErrorForCode(rr.ErrorCode))
			}
			for _, rc := range rr.Configs {
				w, ok := want[rc.Name]
				if !ok {
					t.Errorf("%s: no type known for %s", rr.ResourceName, rc.Name)
					continue
				}
				seen++
				if rc.ConfigType != w {
					t.Errorf("%s %s: type %v, want %v", rr.ResourceName, rc.Name, rc.ConfigType, w)
				}
				if docs != (rc.Documentation != nil && *rc.Documentation != "") {
					t.Errorf("%s %s with IncludeDocumentation %v: documentation %v", rr.ResourceName, rc.Name, docs, derefString(rc.Documentation))
				}
			}
		}
		// The topic's 11, and the broker's 3 and the 11 it defaults.
		if seen != 11+3+11 {
			t.Errorf("%d configs described, want 25", seen)
		}
	}
}

// TestDescribeConfigsUnsupported: a resource DescribeConfigs does not
// serve gets INVALID_REQUEST with a message saying why (for a type it does
// not know, in the words of Kafka's ConfigHelper.describeConfigs), not a
// bare code; the other resources of the request are answered (Kafka fails
// the whole request instead, in KafkaApis' authorization step).
func TestDescribeConfigsUnsupported(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	req := kmsg.NewPtrDescribeConfigsRequest()
	req.Version = 4
	for _, typ := range []kmsg.ConfigResourceType{kmsg.ConfigResourceTypeBrokerLogger, 99, kmsg.ConfigResourceTypeBroker} {
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = typ, "1"
		req.Resources = append(req.Resources, rr)
	}
	resp := rawRequest(t, c.brokers[0].KafkaAddr(), req).(*kmsg.DescribeConfigsResponse)
	if len(resp.Resources) != 3 {
		t.Fatalf("%d resources answered, want 3", len(resp.Resources))
	}
	for i, want := range []string{"broker loggers are not supported", "Unsupported resource type: UNKNOWN", ""} {
		rr := resp.Resources[i]
		msg := derefString(rr.ErrorMessage)
		if want == "" {
			if rr.ErrorCode != 0 || len(rr.Configs) == 0 {
				t.Errorf("%s: %v, %d configs; want them described", rr.ResourceType, kerr.ErrorForCode(rr.ErrorCode), len(rr.Configs))
			}
			continue
		}
		if rr.ErrorCode != kerr.InvalidRequest.Code || !strings.HasPrefix(msg, want) {
			t.Errorf("%s: %v %q, want INVALID_REQUEST %q", rr.ResourceType, kerr.ErrorForCode(rr.ErrorCode), msg, want)
		}
	}
}
