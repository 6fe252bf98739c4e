package test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestAlterTopicConfigs: an operator lowers a running topic's
// retention.bytes with kadm (IncrementalAlterConfigs, what kafka-configs
// --alter --add-config sends) on three bin/flotilla brokers. The topic's
// partition, three replicas rolling 1 KiB segments, deletes its oldest
// segments at once: ListOffsets earliest moves up within a bounded poll.
// DescribeConfigs reports the override on every broker, and a broker
// config is refused with Kafka's error for a config that cannot change at
// runtime, naming the YAML file and SIGHUP.
func TestAlterTopicConfigs(t *testing.T) {
	nodes, seeds := startClusterWith(t, 3, "")
	adm := clusterAdmin(t, seeds)
	const topic = "trimmed"
	createReplicatedWith(t, adm, topic, 1, map[string]*string{"segment.bytes": kadm.StringPtr("1024")})

	// One record of 600 random (incompressible) bytes per request, so one
	// batch per segment: 40 segments, about 27 KiB on every replica.
	const records = 40
	ctx := testCtx(t, 90*time.Second)
	produceIncompressible(ctx, t, seeds, topic, records, 5)
	startOffset := func() int64 { return logStart(ctx, t, adm, topic) }
	if s := startOffset(); s != 0 {
		t.Fatalf("log start %d before the alteration; want 0 (no size limit by default)", s)
	}

	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.bytes", Value: kadm.StringPtr("4096")}}, topic)
	if err != nil || len(rs) != 1 || rs[0].Err != nil {
		t.Fatalf("AlterTopicConfigs retention.bytes=4096: %v %+v", err, rs)
	}
	took := waitFor(t, 15*time.Second, "the partition deleting its old segments under retention.bytes 4096", func() bool {
		return startOffset() > 0
	})
	// Whole segments of one record each go while at least 4096 bytes
	// remain: the log keeps 4096 bytes' worth and a little more.
	s := startOffset()
	if s < records-10 || s > records-5 {
		t.Errorf("log start %d after lowering retention.bytes to 4096 with 600-byte records; want %d to %d", s, records-10, records-5)
	}
	t.Logf("log start moved to %d within %v of the alteration", s, took.Round(time.Millisecond))

	for _, nd := range nodes {
		a := nd.admin(t)
		rcs, err := a.DescribeTopicConfigs(ctx, topic)
		if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
			t.Fatalf("DescribeTopicConfigs on broker %d: %v %+v", nd.id, err, rcs)
		}
		want := map[string]string{"retention.bytes": "4096", "segment.bytes": "1024"}
		for _, c := range rcs[0].Configs {
			if v, ok := want[c.Key]; ok {
				if c.MaybeValue() != v || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
					t.Errorf("broker %d: %s %s from %s, want %s from DYNAMIC_TOPIC_CONFIG", nd.id, c.Key, c.MaybeValue(), c.Source, v)
				}
				delete(want, c.Key)
			}
		}
		if len(want) > 0 {
			t.Errorf("broker %d: DescribeTopicConfigs lacks %v", nd.id, want)
		}
	}

	rs, err = adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "log.retention.bytes", Value: kadm.StringPtr("4096")}}, int32(nodes[1].id))
	if err != nil || len(rs) != 1 {
		t.Fatalf("AlterBrokerConfigs: %v %+v", err, rs)
	}
	if !errors.Is(rs[0].Err, kerr.InvalidRequest) || !strings.Contains(rs[0].ErrMessage, "Cannot update these configs dynamically: [log.retention.bytes]") ||
		!strings.Contains(rs[0].ErrMessage, "SIGHUP") {
		t.Errorf("AlterBrokerConfigs log.retention.bytes: %v %q, want INVALID_REQUEST naming the key, the YAML file and SIGHUP", rs[0].Err, rs[0].ErrMessage)
	}
}
