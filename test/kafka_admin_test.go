package test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestCreateTopicsErrors: each way a CreateTopics request can be wrong is
// answered with Kafka's error code for it and creates nothing; validate-only
// requests check the same things and create nothing either.
func TestCreateTopicsErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	adm := nd.admin(t)
	cl := nd.client(t)
	createTopic(t, adm, "exists", 1, nil)

	cases := []struct {
		name         string
		topic        string
		partitions   int32
		rf           int16
		configs      map[string]*string
		validateOnly bool
		code         int16 // 0: success
	}{
		{"existing topic", "exists", 1, 1, nil, false, kerr.TopicAlreadyExists.Code},
		{"name with a space", "bad name", 1, 1, nil, false, kerr.InvalidTopicException.Code},
		{"name with a slash", "a/b", 1, 1, nil, false, kerr.InvalidTopicException.Code},
		{"name dot", ".", 1, 1, nil, false, kerr.InvalidTopicException.Code},
		{"name dot dot", "..", 1, 1, nil, false, kerr.InvalidTopicException.Code},
		{"empty name", "", 1, 1, nil, false, kerr.InvalidTopicException.Code},
		{"name of 250 characters", strings.Repeat("x", 250), 1, 1, nil, false, kerr.InvalidTopicException.Code},
		{"config value not a number", "bad-config-value", 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("soon")}, false, kerr.InvalidConfig.Code},
		{"config value out of range", "bad-config-range", 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("-7")}, false, kerr.InvalidConfig.Code},
		{"unknown config", "bad-config-key", 1, 1, map[string]*string{"no.such.config": kadm.StringPtr("1")}, false, kerr.InvalidConfig.Code},
		{"unclean leader election on", "unclean-on", 1, 1, map[string]*string{"unclean.leader.election.enable": kadm.StringPtr("true")}, false, kerr.InvalidConfig.Code},
		{"validate only: unclean leader election off", "unclean-off", 1, 1, map[string]*string{"unclean.leader.election.enable": kadm.StringPtr("false")}, true, 0},
		{"zero partitions", "zero-partitions", 0, 1, nil, false, kerr.InvalidPartitions.Code},
		{"more replicas than brokers", "too-many-replicas", 1, 3, nil, false, kerr.InvalidReplicationFactor.Code},
		{"validate only: valid", "validated", 3, 1, map[string]*string{"retention.ms": kadm.StringPtr("60000")}, true, 0},
		{"validate only: existing", "exists", 1, 1, nil, true, kerr.TopicAlreadyExists.Code},
		{"validate only: bad config", "validated-bad", 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("sometimes")}, true, kerr.InvalidConfig.Code},
		{"validate only: bad name", "what?", 1, 1, nil, true, kerr.InvalidTopicException.Code},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := testCtx(t, 10*time.Second)
			create := adm.CreateTopics
			if c.validateOnly {
				create = adm.ValidateCreateTopics
			}
			resps, err := create(ctx, c.partitions, c.rf, c.configs, c.topic)
			if err != nil {
				t.Fatalf("CreateTopics: %v", err)
			}
			r, ok := resps[c.topic]
			if !ok {
				t.Fatalf("no answer for %q: %+v", c.topic, resps)
			}
			if got := errCode(r.Err); got != c.code {
				t.Fatalf("CreateTopics %q: %s (%v), want %s", c.topic, codeName(got), r.Err, codeName(c.code))
			}
			if c.code == 0 && (r.NumPartitions != c.partitions || r.ReplicationFactor != c.rf) {
				t.Errorf("validate only: answered %d partitions rf %d, want %d, %d", r.NumPartitions, r.ReplicationFactor, c.partitions, c.rf)
			}
			if c.topic == "exists" {
				return
			}
			// Nothing was created: Metadata does not know the name.
			if mt := topicMetadata(t, cl, c.topic); mt.ErrorCode != kerr.UnknownTopicOrPartition.Code && mt.ErrorCode != kerr.InvalidTopicException.Code {
				t.Errorf("after a CreateTopics that created nothing, Metadata for %q answers %s with %d partitions",
					c.topic, codeName(mt.ErrorCode), len(mt.Partitions))
			}
		})
	}

	// The only topic there is is the one created at the start.
	topics, err := adm.ListTopics(testCtx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if names := topics.Names(); !slices.Equal(names, []string{"exists"}) {
		t.Fatalf("topics after the failed creations: %v, want [exists]", names)
	}
}

// TestDeleteTopics: a deleted topic is unknown at once; producing to its
// name auto-creates a new topic with a new id and none of the old data.
func TestDeleteTopics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	adm := nd.admin(t)
	cl := nd.client(t)
	const topic = "doomed"
	createTopic(t, adm, topic, 2, nil)
	ctx := testCtx(t, 60*time.Second)
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte{byte(i)}, Value: []byte("old")})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	oldID := topicMetadata(t, cl, topic).TopicID

	resps, err := adm.DeleteTopics(ctx, topic)
	if err != nil {
		t.Fatalf("DeleteTopics: %v", err)
	}
	if r := resps[topic]; r.Err != nil || r.ID != oldID {
		t.Fatalf("DeleteTopics %s: %v, id %x; want success for id %x", topic, r.Err, r.ID, oldID)
	}
	if mt := topicMetadata(t, cl, topic); mt.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("Metadata after delete: %s with %d partitions, want UNKNOWN_TOPIC_OR_PARTITION", codeName(mt.ErrorCode), len(mt.Partitions))
	}

	// Deleting it again, or an id nobody has, is an error per topic.
	resps, err = adm.DeleteTopics(ctx, topic)
	if err != nil {
		t.Fatalf("DeleteTopics again: %v", err)
	}
	if got := errCode(resps[topic].Err); got != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("deleting a deleted topic: %s, want UNKNOWN_TOPIC_OR_PARTITION", codeName(got))
	}
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TimeoutMillis = 10_000
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.TopicID = [16]byte{0xde, 0xad, 0xbe, 0xef}
	req.Topics = append(req.Topics, dt)
	dresp := brokerRequest[*kmsg.DeleteTopicsResponse](t, cl, nd, req)
	if dresp.Version < 6 {
		t.Logf("DeleteTopics negotiated v%d: no topic ids", dresp.Version)
	} else if len(dresp.Topics) != 1 || dresp.Topics[0].ErrorCode != kerr.UnknownTopicID.Code {
		t.Errorf("DeleteTopics by an unknown id: %+v, want UNKNOWN_TOPIC_ID", dresp.Topics)
	}

	// A fresh producer (no cached metadata) that allows auto-creation (kgo
	// does not by default) creates the name again through Metadata.
	fresh := nd.client(t, kgo.AllowAutoTopicCreation())
	rec := &kgo.Record{Topic: topic, Value: []byte("new")}
	if err := fresh.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatalf("produce to the deleted name: %v", err)
	}
	mt := topicMetadata(t, cl, topic)
	if mt.ErrorCode != 0 || mt.TopicID == oldID || mt.TopicID == [16]byte{} || len(mt.Partitions) != 1 {
		t.Fatalf("recreated topic: %s id %x (old %x), %d partitions; want a new id and the default 1 partition",
			codeName(mt.ErrorCode), mt.TopicID, oldID, len(mt.Partitions))
	}
	if rec.Partition != 0 || rec.Offset != 0 {
		t.Errorf("first record of the recreated topic acknowledged at %d/%d, want 0/0", rec.Partition, rec.Offset)
	}
	got := consumeAll(t, ctx, nd, topic, 1)
	if len(got) != 1 || string(got[0].Value) != "new" || got[0].Offset != 0 {
		t.Fatalf("recreated topic holds %d records (first %q at %d), want only the new one at offset 0", len(got), got[0].Value, got[0].Offset)
	}
}

// TestDescribeConfigs: a topic shows the configs it was created with and
// the broker defaults for the rest; the broker shows its id and defaults.
func TestDescribeConfigs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	adm := nd.admin(t)
	cl := nd.client(t)
	const topic = "configured"
	createTopic(t, adm, topic, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")})
	ctx := testCtx(t, 10*time.Second)

	brokers, err := adm.DescribeBrokerConfigs(ctx, int32(nd.id))
	if err != nil {
		t.Fatalf("DescribeBrokerConfigs: %v", err)
	}
	if len(brokers) != 1 || brokers[0].Err != nil {
		t.Fatalf("DescribeBrokerConfigs: %+v", brokers)
	}
	brokerCfg := map[string]kadm.Config{}
	for _, c := range brokers[0].Configs {
		brokerCfg[c.Key] = c
	}
	if c, ok := brokerCfg["broker.id"]; !ok || c.Value == nil || *c.Value != "1" {
		t.Errorf("broker.id: %+v, want 1", c)
	}
	if c, ok := brokerCfg["log.retention.ms"]; !ok || c.Value == nil || *c.Value != "604800000" {
		t.Errorf("log.retention.ms: %+v, want the default 604800000", c)
	}

	topics, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("DescribeTopicConfigs: %v", err)
	}
	if len(topics) != 1 || topics[0].Err != nil {
		t.Fatalf("DescribeTopicConfigs: %+v", topics)
	}
	seen := map[string]bool{}
	for _, c := range topics[0].Configs {
		seen[c.Key] = true
		if c.Value == nil {
			t.Errorf("%s: null value", c.Key)
			continue
		}
		if c.Key == "retention.ms" {
			if *c.Value != "3600000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
				t.Errorf("retention.ms: %s from %s, want 3600000 from DYNAMIC_TOPIC_CONFIG", *c.Value, c.Source)
			}
			continue
		}
		if c.Source != kmsg.ConfigSourceDefaultConfig {
			t.Errorf("%s: source %s, want DEFAULT_CONFIG (never set on the topic)", c.Key, c.Source)
		}
	}
	for _, k := range []string{"retention.ms", "cleanup.policy", "segment.bytes", "max.message.bytes", "retention.bytes"} {
		if !seen[k] {
			t.Errorf("DescribeTopicConfigs lacks %s", k)
		}
	}
	// A topic default is the broker's value of the matching broker config.
	for topicKey, brokerKey := range map[string]string{"cleanup.policy": "log.cleanup.policy", "segment.bytes": "log.segment.bytes", "retention.bytes": "log.retention.bytes"} {
		for _, c := range topics[0].Configs {
			if b, ok := brokerCfg[brokerKey]; c.Key == topicKey && ok && b.Value != nil && *c.Value != *b.Value {
				t.Errorf("topic %s = %s, broker %s = %s: a default should be the broker's value", topicKey, *c.Value, brokerKey, *b.Value)
			}
		}
	}

	// Asking for named configs returns only those; an unknown topic is an
	// error of its resource.
	req := kmsg.NewPtrDescribeConfigsRequest()
	r1 := kmsg.NewDescribeConfigsRequestResource()
	r1.ResourceType, r1.ResourceName, r1.ConfigNames = kmsg.ConfigResourceTypeTopic, topic, []string{"retention.ms"}
	r2 := kmsg.NewDescribeConfigsRequestResource()
	r2.ResourceType, r2.ResourceName = kmsg.ConfigResourceTypeTopic, "no-such-topic"
	req.Resources = append(req.Resources, r1, r2)
	resp := brokerRequest[*kmsg.DescribeConfigsResponse](t, cl, nd, req)
	if len(resp.Resources) != 2 {
		t.Fatalf("DescribeConfigs: %d resources answered, want 2", len(resp.Resources))
	}
	if res := resp.Resources[0]; res.ErrorCode != 0 || len(res.Configs) != 1 || res.Configs[0].Name != "retention.ms" || *res.Configs[0].Value != "3600000" {
		t.Errorf("DescribeConfigs of retention.ms only: %s %+v", codeName(res.ErrorCode), res.Configs)
	}
	if res := resp.Resources[1]; res.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("DescribeConfigs of an unknown topic: %s, want UNKNOWN_TOPIC_OR_PARTITION", codeName(res.ErrorCode))
	}
}

// TestMetadataTopicLists: a null topic list asks for every topic (and
// creates none), an empty list for none; a missing topic with
// auto-creation off is unknown and stays so.
func TestMetadataTopicLists(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	adm := nd.admin(t)
	cl := nd.client(t)
	createTopic(t, adm, "alpha", 2, nil)
	createTopic(t, adm, "bravo", 3, nil)

	metadata := func(topics []kmsg.MetadataRequestTopic, autoCreate bool) *kmsg.MetadataResponse {
		t.Helper()
		req := kmsg.NewPtrMetadataRequest()
		req.Topics, req.AllowAutoTopicCreation = topics, autoCreate
		return brokerRequest[*kmsg.MetadataResponse](t, cl, nd, req)
	}
	names := func(resp *kmsg.MetadataResponse) []string {
		var out []string
		for _, mt := range resp.Topics {
			out = append(out, *mt.Topic)
		}
		slices.Sort(out)
		return out
	}

	all := metadata(nil, true)
	if got := names(all); !slices.Equal(got, []string{"alpha", "bravo"}) {
		t.Fatalf("Metadata with a null topic list (v%d): %v, want [alpha bravo]", all.Version, got)
	}
	for _, mt := range all.Topics {
		want := map[string]int{"alpha": 2, "bravo": 3}[*mt.Topic]
		if mt.ErrorCode != 0 || len(mt.Partitions) != want || mt.TopicID == [16]byte{} {
			t.Errorf("%s: %s, %d partitions, id %x; want %d partitions and an id", *mt.Topic, codeName(mt.ErrorCode), len(mt.Partitions), mt.TopicID, want)
		}
		for _, p := range mt.Partitions {
			if p.Leader != int32(nd.id) || !slices.Equal(p.Replicas, []int32{1}) || !slices.Equal(p.ISR, []int32{1}) {
				t.Errorf("%s/%d: leader %d replicas %v isr %v, want 1 [1] [1]", *mt.Topic, p.Partition, p.Leader, p.Replicas, p.ISR)
			}
		}
	}
	if len(all.Brokers) != 1 || all.Brokers[0].NodeID != 1 || all.ControllerID != 1 || all.ClusterID == nil {
		t.Errorf("brokers %+v controller %d cluster %v", all.Brokers, all.ControllerID, all.ClusterID)
	}

	none := metadata([]kmsg.MetadataRequestTopic{}, true)
	if len(none.Topics) != 0 || len(none.Brokers) != 1 {
		t.Fatalf("Metadata with an empty topic list: %d topics %d brokers, want none and the broker", len(none.Topics), len(none.Brokers))
	}

	missing := kmsg.NewMetadataRequestTopic()
	missing.Topic = kmsg.StringPtr("charlie")
	resp := metadata([]kmsg.MetadataRequestTopic{missing}, false)
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("Metadata for a missing topic without auto-creation: %+v, want UNKNOWN_TOPIC_OR_PARTITION", resp.Topics)
	}
	// Auto-creation allowed: the first answer is LEADER_NOT_AVAILABLE (or
	// already the topic), and the topic appears.
	resp = metadata([]kmsg.MetadataRequestTopic{missing}, true)
	if code := resp.Topics[0].ErrorCode; code != kerr.LeaderNotAvailable.Code && code != 0 {
		t.Fatalf("Metadata auto-creating charlie: %s, want LEADER_NOT_AVAILABLE or success", codeName(code))
	}
	waitTopicReady(t, adm, "charlie", 1)
	if got := names(metadata(nil, false)); !slices.Equal(got, []string{"alpha", "bravo", "charlie"}) {
		t.Fatalf("topics after auto-creation: %v", got)
	}

	// DescribeCluster tells the same story.
	dc := brokerRequest[*kmsg.DescribeClusterResponse](t, cl, nd, kmsg.NewPtrDescribeClusterRequest())
	if dc.ErrorCode != 0 || len(dc.Brokers) != 1 || dc.Brokers[0].NodeID != 1 || dc.ClusterID != *all.ClusterID {
		t.Errorf("DescribeCluster: %s brokers %+v cluster %q, want broker 1 in cluster %q", codeName(dc.ErrorCode), dc.Brokers, dc.ClusterID, *all.ClusterID)
	}
}

// TestCreateTopicsBadAssignment: a replica assignment whose partitions are
// not numbered 0 to N-1 once each is refused with
// INVALID_REPLICA_ASSIGNMENT, creates nothing, and costs the broker nothing
// (a partition index near 2^31 once sized a slice by it).
func TestCreateTopicsBadAssignment(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	cl := nd.client(t)
	cases := []struct {
		name       string
		partitions []int32
	}{
		{"negative partition", []int32{-1}},
		{"partition near 2^31", []int32{2147483646}},
		{"gap", []int32{0, 2}},
		{"repeated", []int32{0, 0}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			topic := fmt.Sprintf("bad-assignment-%d", i)
			req := kmsg.NewPtrCreateTopicsRequest()
			req.TimeoutMillis = 5000
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
			for _, p := range c.partitions {
				a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
				a.Partition, a.Replicas = p, []int32{int32(nd.id)}
				rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
			}
			req.Topics = append(req.Topics, rt)
			resp := brokerRequest[*kmsg.CreateTopicsResponse](t, cl, nd, req)
			if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.InvalidReplicaAssignment.Code {
				t.Fatalf("CreateTopics with partitions %v answered %+v, want INVALID_REPLICA_ASSIGNMENT", c.partitions, resp.Topics)
			}
			if mt := topicMetadata(t, cl, topic); mt.ErrorCode != kerr.UnknownTopicOrPartition.Code {
				t.Fatalf("Metadata for %s after a refused CreateTopics: %s", topic, codeName(mt.ErrorCode))
			}
		})
	}
	if strings.Contains(nd.tail(1<<20), "panicked") {
		t.Fatal("an actor panicked on a bad replica assignment")
	}
}
