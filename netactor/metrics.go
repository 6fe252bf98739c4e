package netactor

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a message is dropped, the values of the reason label of
// flotilla_raft_messages_dropped_total.
const (
	DropUnknownGroup = "unknown_group" // received for a group this node does not host
	DropForged       = "forged"        // received with a From, To or type the connection may not carry
	DropQueueFull    = "queue_full"    // the peer's send queue was over its bound
	DropDisconnected = "disconnected"  // the peer was not connected
	DropUnknownPeer  = "unknown_peer"  // addressed to a node that is not in the peer table
	DropTooLarge     = "too_large"     // a single message larger than the frame limit, or a snapshot above the snapshot limit
	DropEncodeFailed = "encode_failed" // a message that could not be marshalled
	// DropSnapshotMemory counts streamed snapshots refused because those
	// being received already held too much of MaxSnapshotBytes.
	DropSnapshotMemory = "snapshot_memory"
	// DropControlQueueFull counts control messages (not raft messages)
	// dropped, oldest first, past the few a PeerSender holds for its peer.
	DropControlQueueFull = "control_queue_full"
)

// Reasons the listener closes a connection, the values of the reason label of
// flotilla_raft_connections_rejected_total.
const (
	RejectFrameTooLarge = "frame_too_large"
	RejectMalformed     = "malformed_frame"
	RejectBadHello      = "bad_hello"
	RejectHelloTimeout  = "hello_timeout"
	// RejectSnapshotTooLarge: a streamed snapshot announced more than
	// ListenerOptions.MaxSnapshotBytes.
	RejectSnapshotTooLarge = "snapshot_too_large"
	// RejectDuplicateID: a hello naming a node id that another live
	// process holds (hold.go).
	RejectDuplicateID = "duplicate_node_id"
)

// Metrics are the transport's Prometheus metrics. A nil *Metrics is valid and
// records nothing, so tests and tools need no registry.
type Metrics struct {
	framesSent     *prometheus.CounterVec
	framesReceived *prometheus.CounterVec
	bytesSent      *prometheus.CounterVec
	bytesReceived  *prometheus.CounterVec
	dropped        *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	queuedBytes    *prometheus.GaugeVec
	receivingBytes *prometheus.GaugeVec
}

// NewMetrics creates the transport's metrics and registers them with reg. It
// panics if they are already registered there, like promauto.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
	}
	m := &Metrics{
		framesSent:     counter("flotilla_raft_frames_sent_total", "Raft transport frames written to a peer.", "peer"),
		framesReceived: counter("flotilla_raft_frames_received_total", "Raft transport frames read from a peer.", "peer"),
		bytesSent:      counter("flotilla_raft_bytes_sent_total", "Raft transport bytes written to a peer, frame headers included.", "peer"),
		bytesReceived:  counter("flotilla_raft_bytes_received_total", "Raft transport bytes read from a peer, frame headers included.", "peer"),
		dropped:        counter("flotilla_raft_messages_dropped_total", "Raft and control messages the transport dropped, by reason.", "reason"),
		rejected:       counter("flotilla_raft_connections_rejected_total", "Inbound Raft connections closed for a protocol violation, by reason.", "reason"),
		queuedBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flotilla_raft_queued_bytes",
			Help: "Bytes of Raft messages queued for a peer and not yet handed to its connection.",
		}, []string{"peer"}),
		receivingBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flotilla_raft_snapshot_receiving_bytes",
			Help: "Bytes of Raft snapshots received from a peer in chunks and not yet complete.",
		}, []string{"peer"}),
	}
	if reg != nil {
		reg.MustRegister(m.framesSent, m.framesReceived, m.bytesSent, m.bytesReceived,
			m.dropped, m.rejected, m.queuedBytes, m.receivingBytes)
	}
	return m
}

// peerCounters are one peer's traffic counters, resolved once per connection
// so that the per-frame path does no label lookup.
type peerCounters struct {
	frames, bytes prometheus.Counter
}

func (c peerCounters) add(frameBytes int) {
	if c.frames == nil {
		return
	}
	c.frames.Inc()
	c.bytes.Add(float64(frameBytes))
}

func (m *Metrics) sent(peer uint64) peerCounters {
	if m == nil {
		return peerCounters{}
	}
	p := strconv.FormatUint(peer, 10)
	return peerCounters{frames: m.framesSent.WithLabelValues(p), bytes: m.bytesSent.WithLabelValues(p)}
}

func (m *Metrics) received(peer uint64) peerCounters {
	if m == nil {
		return peerCounters{}
	}
	p := strconv.FormatUint(peer, 10)
	return peerCounters{frames: m.framesReceived.WithLabelValues(p), bytes: m.bytesReceived.WithLabelValues(p)}
}

func (m *Metrics) drop(reason string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.dropped.WithLabelValues(reason).Add(float64(n))
}

func (m *Metrics) reject(reason string) {
	if m == nil {
		return
	}
	m.rejected.WithLabelValues(reason).Inc()
}

// queueGauge returns the queued-bytes gauge of one peer, or nil.
func (m *Metrics) queueGauge(peer uint64) prometheus.Gauge {
	if m == nil {
		return nil
	}
	return m.queuedBytes.WithLabelValues(strconv.FormatUint(peer, 10))
}

// receivingGauge returns the gauge of the snapshot bytes being reassembled
// from one peer, or nil.
func (m *Metrics) receivingGauge(peer uint64) prometheus.Gauge {
	if m == nil {
		return nil
	}
	return m.receivingBytes.WithLabelValues(strconv.FormatUint(peer, 10))
}
