package kafka

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Outcomes of a request, the values of the outcome label of
// flotilla_kafka_requests_total.
const (
	OutcomeAnswered    = "answered"    // a response was queued for the client
	OutcomeNoResponse  = "no_response" // acks=0 Produce, or an answer without a body
	OutcomeUnsupported = "unsupported" // ApiVersions of a version we lack (KIP-511 answer)
	OutcomeClosed      = "closed"      // the handler closed the connection with its answer
	OutcomeAbandoned   = "abandoned"   // the connection ended before the request was answered
)

// Reasons a connection is closed for breaking the protocol, the values of
// the reason label of flotilla_kafka_connections_rejected_total.
const (
	RejectTooLarge           = "request_too_large"
	RejectNegativeSize       = "negative_size"
	RejectUnknownAPI         = "unknown_api"
	RejectUnsupportedVersion = "unsupported_version"
	RejectMalformed          = "malformed_request"
	RejectBadResponse        = "bad_response" // the handler's answer does not fit the request
)

// Metrics are the Kafka front door's Prometheus metrics. A nil *Metrics is
// valid and records nothing, so tests and tools need no registry.
type Metrics struct {
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	open          prometheus.Gauge
	rejected      *prometheus.CounterVec
	bytesReceived prometheus.Counter
	bytesSent     prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg, if not nil. It
// panics if they are already registered there, like promauto.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flotilla_kafka_requests_total",
			Help: "Kafka requests read from clients, by API and outcome.",
		}, []string{"api", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flotilla_kafka_request_duration_seconds",
			Help:    "Time from reading a Kafka request to its answer reaching its connection, by API.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 18), // 100µs to 13s
		}, []string{"api"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flotilla_kafka_connections_open",
			Help: "Open Kafka client connections.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flotilla_kafka_connections_rejected_total",
			Help: "Kafka client connections closed for breaking the protocol, by reason.",
		}, []string{"reason"}),
		bytesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flotilla_kafka_bytes_received_total",
			Help: "Bytes of Kafka requests read, size prefixes included.",
		}),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flotilla_kafka_bytes_sent_total",
			Help: "Bytes of Kafka responses written, size prefixes included.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.open, m.rejected, m.bytesReceived, m.bytesSent)
	}
	return m
}

// request records one request's outcome and, if it was answered, its latency.
func (m *Metrics) request(key int16, outcome string, latency time.Duration) {
	if m == nil {
		return
	}
	api := apiName(key)
	m.requests.WithLabelValues(api, outcome).Inc()
	if outcome != OutcomeAbandoned {
		m.latency.WithLabelValues(api).Observe(latency.Seconds())
	}
}

func (m *Metrics) connOpened() {
	if m != nil {
		m.open.Inc()
	}
}

func (m *Metrics) connClosed() {
	if m != nil {
		m.open.Dec()
	}
}

func (m *Metrics) reject(reason string) {
	if m != nil {
		m.rejected.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) received(n int) {
	if m != nil {
		m.bytesReceived.Add(float64(n))
	}
}

func (m *Metrics) sent(n int) {
	if m != nil {
		m.bytesSent.Add(float64(n))
	}
}

// apiName is the api label of a key: its Kafka name.
func apiName(key int16) string {
	if name := kmsg.NameForKey(key); name != "" {
		return name
	}
	return "unknown"
}
