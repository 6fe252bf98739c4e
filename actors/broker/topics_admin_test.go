package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/configs"
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

// TestMetadataAutoCreatesOffsetsTopic: Metadata naming the offsets topic
// before any group exists creates it with its own settings, as Kafka's
// AutoTopicCreationManager does, instead of asking the controller for an
// ordinary topic of that name, which it refuses.
func TestMetadataAutoCreatesOffsetsTopic(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *configs.Config) { cfg.Kafka.OffsetsTopicPartitions = 3 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client()
	c.waitFor(15*time.Second, "the offsets topic created through Metadata", func() bool {
		req := kmsg.NewPtrMetadataRequest()
		req.AllowAutoTopicCreation = true
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(controller.OffsetsTopic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		tp := resp.Topics[0]
		return tp.ErrorCode == 0 && tp.IsInternal && len(tp.Partitions) == 3
	})
}

// TestCreateTopicsDuplicateNames: a name repeated in one CreateTopics is
// refused with INVALID_REQUEST for every copy and none of them is created,
// as Kafka's ControllerApis.createTopics does; the other topics of the
// request are created.
func TestCreateTopicsDuplicateNames(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rs := createTopics(ctx, t, c, "dup", "single", "dup")
	for i, want := range []error{kerr.InvalidRequest, nil, kerr.InvalidRequest} {
		r := rs[i]
		if got := kerr.ErrorForCode(r.ErrorCode); got != want {
			t.Errorf("entry %d (%s): %v, want %v", i, r.Topic, got, want)
		}
		if want != nil && !strings.Contains(derefString(r.ErrorMessage), "Duplicate topic name") {
			t.Errorf("entry %d (%s): message %q", i, r.Topic, derefString(r.ErrorMessage))
		}
	}
	v := c.brokers[0].Controller().View()
	if v.Topics["dup"] != nil || v.Topics["single"] == nil {
		t.Fatalf("topics after the request: %v, want single without dup", v.TopicNames())
	}
}

// TestDeleteTopicsDuplicates: DeleteTopics refuses with INVALID_REQUEST,
// as Kafka's ControllerApis.deleteTopics does, a name or an id given twice,
// a name and an id of the same topic, an entry with both or neither, and
// deletes none of those topics.
func TestDeleteTopicsDuplicates(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "keep", 1, 1, nil)
	c.createTopic(ctx, cl, "other", 1, 1, nil)
	keep := c.brokers[0].Controller().View().Topics["keep"].ID

	byName := func(name string) kmsg.DeleteTopicsRequestTopic {
		rt := kmsg.NewDeleteTopicsRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		return rt
	}
	byID := func(id [16]byte) kmsg.DeleteTopicsRequestTopic {
		rt := kmsg.NewDeleteTopicsRequestTopic()
		rt.TopicID = id
		return rt
	}
	both := byName("keep")
	both.TopicID = keep
	tests := []struct {
		name    string
		topics  []kmsg.DeleteTopicsRequestTopic
		message string
	}{
		{"name twice", []kmsg.DeleteTopicsRequestTopic{byName("keep"), byName("keep")}, "Duplicate topic name"},
		{"id twice", []kmsg.DeleteTopicsRequestTopic{byID(keep), byID(keep)}, "Duplicate topic id"},
		{"name and id", []kmsg.DeleteTopicsRequestTopic{byName("keep"), byID(keep)}, "was already supplied"},
		{"id and name", []kmsg.DeleteTopicsRequestTopic{byID(keep), byName("keep")}, "was already supplied"},
		{"both in one entry", []kmsg.DeleteTopicsRequestTopic{both}, "both topic name and topic id"},
		{"neither", []kmsg.DeleteTopicsRequestTopic{byID([16]byte{})}, "Neither topic name nor id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := kmsg.NewPtrDeleteTopicsRequest()
			req.TimeoutMillis = 5000
			req.Topics = tc.topics
			resp, err := req.RequestWith(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Topics) != len(tc.topics) {
				t.Fatalf("%d answers to %d entries", len(resp.Topics), len(tc.topics))
			}
			matched := false
			for i, r := range resp.Topics {
				if r.ErrorCode != kerr.InvalidRequest.Code {
					t.Errorf("answer %d (%v %x): %v, want INVALID_REQUEST", i, derefString(r.Topic), r.TopicID, kerr.ErrorForCode(r.ErrorCode))
				}
				matched = matched || strings.Contains(derefString(r.ErrorMessage), tc.message)
			}
			if !matched {
				t.Errorf("no answer says %q: %+v", tc.message, resp.Topics)
			}
			if c.brokers[0].Controller().View().Topics["keep"] == nil {
				t.Fatalf("topic keep deleted")
			}
		})
	}

	// A request naming other topics once still deletes them.
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TimeoutMillis = 5000
	req.Topics = []kmsg.DeleteTopicsRequestTopic{byName("keep"), byName("keep"), byName("other")}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Topics[2]; r.ErrorCode != 0 || derefString(r.Topic) != "other" {
		t.Fatalf("deleting other next to a repeated name: %+v", resp.Topics)
	}
	c.waitFor(10*time.Second, "other deleted, keep kept", func() bool {
		v := c.brokers[0].Controller().View()
		return v.Topics["other"] == nil && v.Topics["keep"] != nil
	})
}

// TestAdminErrorMessages: an admin response's error message is Kafka's for
// the same failure (but for the final period, which Go error strings do
// not end with), without the error's name and generic description in
// front (which the client prints from the code): the Java Admin client
// makes it the exception's message. A bare error has none, as in Kafka's
// DeleteTopics answer for a topic that does not exist.
func TestAdminErrorMessages(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "m", 3, 1, nil)
	check := func(what string, code int16, msg *string, want *kerr.Error, wantMsg string) {
		t.Helper()
		if got := kerr.ErrorForCode(code); got != want {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
		if (msg == nil) != (wantMsg == "") || msg != nil && *msg != wantMsg {
			t.Errorf("%s: message %v (%q), want %q", what, msg != nil, derefString(msg), wantMsg)
		}
	}

	rs := createTopics(ctx, t, c, "m")
	check("CreateTopics m again", rs[0].ErrorCode, rs[0].ErrorMessage, kerr.TopicAlreadyExists, "Topic 'm' already exists")

	for _, tc := range []struct {
		topic string
		count int32
		want  *kerr.Error
		msg   string
	}{
		{"m", 2, kerr.InvalidPartitions, "Topic currently has 3 partitions, which is higher than the requested 2"},
		{"m", 3, kerr.InvalidPartitions, "Topic already has 3 partitions"},
		{"nope", 2, kerr.UnknownTopicOrPartition, "The topic 'nope' does not exist"},
	} {
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.TimeoutMillis = 5000
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic, rt.Count = tc.topic, tc.count
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil || len(resp.Topics) != 1 {
			t.Fatalf("CreatePartitions %s to %d: %v (%d topics answered)", tc.topic, tc.count, err, len(resp.Topics))
		}
		check(fmt.Sprintf("CreatePartitions %s to %d", tc.topic, tc.count), resp.Topics[0].ErrorCode, resp.Topics[0].ErrorMessage, tc.want, tc.msg)
	}

	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TimeoutMillis = 5000
	rt := kmsg.NewDeleteTopicsRequestTopic()
	rt.Topic = kmsg.StringPtr("nope")
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Topics) != 1 {
		t.Fatalf("DeleteTopics nope: %v", err)
	}
	check("DeleteTopics nope", resp.Topics[0].ErrorCode, resp.Topics[0].ErrorMessage, kerr.UnknownTopicOrPartition, "")
}
