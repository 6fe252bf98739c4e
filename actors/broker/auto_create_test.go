package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/configs"
)

// TestAutoCreateTopicsOff: with kafka.auto_create_topics_enable off, a
// producer allowed to auto-create gets UNKNOWN_TOPIC_OR_PARTITION for a
// missing topic and nothing is created, as Kafka answers with
// auto.create.topics.enable=false; a consumer group still gets the offsets
// topic, which FindCoordinator creates regardless; and a reload turning
// the key on lets the next Metadata create topics.
func TestAutoCreateTopicsOff(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *configs.Config) { cfg.Kafka.AutoCreateTopicsEnable = false })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	produce := func(topic string) error {
		cl := c.client(kgo.AllowAutoTopicCreation(), kgo.UnknownTopicRetries(2), kgo.RecordDeliveryTimeout(20*time.Second))
		defer cl.Close()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
	}
	if err := produce("nope"); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("produce to a missing topic with auto-creation off: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = true
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr("nope")
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, c.client())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("Metadata for a missing topic: %+v, want UNKNOWN_TOPIC_OR_PARTITION", resp.Topics)
	}
	if v := c.brokers[0].Controller().View(); v.Topics["nope"] != nil {
		t.Fatal("the missing topic was created with auto-creation off")
	}

	c.waitFor(30*time.Second, "FindCoordinator to create the offsets topic and answer", func() bool {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey = "g"
		resp, err := req.RequestWith(ctx, c.client())
		return err == nil && resp.ErrorCode == 0
	})
	if v := c.brokers[0].Controller().View(); v.Topics[controller.OffsetsTopic] == nil {
		t.Fatal("no offsets topic after FindCoordinator answered")
	}

	autoCreateConfig := func() string {
		t.Helper()
		cfgs, err := kadm.NewClient(c.client()).DescribeBrokerConfigs(ctx, 1)
		if err != nil || len(cfgs) != 1 || cfgs[0].Err != nil {
			t.Fatalf("DescribeBrokerConfigs: %+v, %v", cfgs, err)
		}
		for _, cfg := range cfgs[0].Configs {
			if cfg.Key == "auto.create.topics.enable" && cfg.Value != nil {
				return *cfg.Value
			}
		}
		t.Fatalf("DescribeBrokerConfigs lacks auto.create.topics.enable: %+v", cfgs[0].Configs)
		return ""
	}
	if v := autoCreateConfig(); v != "false" {
		t.Errorf("DescribeConfigs says auto.create.topics.enable=%s with auto-creation off", v)
	}

	next := *c.cfgs[0]
	next.Kafka.AutoCreateTopicsEnable = true
	if err := c.brokers[0].Reload(&next); err != nil {
		t.Fatal(err)
	}
	if err := produce("nope"); err != nil {
		t.Fatalf("produce with auto-creation reloaded on: %v", err)
	}
	if v := autoCreateConfig(); v != "true" {
		t.Errorf("DescribeConfigs says auto.create.topics.enable=%s with auto-creation reloaded on", v)
	}
}
