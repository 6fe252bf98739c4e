package test

import (
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// editConfig rewrites nd's config file, replacing old with new (which must
// be there).
func (nd *node) editConfig(t *testing.T, old, new string) {
	t.Helper()
	b, err := os.ReadFile(nd.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("config %s has no %q:\n%s", nd.config, old, b)
	}
	if err := os.WriteFile(nd.config, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSIGHUPReload: SIGHUP reloads the config file. The log level applies
// at once; a setting that cannot change live is reported as needing a
// restart; a config that does not validate is refused and the broker runs
// on as it was.
func TestSIGHUPReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := newCluster(t, 1)[0]
	nd.start(t)
	nd.waitKafka(t)
	adm := nd.admin(t)

	nd.editConfig(t, "log: {level: info, format: json}", "log: {level: warn, format: json}")
	nd.editConfig(t, "raft: {listen: "+`"`+nd.raft+`"}`, "raft: {listen: "+`"`+nd.raft+`", tick_ms: 20}`)
	nd.signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the reload reporting raft.tick_ms", func() bool {
		return strings.Contains(nd.tail(1<<20), `"keys":["raft.tick_ms"],"time"`) &&
			strings.Contains(nd.tail(1<<20), "take effect only after a restart")
	})
	createTopic(t, adm, "quiet", 1, nil)
	if strings.Contains(nd.tail(1<<20), `"topic":"quiet"`) {
		t.Fatal("an info line about topic quiet was logged at level warn")
	}

	nd.editConfig(t, "log: {level: warn, format: json}", "log: {level: info, format: json}")
	nd.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "info lines again after the level went back to info", func() bool {
		createTopic(t, adm, "loud-"+time.Now().Format("150405.000000"), 1, nil)
		return strings.Contains(nd.tail(1<<20), `"topic":"loud-`)
	})

	nd.editConfig(t, "log: {level: info, format: json}", "log: {level: chatty, format: json}")
	nd.signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the bad config refused", func() bool {
		return strings.Contains(nd.tail(1<<20), "config not reloaded") && strings.Contains(nd.tail(1<<20), "log.level")
	})
	if !nd.running() {
		t.Fatal("the broker exited on a bad config reload")
	}
	createTopic(t, adm, "still-serving", 1, nil)
}

// TestSIGHUPRetentionDefaults: the broker's retention defaults reload
// live. A topic that does not set retention.bytes rolls many small
// segments under the default (no size limit); lowering
// kafka.log_retention_bytes in the file and sending SIGHUP makes its
// running partition delete its oldest segments, and DescribeConfigs
// reports the new default for the broker and for the topic.
func TestSIGHUPRetentionDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := newCluster(t, 1)[0]
	nd.start(t)
	nd.waitKafka(t)
	adm := nd.admin(t)
	cl := nd.client(t)
	const topic = "rolled"
	createTopic(t, adm, topic, 1, map[string]*string{"segment.bytes": kadm.StringPtr("1024")})

	// One record of 600 random (incompressible) bytes per request, so one
	// batch per segment: 40 segments, about 27 KiB.
	const records = 40
	ctx := testCtx(t, 60*time.Second)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range records {
		value := make([]byte, 600)
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		r := &kgo.Record{Topic: topic, Value: value}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce record %d: %v", i, err)
		}
	}
	startOffset := func() int64 { return logStart(ctx, t, adm, topic) }
	if s := startOffset(); s != 0 {
		t.Fatalf("log start %d before the reload; want 0 (no size limit by default)", s)
	}
	brokerConfig := func(name string) kadm.Config {
		rcs, err := adm.DescribeBrokerConfigs(ctx, int32(nd.id))
		if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
			t.Fatalf("DescribeBrokerConfigs: %v %+v", err, rcs)
		}
		for _, c := range rcs[0].Configs {
			if c.Key == name {
				return c
			}
		}
		t.Fatalf("DescribeBrokerConfigs lacks %s", name)
		return kadm.Config{}
	}
	if c := brokerConfig("log.retention.bytes"); c.MaybeValue() != "-1" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("log.retention.bytes before the reload: %s from %s, want -1 from DEFAULT_CONFIG", c.MaybeValue(), c.Source)
	}

	nd.editConfig(t, "kafka: {listen: "+`"`+nd.kafka+`"}`, "kafka: {listen: "+`"`+nd.kafka+`", log_retention_bytes: 4096}`)
	nd.signal(syscall.SIGHUP)
	waitFor(t, 15*time.Second, "the partition deleting old segments under the new default", func() bool {
		return startOffset() > 0
	})
	// Whole segments of one record each go while at least 4096 bytes
	// remain: the log keeps 4096 bytes' worth and a little more.
	if s := startOffset(); s < records-10 || s > records-5 {
		t.Errorf("log start %d after lowering retention to 4096 bytes of 600-byte records; want %d to %d", s, records-10, records-5)
	}
	nd.waitReloadApplied(t, "kafka.log_retention_bytes")

	if c := brokerConfig("log.retention.bytes"); c.MaybeValue() != "4096" || c.Source != kmsg.ConfigSourceStaticBrokerConfig {
		t.Errorf("log.retention.bytes after the reload: %s from %s, want 4096 from STATIC_BROKER_CONFIG", c.MaybeValue(), c.Source)
	}
	if c := brokerConfig("log.retention.ms"); c.MaybeValue() != "604800000" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Errorf("log.retention.ms: %s from %s, want 604800000 from DEFAULT_CONFIG", c.MaybeValue(), c.Source)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("DescribeTopicConfigs: %v %+v", err, rcs)
	}
	for _, c := range rcs[0].Configs {
		switch c.Key {
		case "retention.bytes":
			if c.MaybeValue() != "4096" || c.Source != kmsg.ConfigSourceStaticBrokerConfig {
				t.Errorf("topic retention.bytes: %s from %s, want the broker's 4096 from STATIC_BROKER_CONFIG", c.MaybeValue(), c.Source)
			}
		case "segment.bytes":
			if c.MaybeValue() != "1024" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
				t.Errorf("topic segment.bytes: %s from %s, want its own 1024", c.MaybeValue(), c.Source)
			}
		}
	}
}
