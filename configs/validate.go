package configs

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
)

// minSegmentBytes is the smallest segment a partition log accepts: one
// record batch header. The largest is math.MaxInt32, because positions in
// the index files are 32 bits.
const minSegmentBytes = 61

// maxNodeID is the largest node id: clients see node ids as Kafka broker
// ids, which are int32 in Metadata and in every replica list.
const maxNodeID = math.MaxInt32

// minSessionTicks bounds kafka.broker_session_timeout_ms from below: twice
// the 10 ticks after which an idle broker sends its peers a keepalive
// (netactor), so that one late keepalive does not make a peer look dead.
const minSessionTicks = 20

// minFrameBytes is the smallest raft.max_frame_bytes: the raft transport
// (netactor.MinFrameBytes, which this package does not import) refuses to
// start with less, as it could not frame even an empty raft message. A
// test in actors/broker keeps the two equal.
const minFrameBytes = 49

// msgAppHeaderBytes bounds the fields of a raft append message besides its
// entries: its type, and to, from, term, log term, index and commit, each
// a tag and a varint of up to 10 bytes.
const msgAppHeaderBytes = 2 + 6*(1+10)

// maxSizePerMsg is the largest raft.max_size_per_msg whose append messages
// fit a frame of frameBytes. raft fills an append with entries while the
// sum of their encoded sizes stays within max_size_per_msg (limitSize in
// etcd raft's util.go), and the message adds a tag and a length to each
// entry: 2 bytes to the smallest, an entry without data whose term and
// index take 2 bytes each, which is half its size; proportionally less to
// larger ones. So the entries of an append take up to 3/2 of
// max_size_per_msg on the wire, and the message's other fields and the
// frame's framing (minFrameBytes) come on top. (A single entry larger
// than max_size_per_msg goes alone; the brokers refuse entries too large
// for a frame when they are proposed.)
func maxSizePerMsg(frameBytes int) uint64 {
	room := frameBytes - minFrameBytes - msgAppHeaderBytes
	if room <= 0 {
		return 0
	}
	return uint64(room) * 2 / 3
}

// problems collects field errors so that Validate can report all of them
// at once rather than making the user fix one per run.
type problems []error

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

// addErr records err, if any, against field.
func (p *problems) addErr(field string, err error) {
	if err != nil {
		*p = append(*p, fmt.Errorf("%s: %w", field, err))
	}
}

// Validate checks c and reports every invalid field, each error naming the
// field by its YAML path, joined with errors.Join.
//
// When c is valid, Validate also fills the fields whose default depends on
// other fields: an empty kafka.advertise becomes kafka.listen (unless that
// has port 0), and empty peers become this node alone at raft.listen. It
// changes nothing when it returns an error.
func (c *Config) Validate() error {
	var p problems

	if c.NodeID == 0 {
		p.add("node_id", "must be > 0")
	} else if c.NodeID > maxNodeID {
		p.add("node_id", "must be at most %d (Kafka's broker ids are int32), got %d", maxNodeID, c.NodeID)
	}
	if c.DataDir == "" {
		p.add("data_dir", "must not be empty")
	}

	p.addErr("kafka.listen", checkListenAddr(c.Kafka.Listen))
	if c.Kafka.ReplicaLagTimeMaxMs < max(c.Raft.TickMs, 1) {
		p.add("kafka.replica_lag_time_max_ms", "must be at least one raft tick (%d ms), got %d", c.Raft.TickMs, c.Kafka.ReplicaLagTimeMaxMs)
	}
	if least := minSessionTicks * c.Raft.TickMs; c.Kafka.BrokerSessionTimeoutMs < least {
		p.add("kafka.broker_session_timeout_ms", "must be at least %d raft ticks (%d ms), got %d", minSessionTicks, least, c.Kafka.BrokerSessionTimeoutMs)
	}
	if c.Kafka.ProducerIDExpirationMs <= 0 {
		p.add("kafka.producer_id_expiration_ms", "must be > 0, got %d", c.Kafka.ProducerIDExpirationMs)
	}
	if n := c.Kafka.OffsetsTopicPartitions; n < 1 || n > 1000 {
		p.add("kafka.offsets_topic_partitions", "must be between 1 and 1000, got %d", n)
	}
	if c.Kafka.GroupMinSessionTimeoutMs < 1 {
		p.add("kafka.group_min_session_timeout_ms", "must be > 0, got %d", c.Kafka.GroupMinSessionTimeoutMs)
	}
	if c.Kafka.GroupMaxSessionTimeoutMs < c.Kafka.GroupMinSessionTimeoutMs {
		p.add("kafka.group_max_session_timeout_ms", "must be at least kafka.group_min_session_timeout_ms (%d), got %d",
			c.Kafka.GroupMinSessionTimeoutMs, c.Kafka.GroupMaxSessionTimeoutMs)
	}
	if c.Kafka.OffsetsRetentionMinutes < 0 {
		p.add("kafka.offsets_retention_minutes", "must be >= 0, got %d", c.Kafka.OffsetsRetentionMinutes)
	}
	if c.Kafka.GroupInitialRebalanceDelayMs < 0 {
		p.add("kafka.group_initial_rebalance_delay_ms", "must be >= 0, got %d", c.Kafka.GroupInitialRebalanceDelayMs)
	}
	if c.Kafka.LogRetentionMs < -1 {
		p.add("kafka.log_retention_ms", "must be >= -1 (-1 keeps segments forever), got %d", c.Kafka.LogRetentionMs)
	}
	if c.Kafka.LogRetentionBytes < -1 {
		p.add("kafka.log_retention_bytes", "must be >= -1 (-1 means no size limit), got %d", c.Kafka.LogRetentionBytes)
	}
	if n := c.Kafka.LogSegmentBytes; n < minSegmentBytes || n > math.MaxInt32 {
		p.add("kafka.log_segment_bytes", "must be between %d and %d, got %d", minSegmentBytes, math.MaxInt32, n)
	}
	if c.Kafka.LogMessageTimestampBeforeMaxMs < 0 {
		p.add("kafka.log_message_timestamp_before_max_ms", "must be >= 0, got %d", c.Kafka.LogMessageTimestampBeforeMaxMs)
	}
	if c.Kafka.LogMessageTimestampAfterMaxMs < 0 {
		p.add("kafka.log_message_timestamp_after_max_ms", "must be >= 0, got %d", c.Kafka.LogMessageTimestampAfterMaxMs)
	}
	if c.Kafka.Advertise != "" {
		p.addErr("kafka.advertise", checkDialAddr(c.Kafka.Advertise))
	} else if host, _, err := net.SplitHostPort(c.Kafka.Listen); err == nil && isWildcard(host) {
		// Clients cannot connect to a wildcard address, so there is
		// nothing sensible to advertise by default.
		p.add("kafka.advertise", "must be set when kafka.listen %q listens on all interfaces", c.Kafka.Listen)
	}

	p.addErr("raft.listen", checkListenAddr(c.Raft.Listen))
	if c.Debug.Listen != "" {
		p.addErr("debug.listen", checkListenAddr(c.Debug.Listen))
	}

	c.Raft.validate(&p)
	c.Storage.validate(&p)
	c.Log.validate(&p)

	if len(c.Peers) > 0 {
		peerProblems := checkPeers(c.Peers)
		p = append(p, peerProblems...)
		own, ok := c.PeerAddr(c.NodeID)
		if !ok && c.NodeID != 0 {
			p.add("node_id", "%d is not in peers", c.NodeID)
		}
		if ok && len(peerProblems) == 0 && checkListenAddr(c.Raft.Listen) == nil {
			p.addErr("raft.listen", c.checkRaftListen(own))
		}
	}

	if len(p) > 0 {
		return errors.Join(p...)
	}

	if c.Kafka.Advertise == "" {
		if _, port, _ := net.SplitHostPort(c.Kafka.Listen); port != "0" {
			c.Kafka.Advertise = c.Kafka.Listen
		}
	}
	if len(c.Peers) == 0 {
		// The entry is derived from raft.listen, which was checked above;
		// nobody dials it in a one-node cluster, so port 0 is harmless.
		c.Peers = []Peer{{ID: c.NodeID, Addr: c.Raft.Listen}}
		c.PeersDefaulted = true
	}
	return nil
}

func (r *RaftConfig) validate(p *problems) {
	positive := func(field string, v int) {
		if v <= 0 {
			p.add(field, "must be > 0, got %d", v)
		}
	}
	positive("raft.tick_ms", r.TickMs)
	positive("raft.election_ticks", r.ElectionTicks)
	positive("raft.heartbeat_ticks", r.HeartbeatTicks)
	if r.ElectionTicks > 0 && r.HeartbeatTicks > 0 && r.ElectionTicks <= r.HeartbeatTicks {
		p.add("raft.election_ticks", "must be greater than heartbeat_ticks (%d <= %d)", r.ElectionTicks, r.HeartbeatTicks)
	}
	if r.MaxFrameBytes < minFrameBytes {
		p.add("raft.max_frame_bytes", "must be at least %d, the framing of one raft message, got %d", minFrameBytes, r.MaxFrameBytes)
	}
	if most := maxSizePerMsg(r.MaxFrameBytes); r.MaxFrameBytes >= minFrameBytes && r.MaxSizePerMsg > most {
		// An append message larger than a frame is dropped by its sender
		// each time raft sends it, and its follower never catches up.
		p.add("raft.max_size_per_msg", "must be at most %d, about 2/3 of max_frame_bytes (%d): raft fills an append message with up to max_size_per_msg of entries and their framing adds up to half as much again; got %d",
			most, r.MaxFrameBytes, r.MaxSizePerMsg)
	}
	positive("raft.max_inflight_msgs", r.MaxInflightMsgs)
	if r.SnapshotEntries == 0 {
		p.add("raft.snapshot_entries", "must be > 0")
	}
	positive("raft.peer_queue_bytes", r.PeerQueueBytes)
	if r.PeerQueueBytes > 0 && r.PeerQueueBytes < r.MaxFrameBytes {
		// A message the peer would accept in a frame must fit the queue
		// that holds it for that peer, or the transport refuses to start.
		p.add("raft.peer_queue_bytes", "must be at least max_frame_bytes (%d < %d)", r.PeerQueueBytes, r.MaxFrameBytes)
	}
	if r.MaxSnapshotBytes < r.MaxFrameBytes {
		// A snapshot that fits a frame goes in one; the limit is for the
		// ones streamed in chunks.
		p.add("raft.max_snapshot_bytes", "must be at least max_frame_bytes (%d < %d)", r.MaxSnapshotBytes, r.MaxFrameBytes)
	}
}

func (s *StorageConfig) validate(p *problems) {
	if s.WALSegmentBytes <= 0 {
		p.add("storage.wal_segment_bytes", "must be > 0, got %d", s.WALSegmentBytes)
	}
	if s.WALBudgetBytes <= 0 {
		p.add("storage.wal_budget_bytes", "must be > 0, got %d", s.WALBudgetBytes)
	} else if s.WALSegmentBytes > 0 && s.WALBudgetBytes < s.WALSegmentBytes {
		// With a budget below one segment every write would ask for a
		// checkpoint and no file could ever be freed.
		p.add("storage.wal_budget_bytes", "must be at least wal_segment_bytes (%d < %d)", s.WALBudgetBytes, s.WALSegmentBytes)
	}
	if s.MinFreeBytes < 0 {
		p.add("storage.min_free_bytes", "must be >= 0, got %d", s.MinFreeBytes)
	}
}

func (l *LogConfig) validate(p *problems) {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "unknown level %q (want debug, info, warn or error)", l.Level)
	}
	switch l.Format {
	case "console", "json":
	default:
		p.add("log.format", "unknown format %q (want console or json)", l.Format)
	}
}

// checkRaftListen checks raft.listen against own, this node's address in
// peers, which is where the other brokers dial it. The two need not be
// equal: a broker may listen on a wildcard, or behind a NAT or a proxy on
// another port, as Kafka's listeners and advertised listeners differ. So
// only what cannot work is refused: a port picked at random, which no peer
// can know; the address of another peer, which this broker would take
// over; and a loopback listener on another port than a loopback address
// in peers, which nothing but this machine reaches, without a NAT.
func (c *Config) checkRaftListen(own string) error {
	host, port, _ := net.SplitHostPort(c.Raft.Listen)
	ownHost, ownPort, _ := net.SplitHostPort(own)
	if port == "0" {
		if len(c.Peers) > 1 {
			return fmt.Errorf("%q: port 0 picks a port at random, and the other peers dial this node at %q", c.Raft.Listen, own)
		}
		return nil
	}
	listen := addrKeys(c.Raft.Listen)
	for i, peer := range c.Peers {
		if peer.ID != c.NodeID && overlap(listen, addrKeys(peer.Addr)) {
			return fmt.Errorf("%q is the address of peers[%d] (node %d); this node's is %q", c.Raft.Listen, i, peer.ID, own)
		}
	}
	if isLoopback(host) && isLoopback(ownHost) && port != ownPort {
		return fmt.Errorf("%q: this node's address in peers is %q, and a loopback address is reached on its own port", c.Raft.Listen, own)
	}
	return nil
}

// addrKeys returns the forms of host:port addr under which it compares
// equal to another address: an IP in its canonical form, a host name in
// lower case (DNS names are case-insensitive), and localhost as both
// loopback addresses, either of which it may resolve to. Other names are
// not resolved, which would make validation depend on DNS.
func addrKeys(addr string) []string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return []string{addr}
	}
	host = strings.ToLower(host)
	if host == "localhost" {
		return []string{net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port)}
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return []string{net.JoinHostPort(host, port)}
}

// overlap reports whether a and b share an element.
func overlap(a, b []string) bool {
	for _, k := range a {
		if slices.Contains(b, k) {
			return true
		}
	}
	return false
}

// isLoopback reports whether host certainly names this machine's loopback
// interface.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkPeers checks the peer list on its own: ids and addresses present,
// well-formed and unique. Errors name the entry, e.g. peers[1].id. Two
// addresses are the same if addrKeys says they may reach one listener.
func checkPeers(peers []Peer) problems {
	var p problems
	ids := make(map[uint64]int, len(peers))
	addrs := make(map[string]int, len(peers))
	for i, peer := range peers {
		if peer.ID == 0 {
			p.add(fmt.Sprintf("peers[%d].id", i), "must be > 0")
		} else if peer.ID > maxNodeID {
			p.add(fmt.Sprintf("peers[%d].id", i), "must be at most %d (Kafka's broker ids are int32), got %d", maxNodeID, peer.ID)
		} else if j, dup := ids[peer.ID]; dup {
			p.add(fmt.Sprintf("peers[%d].id", i), "duplicate id %d (also peers[%d])", peer.ID, j)
		} else {
			ids[peer.ID] = i
		}
		field := fmt.Sprintf("peers[%d].addr", i)
		if err := checkDialAddr(peer.Addr); err != nil {
			p.addErr(field, err)
			continue
		}
		keys := addrKeys(peer.Addr)
		dup := slices.IndexFunc(keys, func(k string) bool { _, ok := addrs[k]; return ok })
		switch {
		case dup < 0:
			for _, k := range keys {
				addrs[k] = i
			}
		case peers[addrs[keys[dup]]].Addr == peer.Addr:
			p.add(field, "duplicate address %q (also peers[%d])", peer.Addr, addrs[keys[dup]])
		default:
			j := addrs[keys[dup]]
			p.add(field, "duplicate address %q: peers[%d] %q is the same", peer.Addr, j, peers[j].Addr)
		}
	}
	return p
}

// checkListenAddr checks an address to listen on: the host may be empty
// (all interfaces) and port 0 asks the kernel for a free port.
func checkListenAddr(addr string) error {
	_, err := splitAddr(addr, 0)
	return err
}

// checkDialAddr checks an address other processes connect to, so it needs
// a concrete host and a real port.
func checkDialAddr(addr string) error {
	host, err := splitAddr(addr, 1)
	if err != nil {
		return err
	}
	if isWildcard(host) {
		return fmt.Errorf("%q: host must be a reachable address, not a wildcard", addr)
	}
	return nil
}

// splitAddr splits host:port and checks that the port is a number between
// minPort and 65535. Service names such as "http" are refused so that the
// meaning of a config does not depend on /etc/services.
func splitAddr(addr string, minPort int) (host string, err error) {
	if addr == "" {
		return "", errors.New("must not be empty")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", fmt.Errorf("%q: %s", addr, ae.Err)
		}
		return "", fmt.Errorf("%q: %w", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return "", fmt.Errorf("%q: port %s out of range %d-65535", addr, port, minPort)
		}
		return "", fmt.Errorf("%q: port %q is not a number", addr, port)
	}
	if n < uint64(minPort) || n > 65535 {
		return "", fmt.Errorf("%q: port %d out of range %d-65535", addr, n, minPort)
	}
	return host, nil
}

// isWildcard reports whether host means "every interface" rather than one
// reachable address.
func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}
