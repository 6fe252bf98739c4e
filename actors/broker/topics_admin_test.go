package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// createTopics sends one CreateTopics request for names, each with one
// partition of one replica, and returns the answer's topics in order.
func createTopics(ctx context.Context, t *testing.T, c *testCluster, names ...string) []kmsg.CreateTopicsResponseTopic {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 5000
	for _, name := range names {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 1, 1
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, c.client())
	if err != nil {
		t.Fatalf("CreateTopics %v: %v", names, err)
	}
	if len(resp.Topics) != len(names) {
		t.Fatalf("CreateTopics %v: %d topics answered", names, len(resp.Topics))
	}
	return resp.Topics
}

func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestCreateTopicsNameCollision: Kafka refuses a topic whose name differs
// from an existing one only in '.' against '_', with
// INVALID_TOPIC_EXCEPTION and a message naming the other topic; here also
// when the other is created earlier in the same request.
func TestCreateTopicsNameCollision(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	check := func(r kmsg.CreateTopicsResponseTopic, want *kerr.Error, msg string) {
		t.Helper()
		if err := kerr.ErrorForCode(r.ErrorCode); err != want && (want != nil || err != nil) {
			t.Errorf("topic %s: %v, want %v", r.Topic, err, want)
		}
		if got := derefString(r.ErrorMessage); msg != "" && !strings.Contains(got, msg) {
			t.Errorf("topic %s: message %q, want it to contain %q", r.Topic, got, msg)
		}
	}
	rs := createTopics(ctx, t, c, "metrics.cpu", "metrics_cpu", "metrics-cpu")
	check(rs[0], nil, "")
	check(rs[1], kerr.InvalidTopicException, "Topic 'metrics_cpu' collides with existing topic: metrics.cpu")
	check(rs[2], nil, "")
	rs = createTopics(ctx, t, c, "metrics_cpu", "metrics.cpu")
	check(rs[0], kerr.InvalidTopicException, "Topic 'metrics_cpu' collides with existing topic: metrics.cpu")
	check(rs[1], kerr.TopicAlreadyExists, "")
	if v := c.brokers[0].Controller().View(); v.Topics["metrics_cpu"] != nil {
		t.Fatalf("metrics_cpu was created next to metrics.cpu")
	}
}

// TestAutoCreateInvalidName: a producer auto-creating a topic whose name
// Kafka refuses gets INVALID_TOPIC_EXCEPTION from Metadata and fails at
// once, instead of LEADER_NOT_AVAILABLE until its delivery timeout. Without
// auto-creation Metadata answers the same, as Kafka does.
func TestAutoCreateInvalidName(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cl := c.client(kgo.AllowAutoTopicCreation(), kgo.RecordDeliveryTimeout(10*time.Second))
	start := time.Now()
	err := cl.ProduceSync(ctx, &kgo.Record{Topic: "bad/name", Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.InvalidTopicException) {
		t.Fatalf("produce to bad/name after %v: %v, want INVALID_TOPIC_EXCEPTION", time.Since(start).Round(time.Millisecond), err)
	}

	for _, allow := range []bool{true, false} {
		req := kmsg.NewPtrMetadataRequest()
		req.AllowAutoTopicCreation = allow
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr("bad/name")
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, c.client())
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.InvalidTopicException.Code {
			t.Fatalf("Metadata for bad/name, auto-creation %v: %+v, want INVALID_TOPIC_EXCEPTION", allow, resp.Topics)
		}
	}
}
