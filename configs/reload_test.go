package configs

import (
	"slices"
	"testing"
)

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		name          string
		change        func(*Config)
		live, restart []string
	}{
		{"nothing", func(*Config) {}, nil, nil},
		{"log level and format", func(c *Config) { c.Log.Level, c.Log.Format = "debug", "json" }, []string{"log.level", "log.format"}, nil},
		{"peers", func(c *Config) { c.Peers = append(c.Peers, Peer{ID: 2, Addr: "127.0.0.1:9193"}) }, []string{"peers"}, nil},
		{"retention defaults", func(c *Config) {
			c.Kafka.LogRetentionMs, c.Kafka.LogRetentionBytes, c.Kafka.LogSegmentBytes = 1000, 1<<20, 1<<20
		}, []string{"kafka.log_retention_ms", "kafka.log_retention_bytes", "kafka.log_segment_bytes"}, nil},
		{"timestamp window defaults", func(c *Config) {
			c.Kafka.LogMessageTimestampBeforeMaxMs, c.Kafka.LogMessageTimestampAfterMaxMs = 1000, 2000
		}, []string{"kafka.log_message_timestamp_before_max_ms", "kafka.log_message_timestamp_after_max_ms"}, nil},
		{"topic auto-creation", func(c *Config) { c.Kafka.AutoCreateTopicsEnable = false },
			[]string{"kafka.auto_create_topics_enable"}, nil},
		{"nested fields", func(c *Config) { c.Raft.TickMs, c.Storage.Fsync = 20, false }, nil, []string{"raft.tick_ms", "storage.fsync"}},
		{"both kinds", func(c *Config) { c.Log.Level, c.Kafka.OffsetsTopicPartitions = "warn", 3 },
			[]string{"log.level"}, []string{"kafka.offsets_topic_partitions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := Default()
			cur.Peers = []Peer{{ID: 1, Addr: "127.0.0.1:9192"}}
			next := cur
			next.Peers = slices.Clone(cur.Peers)
			tc.change(&next)
			ch := Compare(&cur, &next)
			if !slices.Equal(ch.Live, tc.live) || !slices.Equal(ch.Restart, tc.restart) {
				t.Fatalf("Compare = live %v, restart %v; want %v, %v", ch.Live, ch.Restart, tc.live, tc.restart)
			}
			// The config in effect after a reload has every live change
			// and none of the others.
			applied := WithLive(&cur, &next)
			if got := Compare(&cur, applied); !slices.Equal(got.Live, tc.live) || got.Restart != nil {
				t.Errorf("WithLive took live %v, restart %v; want %v, none", got.Live, got.Restart, tc.live)
			}
			if got := Compare(applied, &next); got.Live != nil || !slices.Equal(got.Restart, tc.restart) {
				t.Errorf("after WithLive, live %v and restart %v still differ; want none, %v", got.Live, got.Restart, tc.restart)
			}
		})
	}
}

// TestCompareFiles: Compare judges settings by value, not by how a file
// spells them: a default written out explicitly is no change, and so no
// restart is asked for on reload.
func TestCompareFiles(t *testing.T) {
	for _, tc := range []struct {
		name, cur, next string
		restart         []string
	}{
		{"fsync written out", "", "storage:\n  fsync: true\n", nil},
		{"fsync left out again", "storage:\n  fsync: true\n", "", nil},
		{"fsync turned off", "", "storage:\n  fsync: false\n", []string{"storage.fsync"}},
		{"defaults written out", "", "raft:\n  tick_ms: 50\nstorage: {wal_segment_bytes: 67108864}\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur, err := Parse([]byte(tc.cur))
			if err != nil {
				t.Fatal(err)
			}
			next, err := Parse([]byte(tc.next))
			if err != nil {
				t.Fatal(err)
			}
			if ch := Compare(cur, next); ch.Live != nil || !slices.Equal(ch.Restart, tc.restart) {
				t.Errorf("Compare = live %v, restart %v; want none, %v", ch.Live, ch.Restart, tc.restart)
			}
		})
	}
}
