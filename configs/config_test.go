package configs

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// threeNodes returns a valid configuration of node 1 of a three-node
// cluster, for tests to break one field at a time.
func threeNodes() Config {
	c := Default()
	c.Peers = []Peer{
		{ID: 1, Addr: "127.0.0.1:9192"},
		{ID: 2, Addr: "127.0.0.1:9193"},
		{ID: 3, Addr: "127.0.0.1:9194"},
	}
	return c
}

// joined splits an errors.Join result into its parts.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// wantErrors checks that err consists of exactly len(want) errors, the
// i-th containing want[i]; no want means err must be nil.
func wantErrors(t *testing.T, err error, want ...string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	got := joined(err)
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d (%q):\n%v", len(got), len(want), want, err)
	}
	for i, w := range want {
		if !strings.Contains(got[i].Error(), w) {
			t.Errorf("error %d = %q, want it to contain %q", i, got[i], w)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // substrings of the joined errors, in order
	}{
		{"default", func(c *Config) { *c = Default() }, nil},
		{"three nodes", func(c *Config) {}, nil},
		{"node 3 of three", func(c *Config) { c.NodeID, c.Raft.Listen = 3, "127.0.0.1:9194" }, nil},
		{"ephemeral listen ports", func(c *Config) {
			c.Kafka.Listen, c.Raft.Listen, c.Debug.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			c.Peers = nil
		}, nil},
		{"ephemeral listen ports alone in peers", func(c *Config) {
			c.Raft.Listen, c.Peers = "127.0.0.1:0", c.Peers[:1]
		}, nil},
		{"raft.listen on a wildcard", func(c *Config) { c.Raft.Listen = "0.0.0.0:9192" }, nil},
		{"raft.listen on a wildcard, another port", func(c *Config) { c.Raft.Listen = ":19192" }, nil},
		{"raft.listen on another address than peers", func(c *Config) {
			c.Raft.Listen = "10.0.0.1:9192"
			c.Peers[0].Addr = "192.0.2.1:19192" // behind a NAT
		}, nil},
		{"raft.listen as localhost", func(c *Config) { c.Raft.Listen = "localhost:9192" }, nil},
		{"distinct loopback addresses", func(c *Config) {
			c.Peers[1].Addr, c.Peers[2].Addr = "127.0.0.2:9192", "[::1]:9192"
		}, nil},
		{"debug off", func(c *Config) { c.Debug.Listen = "" }, nil},
		{"retention unlimited", func(c *Config) { c.Kafka.LogRetentionMs, c.Kafka.LogRetentionBytes = -1, -1 }, nil},
		{"retention zero", func(c *Config) { c.Kafka.LogRetentionMs, c.Kafka.LogRetentionBytes = 0, 0 }, nil},
		{"segment bounds", func(c *Config) { c.Kafka.LogSegmentBytes = 61 }, nil},
		{"segment upper bound", func(c *Config) { c.Kafka.LogSegmentBytes = 1<<31 - 1 }, nil},
		{"wildcard listen with advertise", func(c *Config) {
			c.Kafka.Listen, c.Kafka.Advertise = "0.0.0.0:9092", "broker1.example:9092"
		}, nil},
		{"ipv6 addresses", func(c *Config) {
			c.Kafka.Listen = "[::1]:9092"
			c.Peers[0].Addr = "[::1]:9192"
		}, nil},
		{"uncommitted and per-msg limits off", func(c *Config) {
			c.Raft.MaxUncommittedBytes, c.Raft.MaxSizePerMsg = 0, 0
		}, nil},

		{"node_id zero", func(c *Config) { c.NodeID = 0 }, []string{"node_id: must be > 0"}},
		{"node_id not in peers", func(c *Config) { c.NodeID = 4 }, []string{"node_id: 4 is not in peers"}},
		{"node_id at int32's max", func(c *Config) {
			c.NodeID, c.Peers[2].ID, c.Raft.Listen = math.MaxInt32, math.MaxInt32, c.Peers[2].Addr
		}, nil},
		{"node_id past int32", func(c *Config) { c.NodeID, c.Peers[2].ID = 1<<32+1, 1<<32+1 },
			[]string{"node_id: must be at most 2147483647 (Kafka's broker ids are int32), got 4294967297",
				"peers[2].id: must be at most 2147483647 (Kafka's broker ids are int32), got 4294967297"}},
		{"peer id past int32", func(c *Config) { c.Peers[1].ID = math.MaxInt32 + 1 },
			[]string{"peers[1].id: must be at most 2147483647"}},
		{"data_dir empty", func(c *Config) { c.DataDir = "" }, []string{"data_dir: must not be empty"}},

		{"peer duplicate id", func(c *Config) { c.Peers[1].ID = 1; c.Peers[2].ID = 1 },
			[]string{"peers[1].id: duplicate id 1", "peers[2].id: duplicate id 1"}},
		{"peer duplicate id 2", func(c *Config) { c.Peers[1].ID = 2; c.Peers[2].ID = 2 },
			[]string{"peers[2].id: duplicate id 2"}},
		{"peer missing id", func(c *Config) { c.Peers[2].ID = 0 }, []string{"peers[2].id: must be > 0"}},
		{"peer addr missing port", func(c *Config) { c.Peers[0].Addr = "foo" },
			[]string{`peers[0].addr: "foo": missing port`}},
		{"peer addr empty", func(c *Config) { c.Peers[1].Addr = "" }, []string{"peers[1].addr: must not be empty"}},
		{"peer addr port zero", func(c *Config) { c.Peers[0].Addr = "127.0.0.1:0" },
			[]string{`peers[0].addr: "127.0.0.1:0": port 0 out of range 1-65535`}},
		{"peer addr port too big", func(c *Config) { c.Peers[0].Addr = "127.0.0.1:65536" },
			[]string{`peers[0].addr: "127.0.0.1:65536": port 65536 out of range`}},
		{"peer addr named port", func(c *Config) { c.Peers[0].Addr = "127.0.0.1:http" },
			[]string{`peers[0].addr: "127.0.0.1:http": port "http" is not a number`}},
		{"peer addr signed port", func(c *Config) { c.Peers[0].Addr = "127.0.0.1:+80" },
			[]string{`peers[0].addr: "127.0.0.1:+80": port "+80" is not a number`}},
		{"peer addr no host", func(c *Config) { c.Peers[0].Addr = ":9192" }, []string{`peers[0].addr: ":9192": host must be a reachable address`}},
		{"peer addr wildcard", func(c *Config) { c.Peers[2].Addr = "0.0.0.0:9194" }, []string{"peers[2].addr"}},
		{"peer addr duplicate", func(c *Config) { c.Peers[2].Addr = c.Peers[0].Addr },
			[]string{`peers[2].addr: duplicate address "127.0.0.1:9192" (also peers[0])`}},
		{"peer addr duplicate as localhost", func(c *Config) { c.Peers[2].Addr = "LocalHost:9192" },
			[]string{`peers[2].addr: duplicate address "LocalHost:9192": peers[0] "127.0.0.1:9192" is the same`}},
		{"peer addr duplicate as ipv6 loopback and localhost", func(c *Config) {
			c.Peers[1].Addr, c.Peers[2].Addr = "[::1]:9192", "localhost:9192"
		}, []string{`peers[2].addr: duplicate address "localhost:9192": peers[0] "127.0.0.1:9192" is the same`}},
		{"peer addr duplicate as ipv4-mapped ipv6", func(c *Config) { c.Peers[2].Addr = "[::ffff:127.0.0.1]:9192" },
			[]string{`peers[2].addr: duplicate address "[::ffff:127.0.0.1]:9192": peers[0] "127.0.0.1:9192" is the same`}},
		{"peer host names differ in case only", func(c *Config) {
			c.Peers[1].Addr, c.Peers[2].Addr = "broker.example:9192", "Broker.Example:9192"
		}, []string{`peers[2].addr: duplicate address "Broker.Example:9192": peers[1] "broker.example:9192" is the same`}},
		{"raft.listen on another peer's address", func(c *Config) { c.NodeID = 2 },
			[]string{`raft.listen: "127.0.0.1:9192" is the address of peers[0] (node 1); this node's is "127.0.0.1:9193"`}},
		{"raft.listen on another peer's address as localhost", func(c *Config) { c.NodeID, c.Raft.Listen = 2, "localhost:9194" },
			[]string{`raft.listen: "localhost:9194" is the address of peers[2] (node 3)`}},
		{"raft.listen on a random port with peers", func(c *Config) { c.Raft.Listen = "127.0.0.1:0" },
			[]string{`raft.listen: "127.0.0.1:0": port 0 picks a port at random, and the other peers dial this node at "127.0.0.1:9192"`}},
		{"raft.listen on another loopback port", func(c *Config) { c.Raft.Listen = "127.0.0.1:9999" },
			[]string{`raft.listen: "127.0.0.1:9999": this node's address in peers is "127.0.0.1:9192"`}},

		{"kafka.listen no port", func(c *Config) { c.Kafka.Listen = "localhost" }, []string{"kafka.listen:"}},
		{"kafka.listen empty", func(c *Config) { c.Kafka.Listen = "" }, []string{"kafka.listen: must not be empty"}},
		{"kafka.listen port out of range", func(c *Config) { c.Kafka.Listen = "127.0.0.1:70000" }, []string{"kafka.listen:"}},
		{"kafka.listen wildcard needs advertise", func(c *Config) { c.Kafka.Listen = "0.0.0.0:9092" }, []string{"kafka.advertise: must be set"}},
		{"kafka.listen ipv6 wildcard needs advertise", func(c *Config) { c.Kafka.Listen = "[::]:9092" }, []string{"kafka.advertise: must be set"}},
		{"kafka.listen empty host needs advertise", func(c *Config) { c.Kafka.Listen = ":9092" }, []string{"kafka.advertise: must be set"}},
		{"kafka.advertise port zero", func(c *Config) { c.Kafka.Advertise = "127.0.0.1:0" }, []string{"kafka.advertise:"}},
		{"kafka.advertise wildcard", func(c *Config) { c.Kafka.Advertise = "0.0.0.0:9092" }, []string{"kafka.advertise:"}},
		{"raft.listen empty", func(c *Config) { c.Raft.Listen = "" }, []string{"raft.listen: must not be empty"}},
		{"raft.listen bad", func(c *Config) { c.Raft.Listen = "127.0.0.1:-1" }, []string{"raft.listen:"}},
		{"debug.listen bad", func(c *Config) { c.Debug.Listen = "9292" }, []string{"debug.listen:"}},

		{"tick_ms zero", func(c *Config) { c.Raft.TickMs = 0 }, []string{"raft.tick_ms: must be > 0"}},
		{"replica lag below a tick", func(c *Config) { c.Kafka.ReplicaLagTimeMaxMs = 10 },
			[]string{"kafka.replica_lag_time_max_ms: must be at least one raft tick"}},
		{"broker session timeout below 20 ticks", func(c *Config) { c.Kafka.BrokerSessionTimeoutMs = 999 },
			[]string{"kafka.broker_session_timeout_ms: must be at least 20 raft ticks (1000 ms), got 999"}},
		{"producer expiration zero", func(c *Config) { c.Kafka.ProducerIDExpirationMs = 0 },
			[]string{"kafka.producer_id_expiration_ms: must be > 0, got 0"}},
		{"producer expiration negative", func(c *Config) { c.Kafka.ProducerIDExpirationMs = -1 },
			[]string{"kafka.producer_id_expiration_ms: must be > 0, got -1"}},
		{"no offsets partitions", func(c *Config) { c.Kafka.OffsetsTopicPartitions = 0 }, []string{"kafka.offsets_topic_partitions: must be between 1 and 1000"}},
		{"session bounds inverted", func(c *Config) { c.Kafka.GroupMaxSessionTimeoutMs = 10 },
			[]string{"kafka.group_max_session_timeout_ms: must be at least kafka.group_min_session_timeout_ms"}},
		{"negative offsets retention", func(c *Config) { c.Kafka.OffsetsRetentionMinutes = -1 },
			[]string{"kafka.offsets_retention_minutes: must be >= 0"}},
		{"negative rebalance delay", func(c *Config) { c.Kafka.GroupInitialRebalanceDelayMs = -1 },
			[]string{"kafka.group_initial_rebalance_delay_ms: must be >= 0"}},
		{"log retention ms below -1", func(c *Config) { c.Kafka.LogRetentionMs = -2 },
			[]string{"kafka.log_retention_ms: must be >= -1 (-1 keeps segments forever), got -2"}},
		{"log retention bytes below -1", func(c *Config) { c.Kafka.LogRetentionBytes = -5 },
			[]string{"kafka.log_retention_bytes: must be >= -1 (-1 means no size limit), got -5"}},
		{"log segment bytes zero", func(c *Config) { c.Kafka.LogSegmentBytes = 0 },
			[]string{"kafka.log_segment_bytes: must be between 61 and 2147483647, got 0"}},
		{"log segment bytes below a batch header", func(c *Config) { c.Kafka.LogSegmentBytes = 60 },
			[]string{"kafka.log_segment_bytes: must be between 61"}},
		{"negative timestamp windows", func(c *Config) {
			c.Kafka.LogMessageTimestampBeforeMaxMs, c.Kafka.LogMessageTimestampAfterMaxMs = -1, -2
		}, []string{"kafka.log_message_timestamp_before_max_ms: must be >= 0, got -1", "kafka.log_message_timestamp_after_max_ms: must be >= 0, got -2"}},
		{"log segment bytes past 32-bit positions", func(c *Config) { c.Kafka.LogSegmentBytes = 1 << 31 },
			[]string{"kafka.log_segment_bytes: must be between 61 and 2147483647, got 2147483648"}},
		{"election not above heartbeat", func(c *Config) { c.Raft.ElectionTicks = 2 },
			[]string{"raft.election_ticks: must be greater than heartbeat_ticks"}},
		{"heartbeat zero", func(c *Config) { c.Raft.HeartbeatTicks = 0 }, []string{"raft.heartbeat_ticks: must be > 0"}},
		{"max_frame_bytes zero", func(c *Config) { c.Raft.MaxFrameBytes = 0 }, []string{"raft.max_frame_bytes: must be at least 49"}},
		{"max_frame_bytes below one message's framing", func(c *Config) { c.Raft.MaxFrameBytes, c.Raft.MaxSizePerMsg = 48, 0 },
			[]string{"raft.max_frame_bytes: must be at least 49, the framing of one raft message, got 48"}},
		{"smallest frame and queue", func(c *Config) {
			c.Raft.MaxFrameBytes, c.Raft.PeerQueueBytes, c.Raft.MaxSizePerMsg = 49, 49, 0
		}, nil},
		{"peer_queue_bytes below max_frame_bytes", func(c *Config) { c.Raft.PeerQueueBytes = 1 << 20 },
			[]string{"raft.peer_queue_bytes: must be at least max_frame_bytes (1048576 < 67108864)"}},
		{"max_size_per_msg too big for a frame", func(c *Config) { c.Raft.MaxSizePerMsg = uint64(c.Raft.MaxFrameBytes) },
			[]string{"raft.max_size_per_msg: must be at most 44739164, about 2/3 of max_frame_bytes (67108864)"}},
		{"max_inflight_msgs zero", func(c *Config) { c.Raft.MaxInflightMsgs = 0 }, []string{"raft.max_inflight_msgs"}},
		{"snapshot_entries zero", func(c *Config) { c.Raft.SnapshotEntries = 0 }, []string{"raft.snapshot_entries"}},
		{"peer_queue_bytes negative", func(c *Config) { c.Raft.PeerQueueBytes = -1 }, []string{"raft.peer_queue_bytes"}},
		{"max_snapshot_bytes below a frame", func(c *Config) { c.Raft.MaxSnapshotBytes = c.Raft.MaxFrameBytes - 1 },
			[]string{"raft.max_snapshot_bytes: must be at least max_frame_bytes"}},
		{"max_snapshot_bytes zero", func(c *Config) { c.Raft.MaxSnapshotBytes = 0 }, []string{"raft.max_snapshot_bytes"}},

		{"wal_segment_bytes zero", func(c *Config) { c.Storage.WALSegmentBytes = 0 }, []string{"storage.wal_segment_bytes"}},
		{"wal_budget_bytes below a segment", func(c *Config) { c.Storage.WALBudgetBytes = c.Storage.WALSegmentBytes - 1 },
			[]string{"storage.wal_budget_bytes: must be at least wal_segment_bytes"}},
		{"min_free_bytes negative", func(c *Config) { c.Storage.MinFreeBytes = -1 }, []string{"storage.min_free_bytes: must be >= 0"}},

		{"log.level unknown", func(c *Config) { c.Log.Level = "loud" }, []string{`log.level: unknown level "loud"`}},
		{"log.level empty", func(c *Config) { c.Log.Level = "" }, []string{"log.level"}},
		{"log.format unknown", func(c *Config) { c.Log.Format = "xml" }, []string{`log.format: unknown format "xml"`}},

		{"all problems at once", func(c *Config) {
			c.NodeID = 0
			c.DataDir = ""
			c.Peers[1].ID = 3
			c.Log.Level = "loud"
		}, []string{"node_id: must be > 0", "data_dir", "log.level", "peers[2].id: duplicate id 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := threeNodes()
			tt.mutate(&c)
			before := c
			before.Peers = append([]Peer(nil), c.Peers...)
			err := c.Validate()
			wantErrors(t, err, tt.want...)
			if err != nil && !reflect.DeepEqual(c, before) {
				t.Errorf("Validate changed the config although it failed:\n got %+v\nwant %+v", c, before)
			}
		})
	}
}

func TestValidateFillsDerivedFields(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := []Peer{{ID: 1, Addr: "127.0.0.1:9192"}}; !reflect.DeepEqual(c.Peers, want) {
		t.Errorf("peers = %v, want %v", c.Peers, want)
	}
	if c.Kafka.Advertise != "127.0.0.1:9092" {
		t.Errorf("kafka.advertise = %q, want kafka.listen", c.Kafka.Advertise)
	}

	// An explicit advertise address is kept.
	c = Default()
	c.Kafka.Listen, c.Kafka.Advertise = "0.0.0.0:9092", "10.0.0.1:9092"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Advertise != "10.0.0.1:9092" {
		t.Errorf("kafka.advertise = %q, want it unchanged", c.Kafka.Advertise)
	}

	// With an ephemeral port the address to advertise is not known yet.
	c = Default()
	c.NodeID = 7
	c.Kafka.Listen, c.Raft.Listen = "127.0.0.1:0", "127.0.0.1:0"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Advertise != "" {
		t.Errorf("kafka.advertise = %q, want empty for port 0", c.Kafka.Advertise)
	}
	if want := []Peer{{ID: 7, Addr: "127.0.0.1:0"}}; !reflect.DeepEqual(c.Peers, want) {
		t.Errorf("peers = %v, want %v", c.Peers, want)
	}
}

// TestProducerExpiryTicks: a leader looks for expired producers every
// expiration, but at least every 10 minutes, and at most every tick.
func TestProducerExpiryTicks(t *testing.T) {
	tests := []struct {
		name         string
		tickMs       int
		expirationMs int64
		want         uint64
	}{
		{"default: 10 minutes of 50 ms ticks", 50, 86400000, 12000},
		{"exactly 10 minutes", 50, 600000, 12000},
		{"below 10 minutes: the expiration", 50, 60000, 1200},
		{"rounded up to a whole tick", 20, 210, 11},
		{"below a tick: every tick", 50, 1, 1},
		{"longest expiration", 50, math.MaxInt64, 12000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Raft.TickMs, c.Kafka.ProducerIDExpirationMs = tt.tickMs, tt.expirationMs
			if got := c.ProducerExpiryTicks(); got != tt.want {
				t.Errorf("ProducerExpiryTicks() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"node_id", c.NodeID, uint64(1)},
		{"data_dir", c.DataDir, "./data"},
		{"bootstrap", c.Bootstrap, true},
		{"kafka.listen", c.Kafka.Listen, "127.0.0.1:9092"},
		{"raft.listen", c.Raft.Listen, "127.0.0.1:9192"},
		{"debug.listen", c.Debug.Listen, "127.0.0.1:9292"},
		{"peers", len(c.Peers), 0},
		{"tick", c.TickInterval(), 50 * time.Millisecond},
		{"election_ticks", c.Raft.ElectionTicks, 10},
		{"heartbeat_ticks", c.Raft.HeartbeatTicks, 2},
		{"max_frame_bytes", c.Raft.MaxFrameBytes, 64 << 20},
		{"max_size_per_msg", c.Raft.MaxSizePerMsg, uint64(1 << 20)},
		{"max_inflight_msgs", c.Raft.MaxInflightMsgs, 256},
		{"max_uncommitted_bytes", c.Raft.MaxUncommittedBytes, uint64(64 << 20)},
		{"snapshot_entries", c.Raft.SnapshotEntries, uint64(10000)},
		{"peer_queue_bytes", c.Raft.PeerQueueBytes, 64 << 20},
		{"max_snapshot_bytes", c.Raft.MaxSnapshotBytes, 1 << 30},
		{"fsync", c.Storage.Fsync, true},
		{"wal_segment_bytes", c.Storage.WALSegmentBytes, int64(64 << 20)},
		{"wal_budget_bytes", c.Storage.WALBudgetBytes, int64(1 << 30)},
		{"min_free_bytes", c.Storage.MinFreeBytes, int64(256 << 20)},
		{"producer_id_expiration_ms", c.Kafka.ProducerIDExpirationMs, int64(86400000)},
		{"auto_create_topics_enable", c.Kafka.AutoCreateTopicsEnable, true},
		{"broker session timeout", c.BrokerSessionTimeout(), 9 * time.Second},
		{"producer expiry ticks", c.ProducerExpiryTicks(), uint64(12000)},
		{"log_retention_ms", c.Kafka.LogRetentionMs, int64(604800000)},
		{"log_retention_bytes", c.Kafka.LogRetentionBytes, int64(-1)},
		{"log_segment_bytes", c.Kafka.LogSegmentBytes, int64(1 << 30)},
		{"log_message_timestamp_before_max_ms", c.Kafka.LogMessageTimestampBeforeMaxMs, int64(math.MaxInt64)},
		{"log_message_timestamp_after_max_ms", c.Kafka.LogMessageTimestampAfterMaxMs, int64(3600000)},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "console"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestPeerMethods(t *testing.T) {
	c := threeNodes()
	c.NodeID = 2
	if addr, ok := c.PeerAddr(3); !ok || addr != "127.0.0.1:9194" {
		t.Errorf("PeerAddr(3) = %q, %v", addr, ok)
	}
	if addr, ok := c.PeerAddr(4); ok {
		t.Errorf("PeerAddr(4) = %q, true; want not found", addr)
	}
	others := c.OtherPeers()
	if want := []Peer{c.Peers[0], c.Peers[2]}; !reflect.DeepEqual(others, want) {
		t.Errorf("OtherPeers = %v, want %v", others, want)
	}
	others[0].ID = 99
	if c.Peers[0].ID != 1 {
		t.Error("OtherPeers shares its backing array with Peers")
	}
	if s := c.Peers[0].String(); s != "1@127.0.0.1:9192" {
		t.Errorf("Peer.String = %q", s)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
		want  []string // error substrings; nil means success
	}{
		{name: "empty file is the defaults", yaml: "", check: func(t *testing.T, c *Config) {
			if want := Default(); !reflect.DeepEqual(*c, want) {
				t.Errorf("got %+v, want defaults", *c)
			}
		}},
		{name: "comments only", yaml: "# nothing here\n", check: func(t *testing.T, c *Config) {
			if c.NodeID != 1 {
				t.Errorf("node_id = %d, want default", c.NodeID)
			}
		}},
		{name: "omitted keys keep defaults", yaml: "node_id: 2\nraft:\n  tick_ms: 10\n", check: func(t *testing.T, c *Config) {
			if c.NodeID != 2 || c.Raft.TickMs != 10 {
				t.Errorf("file values lost: %+v", *c)
			}
			if c.Raft.ElectionTicks != 10 || c.Raft.Listen != "127.0.0.1:9192" || c.Log.Level != "info" {
				t.Errorf("defaults lost next to a set key: %+v", *c)
			}
		}},
		{name: "empty section keeps defaults", yaml: "kafka:\n", check: func(t *testing.T, c *Config) {
			if c.Kafka.Listen != "127.0.0.1:9092" {
				t.Errorf("kafka.listen = %q", c.Kafka.Listen)
			}
		}},
		{name: "retention defaults", yaml: "kafka:\n  log_retention_ms: 3600000\n  log_retention_bytes: 1048576\n  log_segment_bytes: 65536\n",
			check: func(t *testing.T, c *Config) {
				want := map[string]string{"retention.ms": "3600000", "retention.bytes": "1048576", "segment.bytes": "65536",
					"message.timestamp.before.max.ms": "9223372036854775807", "message.timestamp.after.max.ms": "3600000"}
				if got := c.Kafka.TopicDefaults(); !reflect.DeepEqual(got, want) {
					t.Errorf("TopicDefaults = %v, want %v", got, want)
				}
			}},
		{name: "timestamp window defaults", yaml: "kafka:\n  log_message_timestamp_before_max_ms: 86400000\n  log_message_timestamp_after_max_ms: 0\n",
			check: func(t *testing.T, c *Config) {
				want := map[string]string{"retention.ms": "604800000", "retention.bytes": "-1", "segment.bytes": "1073741824",
					"message.timestamp.before.max.ms": "86400000", "message.timestamp.after.max.ms": "0"}
				if got := c.Kafka.TopicDefaults(); !reflect.DeepEqual(got, want) {
					t.Errorf("TopicDefaults = %v, want %v", got, want)
				}
			}},
		{name: "fraction for a node id", yaml: "node_id: 1.5\n", want: []string{"line 1: node_id: 1.5 is not a whole number"}},
		{name: "fraction for a retention", yaml: "kafka:\n  log_retention_ms: 1.9\n", want: []string{"line 2: kafka.log_retention_ms: 1.9 is not a whole number"}},
		{name: "fraction for a size", yaml: "raft:\n  max_size_per_msg: 0.5\n", want: []string{"raft.max_size_per_msg: 0.5 is not a whole number"}},
		{name: "fraction for a peer id", yaml: "peers:\n  - {id: 1.5, addr: 'h:1'}\n", want: []string{"peers[0].id: 1.5 is not a whole number"}},
		{name: "negative float for an unsigned setting", yaml: "raft:\n  snapshot_entries: -2e0\n",
			want: []string{"line 2: raft.snapshot_entries: must be between 0 and 18446744073709551615, got -2e0"}},
		{name: "float at 2^64 for an unsigned setting", yaml: "node_id: 18446744073709551615.0\n",
			want: []string{"line 1: node_id: must be between 0 and 18446744073709551615, got 18446744073709551615.0"}},
		{name: "float at 2^63 for a signed setting", yaml: "kafka: {log_retention_ms: 9223372036854775807.0}\n",
			want: []string{"line 1: kafka.log_retention_ms: must be between -9223372036854775808 and 9223372036854775807, got 9223372036854775807.0"}},
		{name: "float far above a setting's range", yaml: "node_id: 2e19\n", want: []string{"line 1: node_id: cannot unmarshal !!float `2e19` into uint64"}},
		{name: "infinity for an integer setting", yaml: "raft:\n  tick_ms: .inf\n", want: []string{"line 2: raft.tick_ms: cannot unmarshal !!float `.inf`"}},
		{name: "float for a string setting", yaml: "data_dir: 1.5\n", check: func(t *testing.T, c *Config) {
			if c.DataDir != "1.5" {
				t.Errorf("data_dir: 1.5 read as %q", c.DataDir)
			}
		}},
		{name: "negative whole float for a signed setting", yaml: "kafka:\n  log_retention_ms: -1.0\n", check: func(t *testing.T, c *Config) {
			if c.Kafka.LogRetentionMs != -1 {
				t.Errorf("log_retention_ms: -1.0 read as %d", c.Kafka.LogRetentionMs)
			}
		}},
		{name: "debug.listen without a value turns the endpoint off", yaml: "debug:\n  listen:\n", check: func(t *testing.T, c *Config) {
			if c.Debug.Listen != "" {
				t.Errorf("debug.listen = %q, want off", c.Debug.Listen)
			}
		}},
		{name: "debug.listen null turns the endpoint off", yaml: "debug: {listen: ~}\nlog:\n  level: debug\n", check: func(t *testing.T, c *Config) {
			if c.Debug.Listen != "" || c.Log.Level != "debug" {
				t.Errorf("debug.listen = %q, log.level = %q; want off, debug", c.Debug.Listen, c.Log.Level)
			}
		}},
		{name: "debug.listen null merged in", yaml: "debug: {<<: {listen: null}}\n", check: func(t *testing.T, c *Config) {
			if c.Debug.Listen != "" {
				t.Errorf("debug.listen = %q, want off", c.Debug.Listen)
			}
		}},
		{name: "debug.listen null merged in and set", yaml: "debug: {<<: {listen: null}, listen: '127.0.0.1:1'}\n", check: func(t *testing.T, c *Config) {
			if c.Debug.Listen != "127.0.0.1:1" {
				t.Errorf("debug.listen = %q, want the one set", c.Debug.Listen)
			}
		}},
		{name: "kafka.advertise without a value follows kafka.listen", yaml: "kafka:\n  advertise:\n  listen: 127.0.0.1:9999\n", check: func(t *testing.T, c *Config) {
			if err := c.Validate(); err != nil || c.Kafka.Advertise != "127.0.0.1:9999" {
				t.Errorf("kafka.advertise = %q (%v), want kafka.listen", c.Kafka.Advertise, err)
			}
		}},
		{name: "section without keys keeps its defaults", yaml: "debug:\nraft:\n", check: func(t *testing.T, c *Config) {
			if d := Default(); c.Debug != d.Debug || c.Raft != d.Raft {
				t.Errorf("debug %+v, raft %+v; want the defaults", c.Debug, c.Raft)
			}
		}},
		{name: "peers without entries", yaml: "peers:\n", check: func(t *testing.T, c *Config) {
			if len(c.Peers) != 0 {
				t.Errorf("peers = %v, want none", c.Peers)
			}
		}},
		{name: "data_dir without a value", yaml: "node_id: 1\ndata_dir:\n",
			want: []string{`line 2: data_dir: no value; give one, or leave the key out for the default "./data"`}},
		{name: "keys null", yaml: "raft:\n  tick_ms: ~\nstorage: {fsync: null}\nkafka:\n  listen: &none\n  auto_create_topics_enable: *none\n",
			want: []string{
				"line 2: raft.tick_ms: no value; give one, or leave the key out for the default 50",
				"line 3: storage.fsync: no value; give one, or leave the key out for the default true",
				`line 5: kafka.listen: no value; give one, or leave the key out for the default "127.0.0.1:9092"`,
				"line 6: kafka.auto_create_topics_enable: no value",
			}},
		{name: "peer address null", yaml: "peers:\n  - id: 1\n    addr:\n", want: []string{"line 3: peers[0].addr: no value"}},
		{name: "whole number written with an exponent", yaml: "kafka:\n  log_retention_ms: 1e3\n", check: func(t *testing.T, c *Config) {
			if c.Kafka.LogRetentionMs != 1000 {
				t.Errorf("log_retention_ms: 1e3 read as %d", c.Kafka.LogRetentionMs)
			}
		}},
		{name: "fsync off", yaml: "storage:\n  fsync: false\n", check: func(t *testing.T, c *Config) {
			if c.Storage.Fsync {
				t.Error("fsync: false ignored")
			}
		}},
		{name: "auto-creation off", yaml: "kafka: {auto_create_topics_enable: false}\n", check: func(t *testing.T, c *Config) {
			if c.Kafka.AutoCreateTopicsEnable {
				t.Error("auto_create_topics_enable: false ignored")
			}
		}},
		{name: "bootstrap off", yaml: "bootstrap: false\n", check: func(t *testing.T, c *Config) {
			if c.Bootstrap {
				t.Error("bootstrap: false ignored")
			}
		}},
		{name: "flow peers", yaml: "peers: [{id: 1, addr: 'h:1'}, {id: 2, addr: 'h:2'}]\n", check: func(t *testing.T, c *Config) {
			if want := []Peer{{1, "h:1"}, {2, "h:2"}}; !reflect.DeepEqual(c.Peers, want) {
				t.Errorf("peers = %v, want %v", c.Peers, want)
			}
		}},
		{name: "Load does not validate", yaml: "node_id: 0\nlog:\n  level: loud\n", check: func(t *testing.T, c *Config) {
			if c.NodeID != 0 || c.Log.Level != "loud" {
				t.Errorf("got %+v", *c)
			}
		}},

		{name: "unknown top-level key", yaml: "node_id: 1\nnodeid: 2\n", want: []string{"line 2: nodeid: unknown key"}},
		{name: "unknown nested key", yaml: "kafka:\n  listen: h:1\n  lisen: h:2\n", want: []string{"line 3: kafka.lisen: unknown key"}},
		{name: "unknown key in a peer", yaml: "peers:\n  - id: 1\n    adr: h:1\n", want: []string{"line 3: peers[0].adr: unknown key"}},
		{name: "two unknown keys", yaml: "foo: 1\nraft:\n  bar: 2\n", want: []string{"line 1: foo: unknown key", "line 3: raft.bar: unknown key"}},
		{name: "wrong type scalar", yaml: "node_id: abc\n", want: []string{"line 1: node_id: cannot unmarshal"}},
		{name: "negative into unsigned", yaml: "raft:\n  snapshot_entries: -5\n", want: []string{"line 2: raft.snapshot_entries: cannot unmarshal"}},
		{name: "wrong type nested", yaml: "raft:\n  tick_ms: fast\n", want: []string{"line 2: raft.tick_ms: cannot unmarshal !!str `fast`"}},
		{name: "wrong type bool", yaml: "storage:\n  fsync: maybe\n", want: []string{"line 2: storage.fsync: cannot unmarshal"}},
		{name: "mapping where a list goes", yaml: "peers:\n  id: 1\n", want: []string{"line 2: peers: cannot unmarshal !!map"}},
		{name: "list where a mapping goes", yaml: "kafka: [1, 2]\n", want: []string{"line 1: kafka: cannot unmarshal !!seq"}},
		{name: "flow style: wrong type next to a good key", yaml: "raft: {tick_ms: 50, max_size_per_msg: -1}\n",
			want: []string{"line 1: raft.max_size_per_msg: cannot unmarshal !!int `-1` into uint64"}},
		{name: "flow style: negative peer id", yaml: "peers: [{id: 1, addr: 'h:1'}, {id: -2, addr: 'h:2'}]\n",
			want: []string{"line 1: peers[1].id: cannot unmarshal !!int `-2` into uint64"}},
		{name: "flow style: two bad values on a line", yaml: "raft: {tick_ms: x, election_ticks: y}\n",
			want: []string{"line 1: raft.tick_ms: cannot unmarshal !!str `x`", "line 1: raft.election_ticks: cannot unmarshal !!str `y`"}},
		{name: "flow style: one unknown key in two peers", yaml: "peers: [{id: 1, adr: 'h:1'}, {id: 2, adr: 'h:2'}]\n",
			want: []string{"line 1: peers[0].adr: unknown key", "line 1: peers[1].adr: unknown key"}},
		{name: "flow style: scalar for a peer", yaml: "peers: [1]\n", want: []string{"line 1: peers[0]: cannot unmarshal !!int `1`"}},
		{name: "errors in line order", yaml: "raft: {tick_ms: x}\nfoo: 1\nnode_id: y\n",
			want: []string{"line 1: raft.tick_ms: cannot unmarshal", "line 2: foo: unknown key", "line 3: node_id: cannot unmarshal"}},
		{name: "alias reported where it is used", yaml: "node_id: &x abc\nraft: {tick_ms: *x}\n",
			want: []string{"line 1: node_id: cannot unmarshal", "line 2: raft.tick_ms: cannot unmarshal !!str `abc` into int"}},
		{name: "merged keys", yaml: "peers: [&p {id: 1, addr: 'h:1'}, {<<: *p, id: x}]\n",
			want: []string{"line 1: peers[1].id: cannot unmarshal !!str `x`"}},
		{name: "not a mapping", yaml: "hello\n", want: []string{"line 1: cannot unmarshal"}},
		{name: "duplicate key", yaml: "node_id: 1\nnode_id: 2\n", want: []string{`"node_id" already defined`}},
		{name: "syntax error", yaml: "kafka:\n  listen: [\n", want: []string{"line"}},
		{name: "second document", yaml: "node_id: 1\n---\nnode_id: 2\n", want: []string{"line 2: unexpected second YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			wantErrors(t, err, tt.want...)
			if err == nil && tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	path := writeFile(t, "bad.yaml", "foo: 1\nkafka:\n  bar: 2\n")
	_, err := Load(path)
	wantErrors(t, err, "config "+path+": line 1: foo: unknown key", "config "+path+": line 3: kafka.bar: unknown key")

	missing := filepath.Join(t.TempDir(), "missing.yaml")
	_, err = Load(missing)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	if want := "config " + missing + ": "; !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), missing) != 1 {
		t.Errorf("Load(missing) = %q, want %q prefix naming the path once", err, want)
	}
}

func TestFromArgs(t *testing.T) {
	file := writeFile(t, "node.yaml", `
node_id: 2
data_dir: /var/lib/flotilla
kafka:
  listen: 127.0.0.1:9093
raft:
  listen: 127.0.0.1:9193
  tick_ms: 20
peers:
  - {id: 1, addr: "127.0.0.1:9192"}
  - {id: 2, addr: "127.0.0.1:9193"}
  - {id: 3, addr: "127.0.0.1:9194"}
log:
  level: debug
  format: json
`)
	advertised := writeFile(t, "adv.yaml", "kafka:\n  listen: 0.0.0.0:9092\n  advertise: broker.example:9092\n")
	mirrored := writeFile(t, "mirror.yaml", "kafka:\n  listen: 127.0.0.1:9092\n  advertise: 127.0.0.1:9092\n")
	invalid := writeFile(t, "invalid.yaml", "node_id: 4\npeers: [{id: 1, addr: 'h:1'}, {id: 2, addr: 'h:1'}]\n")

	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c *Config)
		want  []string
	}{
		{name: "no args is the defaults", args: nil, check: func(t *testing.T, c *Config) {
			want := Default()
			want.Kafka.Advertise = want.Kafka.Listen
			want.Peers, want.PeersDefaulted = []Peer{{1, "127.0.0.1:9192"}}, true
			if !reflect.DeepEqual(*c, want) {
				t.Errorf("got %+v\nwant %+v", *c, want)
			}
		}},
		{name: "file alone", args: []string{"--config", file}, check: func(t *testing.T, c *Config) {
			if c.NodeID != 2 || c.DataDir != "/var/lib/flotilla" || c.Raft.TickMs != 20 || c.Log.Level != "debug" || len(c.Peers) != 3 {
				t.Errorf("file not applied: %+v", *c)
			}
			if c.Kafka.Advertise != "127.0.0.1:9093" {
				t.Errorf("kafka.advertise = %q, want kafka.listen", c.Kafka.Advertise)
			}
		}},
		{name: "flags beat the file, unset flags do not", args: []string{"--config", file, "--node-id", "3", "--raft-addr", "127.0.0.1:9194", "--log-level", "warn"},
			check: func(t *testing.T, c *Config) {
				if c.NodeID != 3 || c.Raft.Listen != "127.0.0.1:9194" || c.Log.Level != "warn" {
					t.Errorf("flags not applied: node_id %d, raft.listen %q, log.level %q", c.NodeID, c.Raft.Listen, c.Log.Level)
				}
				if c.DataDir != "/var/lib/flotilla" || c.Kafka.Listen != "127.0.0.1:9093" ||
					c.Debug.Listen != "127.0.0.1:9292" || c.Log.Format != "json" || len(c.Peers) != 3 {
					t.Errorf("an unset flag overrode the file: %+v", *c)
				}
			}},
		{name: "flags before --config", args: []string{"-data-dir", "/tmp/x", "-config", file}, check: func(t *testing.T, c *Config) {
			if c.DataDir != "/tmp/x" || c.NodeID != 2 {
				t.Errorf("got data_dir %q node_id %d", c.DataDir, c.NodeID)
			}
		}},
		{name: "every override", args: []string{"--config", file,
			"--node-id=5", "--data-dir=/d", "--bootstrap=false", "--kafka-addr=127.0.0.1:1", "--raft-addr=127.0.0.1:2",
			"--debug-addr=127.0.0.1:3", "--peers=5@127.0.0.1:2,6@127.0.0.1:4", "--log-level=error", "--log-format=console"},
			check: func(t *testing.T, c *Config) {
				kafka := Default().Kafka
				kafka.Listen, kafka.Advertise = "127.0.0.1:1", "127.0.0.1:1"
				want := Config{
					NodeID: 5, DataDir: "/d", Bootstrap: false,
					Kafka:   kafka,
					Raft:    Default().Raft,
					Debug:   DebugConfig{Listen: "127.0.0.1:3"},
					Peers:   []Peer{{5, "127.0.0.1:2"}, {6, "127.0.0.1:4"}},
					Storage: Default().Storage,
					Log:     LogConfig{Level: "error", Format: "console"},
				}
				want.Raft.Listen, want.Raft.TickMs = "127.0.0.1:2", 20
				if !reflect.DeepEqual(*c, want) {
					t.Errorf("got  %+v\nwant %+v", *c, want)
				}
			}},
		{name: "debug endpoint off", args: []string{"--debug-addr="}, check: func(t *testing.T, c *Config) {
			if c.Debug.Listen != "" {
				t.Errorf("debug.listen = %q", c.Debug.Listen)
			}
		}},
		{name: "empty peers make a one-node cluster", args: []string{"--config", file, "--peers", ""}, check: func(t *testing.T, c *Config) {
			if want := []Peer{{2, "127.0.0.1:9193"}}; !reflect.DeepEqual(c.Peers, want) {
				t.Errorf("peers = %v, want %v", c.Peers, want)
			}
		}},
		{name: "kafka-addr moves a mirroring advertise", args: []string{"--config", mirrored, "--kafka-addr", "127.0.0.1:9999"},
			check: func(t *testing.T, c *Config) {
				if c.Kafka.Listen != "127.0.0.1:9999" || c.Kafka.Advertise != "127.0.0.1:9999" {
					t.Errorf("kafka = %+v", c.Kafka)
				}
			}},
		{name: "kafka-addr keeps an explicit advertise", args: []string{"--config", advertised, "--kafka-addr", "0.0.0.0:9999"},
			check: func(t *testing.T, c *Config) {
				if c.Kafka.Listen != "0.0.0.0:9999" || c.Kafka.Advertise != "broker.example:9092" {
					t.Errorf("kafka = %+v", c.Kafka)
				}
			}},
		{name: "kafka-advertise after kafka-addr wins", args: []string{"--kafka-advertise", "b:1", "--kafka-addr", "0.0.0.0:1"},
			check: func(t *testing.T, c *Config) {
				if c.Kafka.Advertise != "b:1" {
					t.Errorf("kafka = %+v", c.Kafka)
				}
			}},

		{name: "flag makes the file invalid", args: []string{"--config", file, "--node-id", "9"},
			want: []string{"config " + file + ": node_id: 9 is not in peers"}},
		{name: "wildcard kafka-addr needs advertise", args: []string{"--kafka-addr", "0.0.0.0:9092"},
			want: []string{"config: kafka.advertise: must be set"}},
		{name: "invalid file reports every field", args: []string{"--config", invalid},
			want: []string{"config " + invalid + ": node_id: 4 is not in peers", "config " + invalid + ": peers[1].addr: duplicate address"}},
		{name: "invalid flag value", args: []string{"--log-level", "loud"}, want: []string{`config: log.level: unknown level "loud"`}},
		{name: "file does not load", args: []string{"--config", writeFile(t, "x.yaml", "nodeid: 1\n")}, want: []string{"nodeid: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromArgs(tt.args)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, c)
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			var ue *UsageError
			if errors.As(err, &ue) {
				t.Errorf("configuration error reported as a usage error: %v", err)
			}
		})
	}
}

func TestFromArgsInvalidFileListsEveryProblem(t *testing.T) {
	path := writeFile(t, "bad.yaml", "node_id: 4\nlog:\n  level: loud\npeers: [{id: 1, addr: 'h:1'}, {id: 1, addr: 'h:2'}]\n")
	_, err := FromArgs([]string{"--config", path})
	prefix := "config " + path + ": "
	wantErrors(t, err, prefix+"log.level", prefix+"peers[1].id: duplicate id 1", prefix+"node_id: 4 is not in peers")
}

func TestFromArgsUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
		help bool
	}{
		{"unknown flag", []string{"--nope"}, "flag provided but not defined: -nope", false},
		{"bad node id", []string{"--node-id", "x"}, "-node-id", false},
		{"bad peers", []string{"--peers", "1@foo"}, `peers[0].addr: "foo": missing port`, false},
		{"several bad peers on one line", []string{"--peers", "1@foo,0@h:1"}, `"foo": missing port in address; peers[1].id: must be > 0`, false},
		{"stray argument", []string{"--node-id", "1", "extra"}, `unexpected argument "extra"`, false},
		{"help", []string{"-h"}, "help requested", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromArgs(tt.args)
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("FromArgs(%q) = %v, want a *UsageError", tt.args, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if got := errors.Is(err, flag.ErrHelp); got != tt.help {
				t.Errorf("errors.Is(err, flag.ErrHelp) = %v, want %v", got, tt.help)
			}
		})
	}
}

func TestPrintUsage(t *testing.T) {
	var b bytes.Buffer
	PrintUsage(&b)
	for _, name := range []string{"-config FILE", "-node-id", "-data-dir", "-bootstrap", "-kafka-addr", "-kafka-advertise",
		"-raft-addr", "-debug-addr", "-peers", "-log-level", "-log-format"} {
		if !strings.Contains(b.String(), name) {
			t.Errorf("usage does not mention %s:\n%s", name, b.String())
		}
	}
}

func TestParsePeers(t *testing.T) {
	tests := []struct {
		in   string
		want []Peer
		errs []string
	}{
		{in: "1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194",
			want: []Peer{{1, "127.0.0.1:9192"}, {2, "127.0.0.1:9193"}, {3, "127.0.0.1:9194"}}},
		{in: " 1@h:1 , 2@[::1]:2 ", want: []Peer{{1, "h:1"}, {2, "[::1]:2"}}},
		{in: "", want: nil},
		{in: "x@h:1", errs: []string{`peers[0].id: "x" is not a node id`}},
		{in: "1@h:1,-2@h:2", errs: []string{`peers[1].id: "-2" is not a node id`}},
		{in: "0@h:1", errs: []string{"peers[0].id: must be > 0"}},
		{in: "1@foo", errs: []string{`peers[0].addr: "foo": missing port`}},
		{in: "1@h:0", errs: []string{`peers[0].addr: "h:0": port 0 out of range 1-65535`}},
		{in: "1@", errs: []string{"peers[0].addr: must not be empty"}},
		{in: "1@h:1,2@h:2,2@h:3", errs: []string{"peers[2].id: duplicate id 2"}},
		{in: "1@h:1,2@h:1", errs: []string{`peers[1].addr: duplicate address "h:1"`}},
		{in: "1h:1", errs: []string{`peers[0]: "1h:1": want ID@HOST:PORT`}},
		{in: "1@h:1,", errs: []string{`peers[1]: "": want ID@HOST:PORT`}},
		{in: "a@h:1,b", errs: []string{"peers[0].id", "peers[1]: "}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePeers(tt.in)
			wantErrors(t, err, tt.errs...)
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParsePeers(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// TestExampleFiles loads the example configurations users run and checks
// that they are valid and describe the cluster their comments promise.
func TestExampleFiles(t *testing.T) {
	cluster := []Peer{{1, "127.0.0.1:9192"}, {2, "127.0.0.1:9193"}, {3, "127.0.0.1:9194"}}
	tests := []struct {
		path string
		want Config
	}{
		{"single.yaml", Config{NodeID: 1, DataDir: "./data/single",
			Kafka: KafkaConfig{Listen: "127.0.0.1:9092"}, Raft: RaftConfig{Listen: "127.0.0.1:9192"},
			Debug: DebugConfig{Listen: "127.0.0.1:9292"}, Peers: []Peer{{1, "127.0.0.1:9192"}}}},
		{"cluster/node1.yaml", Config{NodeID: 1, DataDir: "./data/cluster/node1",
			Kafka: KafkaConfig{Listen: "127.0.0.1:9092"}, Raft: RaftConfig{Listen: "127.0.0.1:9192"},
			Debug: DebugConfig{Listen: "127.0.0.1:9292"}, Peers: cluster}},
		{"cluster/node2.yaml", Config{NodeID: 2, DataDir: "./data/cluster/node2",
			Kafka: KafkaConfig{Listen: "127.0.0.1:9093"}, Raft: RaftConfig{Listen: "127.0.0.1:9193"},
			Debug: DebugConfig{Listen: "127.0.0.1:9293"}, Peers: cluster}},
		{"cluster/node3.yaml", Config{NodeID: 3, DataDir: "./data/cluster/node3",
			Kafka: KafkaConfig{Listen: "127.0.0.1:9094"}, Raft: RaftConfig{Listen: "127.0.0.1:9194"},
			Debug: DebugConfig{Listen: "127.0.0.1:9294"}, Peers: cluster}},
		{"cluster/node4.yaml", Config{NodeID: 4, DataDir: "./data/cluster/node4", Bootstrap: false,
			Kafka: KafkaConfig{Listen: "127.0.0.1:9095"}, Raft: RaftConfig{Listen: "127.0.0.1:9195"},
			Debug: DebugConfig{Listen: "127.0.0.1:9295"}, Peers: append(slices.Clone(cluster), Peer{4, "127.0.0.1:9195"})}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			c, err := Load(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			w := tt.want
			if c.NodeID != w.NodeID || c.DataDir != w.DataDir || c.Bootstrap != (w.NodeID <= 3) ||
				c.Kafka.Listen != w.Kafka.Listen || c.Kafka.Advertise != w.Kafka.Listen ||
				c.Raft.Listen != w.Raft.Listen || c.Debug.Listen != w.Debug.Listen ||
				!reflect.DeepEqual(c.Peers, w.Peers) {
				t.Errorf("got %+v\nwant %+v", *c, w)
			}
			if addr, _ := c.PeerAddr(c.NodeID); addr != c.Raft.Listen {
				t.Errorf("own peers entry %q differs from raft.listen %q", addr, c.Raft.Listen)
			}
			// The examples spell out tunables for the reader; they must
			// not drift from the defaults they claim to show.
			d := Default()
			if c.Raft.TickMs != d.Raft.TickMs || c.Raft.ElectionTicks != d.Raft.ElectionTicks ||
				c.Raft.SnapshotEntries != d.Raft.SnapshotEntries || c.Raft.MaxFrameBytes != d.Raft.MaxFrameBytes ||
				c.Raft.PeerQueueBytes != d.Raft.PeerQueueBytes || c.Raft.MaxSizePerMsg != d.Raft.MaxSizePerMsg ||
				c.Raft.MaxSnapshotBytes != d.Raft.MaxSnapshotBytes ||
				c.Raft.MaxUncommittedBytes != d.Raft.MaxUncommittedBytes || c.Raft.MaxInflightMsgs != d.Raft.MaxInflightMsgs ||
				c.Storage.WALSegmentBytes != d.Storage.WALSegmentBytes || c.Storage.WALBudgetBytes != d.Storage.WALBudgetBytes ||
				c.Kafka.ProducerIDExpirationMs != d.Kafka.ProducerIDExpirationMs || c.Kafka.AutoCreateTopicsEnable != d.Kafka.AutoCreateTopicsEnable ||
				!c.Storage.Fsync || c.Log != d.Log {
				t.Errorf("example differs from the defaults: %+v", *c)
			}
		})
	}
}
