package configs

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

// Config is the complete configuration of one broker node.
type Config struct {
	// NodeID identifies this node among the peers. It must be > 0 because
	// raft reserves 0 for "no node", and fit in an int32 because clients
	// see it as a Kafka broker id.
	NodeID uint64 `yaml:"node_id"`

	// DataDir holds everything the node persists: WAL, snapshots and
	// partition data.
	DataDir string `yaml:"data_dir"`

	// Bootstrap is true only when founding a new cluster, in which case
	// every initial member starts with the same Peers. When false the node
	// joins an existing cluster (or restarts as a member of one) and takes
	// the membership from it.
	Bootstrap bool `yaml:"bootstrap"`

	// Kafka configures the client-facing Kafka protocol listener.
	Kafka KafkaConfig `yaml:"kafka"`

	// Raft configures the inter-node raft transport and raft tuning.
	Raft RaftConfig `yaml:"raft"`

	// Debug configures the HTTP debug endpoint.
	Debug DebugConfig `yaml:"debug"`

	// Peers lists the raft address of every voter, including this node.
	// When it is empty the node is a one-node cluster, and Validate fills it
	// with this node alone.
	Peers []Peer `yaml:"peers"`

	// PeersDefaulted is set by Validate when it filled Peers with this node
	// alone because the file gave none: a reload then cannot tell a lost
	// peers block from a wish to shrink the cluster to one broker.
	PeersDefaulted bool `yaml:"-"`

	// Storage configures the write-ahead log.
	Storage StorageConfig `yaml:"storage"`

	// Log configures the process logger.
	Log LogConfig `yaml:"log"`
}

// KafkaConfig configures the Kafka protocol listener.
type KafkaConfig struct {
	// Listen is the host:port the broker accepts Kafka clients on. An empty
	// host, 0.0.0.0 or :: listens on all interfaces; port 0 picks a free
	// port, which is meant for tests.
	Listen string `yaml:"listen"`

	// Advertise is the host:port handed to clients in metadata responses,
	// i.e. where other machines can reach Listen. It defaults to Listen, but
	// must be given when Listen does not name a reachable host. After
	// Validate it is empty only when Listen has port 0: the broker must then
	// advertise the address it actually bound.
	Advertise string `yaml:"advertise"`

	// AutoCreateTopicsEnable is Kafka's auto.create.topics.enable: a
	// Metadata request naming a topic that does not exist creates it with
	// the broker's defaults, when the request allows it. Off, such a topic
	// is UNKNOWN_TOPIC_OR_PARTITION; the offsets topic is still created by
	// the first FindCoordinator, as in Kafka.
	AutoCreateTopicsEnable bool `yaml:"auto_create_topics_enable"`

	// ReplicaLagTimeMaxMs is Kafka's replica.lag.time.max.ms: a follower
	// that has not caught up with its leader for longer leaves the ISR. It
	// defaults to 10 s, not Kafka's 30 s: the partition leader knows
	// nothing of broker liveness, so this is also how a dead broker's
	// replica leaves the ISR, which Kafka's controller does on fencing
	// (broker.session.timeout.ms, 9 s).
	ReplicaLagTimeMaxMs int `yaml:"replica_lag_time_max_ms"`

	// BrokerSessionTimeoutMs is Kafka's broker.session.timeout.ms: a
	// broker that this broker has not heard from (no raft frame) for
	// longer is dead to it, as Kafka's controller fences a broker without
	// heartbeats. Metadata leaves it out of the broker list, lists its
	// replicas as offline and out of the ISRs and answers the partitions
	// it led LEADER_NOT_AVAILABLE; new replicas are not placed on it. A
	// peer not yet heard from counts as alive for this long after start.
	BrokerSessionTimeoutMs int `yaml:"broker_session_timeout_ms"`

	// ProducerIDExpirationMs is Kafka's producer.id.expiration.ms: a
	// partition forgets an idempotent producer this long after the
	// timestamp of its last batch, so that the producer state, which every
	// checkpoint carries, does not grow with every producer id ever seen.
	// A producer that writes again after that is accepted at any sequence
	// number, as a new one.
	ProducerIDExpirationMs int64 `yaml:"producer_id_expiration_ms"`

	// OffsetsTopicPartitions is the partition count of the offsets topic
	// (Kafka's offsets.topic.num.partitions), fixed when the topic is
	// created on the first FindCoordinator: a group's coordinator is the
	// leader of the partition its id hashes to.
	OffsetsTopicPartitions int `yaml:"offsets_topic_partitions"`

	// GroupMinSessionTimeoutMs and GroupMaxSessionTimeoutMs bound the
	// session timeout a group member may ask for
	// (group.min/max.session.timeout.ms).
	GroupMinSessionTimeoutMs int `yaml:"group_min_session_timeout_ms"`
	GroupMaxSessionTimeoutMs int `yaml:"group_max_session_timeout_ms"`

	// GroupInitialRebalanceDelayMs delays the first rebalance of an empty
	// group so that members starting together join one generation
	// (group.initial.rebalance.delay.ms); 0 turns the delay off.
	GroupInitialRebalanceDelayMs int `yaml:"group_initial_rebalance_delay_ms"`

	// OffsetsRetentionMinutes is how long the committed offsets of a group
	// without members are kept (offsets.retention.minutes), and those of a
	// stable consumer group's topics it no longer subscribes to after their
	// commit; 0 keeps them forever.
	OffsetsRetentionMinutes int `yaml:"offsets_retention_minutes"`

	// LogRetentionMs, LogRetentionBytes and LogSegmentBytes are the
	// defaults of the topic configs retention.ms, retention.bytes and
	// segment.bytes for topics that do not set them (Kafka's
	// log.retention.ms, log.retention.bytes and log.segment.bytes). A
	// reload applies them to running partitions: retention is then
	// enforced by each partition's leader, with its broker's defaults.
	LogRetentionMs    int64 `yaml:"log_retention_ms"`
	LogRetentionBytes int64 `yaml:"log_retention_bytes"`
	LogSegmentBytes   int64 `yaml:"log_segment_bytes"`

	// LogMessageTimestampBeforeMaxMs and LogMessageTimestampAfterMaxMs are
	// the defaults of the topic configs message.timestamp.before.max.ms
	// and message.timestamp.after.max.ms (Kafka's
	// log.message.timestamp.before.max.ms and after.max.ms, KIP-937): a
	// CreateTime topic refuses a record timestamped further before or
	// after its leader's clock with INVALID_TIMESTAMP. A reload applies
	// them to running partitions.
	LogMessageTimestampBeforeMaxMs int64 `yaml:"log_message_timestamp_before_max_ms"`
	LogMessageTimestampAfterMaxMs  int64 `yaml:"log_message_timestamp_after_max_ms"`
}

// TopicDefaults returns the topic config defaults k sets, by topic config
// name (retention.ms, ...).
func (k KafkaConfig) TopicDefaults() map[string]string {
	return map[string]string{
		"retention.ms":    strconv.FormatInt(k.LogRetentionMs, 10),
		"retention.bytes": strconv.FormatInt(k.LogRetentionBytes, 10),
		"segment.bytes":   strconv.FormatInt(k.LogSegmentBytes, 10),

		"message.timestamp.before.max.ms": strconv.FormatInt(k.LogMessageTimestampBeforeMaxMs, 10),
		"message.timestamp.after.max.ms":  strconv.FormatInt(k.LogMessageTimestampAfterMaxMs, 10),
	}
}

// RaftConfig configures the raft transport and the raft groups on this
// node: the controller group and one group per partition.
type RaftConfig struct {
	// Listen is the host:port the raft transport accepts peers on. Port 0
	// picks a free port, which is meant for tests.
	Listen string `yaml:"listen"`

	// TickMs is the length of one raft logical clock tick in milliseconds.
	TickMs int `yaml:"tick_ms"`

	// ElectionTicks is the number of ticks a follower waits without hearing
	// from a leader before campaigning. It must exceed HeartbeatTicks, or
	// followers would campaign against a healthy leader.
	ElectionTicks int `yaml:"election_ticks"`

	// HeartbeatTicks is the number of ticks between leader heartbeats.
	HeartbeatTicks int `yaml:"heartbeat_ticks"`

	// MaxFrameBytes bounds one frame on the raft transport; a peer sending a
	// larger frame is disconnected.
	MaxFrameBytes int `yaml:"max_frame_bytes"`

	// MaxSizePerMsg bounds the entries carried by one append message, as in
	// etcd raft (0 means one entry per message).
	MaxSizePerMsg uint64 `yaml:"max_size_per_msg"`

	// MaxInflightMsgs bounds the append messages in flight to one follower.
	MaxInflightMsgs int `yaml:"max_inflight_msgs"`

	// MaxUncommittedBytes bounds the bytes of uncommitted entries a leader
	// accepts before refusing proposals, as in etcd raft (0 means no limit).
	MaxUncommittedBytes uint64 `yaml:"max_uncommitted_bytes"`

	// SnapshotEntries is how many applied entries the controller lets
	// accumulate before it snapshots its state and compacts its log.
	SnapshotEntries uint64 `yaml:"snapshot_entries"`

	// PeerQueueBytes bounds the queue of one peer sender, so that a slow or
	// unreachable peer cannot make the node buffer without limit.
	PeerQueueBytes int `yaml:"peer_queue_bytes"`

	// MaxSnapshotBytes bounds the data of one raft snapshot on the
	// transport. A snapshot larger than a frame (a consumer-offsets
	// partition or the controller with much state) is streamed in chunks
	// up to it; a larger one is not sent, and a peer announcing one is
	// disconnected. It also bounds what a broker holds of snapshots being
	// received from all its peers at once. At least MaxFrameBytes.
	MaxSnapshotBytes int `yaml:"max_snapshot_bytes"`
}

// DebugConfig configures the HTTP debug endpoint (pprof, metrics, state).
type DebugConfig struct {
	// Listen is the host:port of the debug endpoint; empty turns it off.
	Listen string `yaml:"listen"`
}

// Peer is one voter of the cluster.
type Peer struct {
	// ID is the voter's node_id.
	ID uint64 `yaml:"id"`
	// Addr is the voter's raft address, as other nodes dial it.
	Addr string `yaml:"addr"`
}

// String formats p the way --peers takes it: ID@Addr.
func (p Peer) String() string { return fmt.Sprintf("%d@%s", p.ID, p.Addr) }

// StorageConfig configures the write-ahead log shared by the raft groups.
type StorageConfig struct {
	// Fsync makes every WAL write durable before it is acknowledged.
	// Turning it off trades crash safety for speed and is only meant for
	// tests and benchmarks.
	Fsync bool `yaml:"fsync"`

	// WALSegmentBytes is the size at which the WAL starts a new file.
	WALSegmentBytes int64 `yaml:"wal_segment_bytes"`

	// WALBudgetBytes is the WAL size past which the storage asks groups to
	// checkpoint, so that old files can be deleted.
	WALBudgetBytes int64 `yaml:"wal_budget_bytes"`

	// MinFreeBytes is the free space the broker keeps on the filesystem of
	// its data directory: below it, produce requests are refused with
	// KAFKA_STORAGE_ERROR until space comes back, so that no write fails
	// half way for want of space. 0 turns the guard off.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
}

// LogConfig configures the process logger.
type LogConfig struct {
	// Level is the minimum level logged: debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is console (human-readable) or json.
	Format string `yaml:"format"`
}

// Default returns a configuration with every field at its default: a
// one-node cluster on 127.0.0.1 storing its data in ./data.
func Default() Config {
	return Config{
		NodeID:    1,
		DataDir:   "./data",
		Bootstrap: true,
		Kafka: KafkaConfig{
			Listen:                 "127.0.0.1:9092",
			AutoCreateTopicsEnable: true,
			ReplicaLagTimeMaxMs:    10000,
			BrokerSessionTimeoutMs: 9000,
			ProducerIDExpirationMs: 24 * 60 * 60 * 1000,
			// Kafka's defaults, but 16 offsets partitions rather than 50:
			// every partition is a raft group with its own heartbeats.
			OffsetsTopicPartitions:       16,
			GroupMinSessionTimeoutMs:     6000,
			GroupMaxSessionTimeoutMs:     1800000,
			GroupInitialRebalanceDelayMs: 3000,
			OffsetsRetentionMinutes:      7 * 24 * 60,
			LogRetentionMs:               7 * 24 * 60 * 60 * 1000,
			LogRetentionBytes:            -1,
			LogSegmentBytes:              1 * gib,
			// Kafka 4's: any age, at most an hour ahead (KIP-1030).
			LogMessageTimestampBeforeMaxMs: math.MaxInt64,
			LogMessageTimestampAfterMaxMs:  60 * 60 * 1000,
			// Advertise is left empty so that it follows Listen, whichever
			// layer sets Listen.
		},
		Raft: RaftConfig{
			Listen:              "127.0.0.1:9192",
			TickMs:              50,
			ElectionTicks:       10,
			HeartbeatTicks:      2,
			MaxFrameBytes:       64 * mib,
			MaxSizePerMsg:       1 * mib,
			MaxInflightMsgs:     256,
			MaxUncommittedBytes: 64 * mib,
			SnapshotEntries:     10000,
			PeerQueueBytes:      64 * mib,
			MaxSnapshotBytes:    1 * gib,
		},
		Debug: DebugConfig{Listen: "127.0.0.1:9292"},
		Storage: StorageConfig{
			Fsync:           true,
			WALSegmentBytes: 64 * mib,
			WALBudgetBytes:  1 * gib,
			MinFreeBytes:    256 * mib,
		},
		Log: LogConfig{Level: "info", Format: "console"},
	}
}

// ReplicaLagTicks is kafka.replica_lag_time_max_ms in raft ticks.
func (c *Config) ReplicaLagTicks() uint64 {
	return uint64(max(1, (c.Kafka.ReplicaLagTimeMaxMs+c.Raft.TickMs-1)/c.Raft.TickMs))
}

// BrokerSessionTimeout returns kafka.broker_session_timeout_ms.
func (c *Config) BrokerSessionTimeout() time.Duration {
	return time.Duration(c.Kafka.BrokerSessionTimeoutMs) * time.Millisecond
}

// maxProducerExpiryCheckMs bounds how long a partition leader waits between
// two looks for expired producers: Kafka's
// producer.id.expiration.check.interval.ms. Each look that finds some adds
// an entry to the partition's side log, kept until retention passes it,
// so looks are not made more often than that.
const maxProducerExpiryCheckMs = 10 * 60 * 1000

// ProducerExpiryTicks is how often, in raft ticks, a partition leader looks
// for producers idle longer than kafka.producer_id_expiration_ms: every
// expiration, but at least every 10 minutes, so that a producer is
// forgotten at most twice its expiration after its last batch.
func (c *Config) ProducerExpiryTicks() uint64 {
	ms := min(c.Kafka.ProducerIDExpirationMs, maxProducerExpiryCheckMs)
	tick := int64(max(c.Raft.TickMs, 1))
	return uint64(max(1, (ms+tick-1)/tick))
}

// TickInterval returns the duration of one raft tick.
func (c *Config) TickInterval() time.Duration {
	return time.Duration(c.Raft.TickMs) * time.Millisecond
}

// PeerAddr returns the raft address of voter id, and whether id is a voter.
func (c *Config) PeerAddr(id uint64) (string, bool) {
	for _, p := range c.Peers {
		if p.ID == id {
			return p.Addr, true
		}
	}
	return "", false
}

// OtherPeers returns the voters other than this node, i.e. the peers the
// raft transport has to dial. The result is a new slice.
func (c *Config) OtherPeers() []Peer {
	others := make([]Peer, 0, len(c.Peers))
	for _, p := range c.Peers {
		if p.ID != c.NodeID {
			others = append(others, p)
		}
	}
	return others
}
