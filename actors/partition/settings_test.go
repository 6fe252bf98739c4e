package partition

import (
	"math"
	"testing"

	"github.com/flotilla/flotilla/actors/controller"
)

func TestSettingsOf(t *testing.T) {
	const before, after = math.MaxInt64, 3600000 // Kafka 4's defaults
	builtIn := Settings{RetentionMs: 604800000, RetentionBytes: -1, SegmentBytes: 1 << 30, MaxMessageBytes: 1048588, MinInsyncReplicas: 1,
		TimestampBeforeMaxMs: before, TimestampAfterMaxMs: after}
	for _, tc := range []struct {
		name     string
		configs  map[string]string
		defaults controller.TopicDefaults
		want     Settings
	}{
		{"built-in defaults", nil, nil, builtIn},
		{"broker defaults", nil, controller.TopicDefaults{"retention.ms": "1000", "retention.bytes": "4096", "segment.bytes": "2048"},
			Settings{RetentionMs: 1000, RetentionBytes: 4096, SegmentBytes: 2048, MaxMessageBytes: 1048588, MinInsyncReplicas: 1,
				TimestampBeforeMaxMs: before, TimestampAfterMaxMs: after}},
		{"topic over broker", map[string]string{"retention.bytes": "-1", "segment.bytes": "1024", "message.timestamp.type": "LogAppendTime"},
			controller.TopicDefaults{"retention.ms": "1000", "retention.bytes": "4096", "segment.bytes": "2048"},
			Settings{RetentionMs: 1000, RetentionBytes: -1, SegmentBytes: 1024, MaxMessageBytes: 1048588, LogAppendTime: true, MinInsyncReplicas: 1,
				TimestampBeforeMaxMs: before, TimestampAfterMaxMs: after}},
		{"timestamp window", map[string]string{"message.timestamp.after.max.ms": "60000"},
			controller.TopicDefaults{"message.timestamp.before.max.ms": "86400000", "message.timestamp.after.max.ms": "0"},
			Settings{RetentionMs: 604800000, RetentionBytes: -1, SegmentBytes: 1 << 30, MaxMessageBytes: 1048588, MinInsyncReplicas: 1,
				TimestampBeforeMaxMs: 86400000, TimestampAfterMaxMs: 60000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SettingsOf(tc.configs, tc.defaults)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("SettingsOf = %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := SettingsOf(map[string]string{"retention.ms": "soon"}, nil); err == nil {
		t.Error("SettingsOf took retention.ms=soon")
	}
}

// TestSetSegmentBytes: a new segment size applies from the next append.
func TestSetSegmentBytes(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	opts.SegmentBytes = 1 << 20
	l := mustOpen(t, opts)
	defer l.Close()
	for _, n := range []int64{0, BatchHeaderSize - 1, 1 << 31} {
		if err := l.SetSegmentBytes(n); err == nil {
			t.Errorf("SetSegmentBytes(%d) took it", n)
		}
	}
	var m model
	b := mkBatch(t, spec{valueSize: 100})
	for range 3 {
		m.add(t, l, b, 0, nil)
	}
	if n := len(l.view.Load().sealed); n != 0 {
		t.Fatalf("%d sealed segments after three small batches in 1 MiB segments", n)
	}
	if err := l.SetSegmentBytes(BatchHeaderSize); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		m.add(t, l, b, 0, nil)
	}
	if n := len(l.view.Load().sealed); n != 3 {
		t.Errorf("%d sealed segments after three more batches at the smallest segment size; want 3", n)
	}
	m.check(t, l, 0)
}

// TestRaftSettingsConfig: the raft settings reach a replica's raft config,
// the bound on a follower's in-flight bytes included.
func TestRaftSettingsConfig(t *testing.T) {
	rs := RaftSettings{ElectionTicks: 10, HeartbeatTicks: 2, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256,
		MaxInflightBytes: 8 << 20, MaxUncommittedBytes: 64 << 20}
	cfg := rs.Config(controller.Partition{Group: 7, Replicas: []uint64{1, 2, 3}}, "t/0", 1)
	if cfg.Group != 7 || cfg.MaxSizePerMsg != rs.MaxSizePerMsg || cfg.MaxInflightMsgs != rs.MaxInflightMsgs ||
		cfg.MaxInflightBytes != rs.MaxInflightBytes || cfg.MaxUncommittedBytes != rs.MaxUncommittedBytes {
		t.Fatalf("raft config %+v from settings %+v", cfg, rs)
	}
}
