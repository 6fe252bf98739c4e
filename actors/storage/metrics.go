package storage

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the WAL's Prometheus metrics. A nil *Metrics records nothing,
// which is what tests and tools use.
type Metrics struct {
	// FsyncSeconds is the latency of each fsync of a WAL file.
	FsyncSeconds prometheus.Histogram
	// PersistSeconds is how long a Persist with entries took from reaching
	// the storage actor to its answer: its write and its wait for the
	// fsyncs in flight and its own.
	PersistSeconds prometheus.Histogram
	// BytesWritten counts bytes appended to WAL files, headers included.
	BytesWritten prometheus.Counter
	// GroupCommitRecords is the number of records each fsync made
	// durable: how well group commit amortises its fsyncs.
	GroupCommitRecords prometheus.Histogram
	// Files is the number of WAL files on disk.
	Files prometheus.Gauge
	// SizeBytes is the total size of the WAL files on disk.
	SizeBytes prometheus.Gauge
	// FilesDeleted counts WAL files deleted because checkpoints covered them.
	FilesDeleted prometheus.Counter
	// CheckpointRequests counts CheckpointRequests sent to groups.
	CheckpointRequests prometheus.Counter
	// WriteErrors counts failed writes and fsyncs; after the first, the WAL
	// refuses every write.
	WriteErrors prometheus.Counter
	// StuckGroups is the number of groups that have held back the oldest
	// WAL file over several rolls, asked to checkpoint at each: halted
	// groups, until the broker restarts. While it is not 0 the WAL grows
	// past its budget.
	StuckGroups prometheus.Gauge
}

// NewMetrics creates the WAL metrics and registers them with reg, which may
// be nil to leave them unregistered. It panics if reg already holds them,
// like prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		FsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flotilla_wal_fsync_seconds",
			Help: "Latency of WAL fsyncs.",
			// 50µs (NVMe with a write cache) to 1s (a struggling disk).
			Buckets: prometheus.ExponentialBucketsRange(50e-6, 1, 16),
		}),
		PersistSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flotilla_wal_persist_seconds",
			Help:    "Time from a Persist with entries reaching the storage actor to its answer.",
			Buckets: prometheus.ExponentialBucketsRange(50e-6, 1, 16),
		}),
		BytesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flotilla_wal_bytes_written_total",
			Help: "Bytes appended to WAL files.",
		}),
		GroupCommitRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flotilla_wal_group_commit_records",
			Help:    "Records made durable by one WAL fsync.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13), // 1 … 4096
		}),
		Files: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flotilla_wal_files",
			Help: "WAL files on disk.",
		}),
		SizeBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flotilla_wal_size_bytes",
			Help: "Total size of the WAL files on disk.",
		}),
		FilesDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flotilla_wal_files_deleted_total",
			Help: "WAL files deleted after checkpoints covered them.",
		}),
		CheckpointRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flotilla_wal_checkpoint_requests_total",
			Help: "Checkpoint requests sent to groups holding back the oldest WAL file.",
		}),
		WriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flotilla_wal_write_errors_total",
			Help: "Failed WAL writes and fsyncs.",
		}),
		StuckGroups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flotilla_wal_stuck_groups",
			Help: "Raft groups that held back the oldest WAL file over several rolls without checkpointing past it (halted groups); the WAL grows past its budget meanwhile.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.FsyncSeconds, m.PersistSeconds, m.BytesWritten, m.GroupCommitRecords, m.Files,
			m.SizeBytes, m.FilesDeleted, m.CheckpointRequests, m.WriteErrors, m.StuckGroups)
	}
	return m
}

func (m *Metrics) observeFsync(d time.Duration) {
	if m != nil {
		m.FsyncSeconds.Observe(d.Seconds())
	}
}

func (m *Metrics) observePersist(d time.Duration) {
	if m != nil {
		m.PersistSeconds.Observe(d.Seconds())
	}
}

func (m *Metrics) addBytes(n int) {
	if m != nil {
		m.BytesWritten.Add(float64(n))
	}
}

func (m *Metrics) observeSynced(records int) {
	if m != nil && records > 0 {
		m.GroupCommitRecords.Observe(float64(records))
	}
}

func (m *Metrics) setFiles(files int, bytes int64) {
	if m != nil {
		m.Files.Set(float64(files))
		m.SizeBytes.Set(float64(bytes))
	}
}

func (m *Metrics) fileDeleted() {
	if m != nil {
		m.FilesDeleted.Inc()
	}
}

func (m *Metrics) checkpointRequested() {
	if m != nil {
		m.CheckpointRequests.Inc()
	}
}

func (m *Metrics) writeError() {
	if m != nil {
		m.WriteErrors.Inc()
	}
}

func (m *Metrics) setStuckGroups(n int) {
	if m != nil {
		m.StuckGroups.Set(float64(n))
	}
}
