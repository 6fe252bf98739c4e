package partition

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the partition metrics of one broker, shared by its replicas.
// A nil *Metrics records nothing, which is what tests and tools use.
type Metrics struct {
	// ProduceSeconds is how long a batch this broker leads took from its
	// proposal, by stage: "durable" when this broker's WAL has it, and
	// "applied" when it is committed and applied, which is when acks=all
	// answers unless min.insync.replicas is above a majority. With the
	// Kafka listener's request latency it says where a produce waits.
	ProduceSeconds *prometheus.HistogramVec
	// SyncSeconds is how long one Sync of a partition's segments took:
	// the fsyncs that make the batches written since the last one
	// durable, which a Persist waits for next to the WAL's.
	SyncSeconds prometheus.Histogram
	// KeepSeconds is how long one Keep that wrote batches took on the
	// partition's raft actor: writing them into the segments, verifying
	// those this broker did not produce, and starting their write-back.
	// The raft actor handles nothing else meanwhile.
	KeepSeconds prometheus.Histogram
	// WriteErrors counts the partition logs whose segment write, fsync,
	// truncation or deletion failed, next to the WAL's write errors: the
	// log refuses every change after its first failure and its raft group
	// halts until the broker restarts, so each log counts once.
	WriteErrors prometheus.Counter
}

// NewMetrics creates the partition metrics and registers them with reg,
// which may be nil to leave them unregistered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ProduceSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flotilla_partition_produce_seconds",
			Help: "Time from proposing a produced batch on its leader to the batch being durable there (stage=durable) and applied (stage=applied).",
			// 100µs to 10s.
			Buckets: prometheus.ExponentialBucketsRange(100e-6, 10, 16),
		}, []string{"stage"}),
		SyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flotilla_partition_sync_seconds",
			Help:    "Time one fsync round of a partition's segments took (the batches written since the last one).",
			Buckets: prometheus.ExponentialBucketsRange(100e-6, 10, 16),
		}),
		KeepSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flotilla_partition_keep_seconds",
			Help:    "Time a partition's raft actor spent writing one Ready's batches into the segments (write, verification, start of the write-back).",
			Buckets: prometheus.ExponentialBucketsRange(10e-6, 1, 16),
		}),
		WriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flotilla_partition_write_errors_total",
			Help: "Partition logs whose segment write, fsync, truncation or deletion failed; each halts its raft group until the broker restarts.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.ProduceSeconds, m.SyncSeconds, m.KeepSeconds, m.WriteErrors)
	}
	return m
}

// writeErrors returns the counter a Log counts its failure in (nil: none).
func (m *Metrics) writeErrors() prometheus.Counter {
	if m == nil {
		return nil
	}
	return m.WriteErrors
}

func (m *Metrics) durable(since time.Time) {
	if m != nil {
		m.ProduceSeconds.WithLabelValues("durable").Observe(time.Since(since).Seconds())
	}
}

func (m *Metrics) applied(since time.Time) {
	if m != nil {
		m.ProduceSeconds.WithLabelValues("applied").Observe(time.Since(since).Seconds())
	}
}

func (m *Metrics) kept(since time.Time) {
	if m != nil {
		m.KeepSeconds.Observe(time.Since(since).Seconds())
	}
}

func (m *Metrics) synced(since time.Time) {
	if m != nil {
		m.SyncSeconds.Observe(time.Since(since).Seconds())
	}
}
