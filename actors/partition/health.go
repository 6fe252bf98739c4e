package partition

import (
	"github.com/prometheus/client_golang/prometheus"
)

// replicaSizes are the sizes a leader's ISR is judged against.
type replicaSizes struct {
	replicas  int // the assignment's replicas, not counting those being added
	minInsync int // min.insync.replicas
}

// noteSizes publishes the sizes after the assignment or the settings
// changed; the actor calls it.
func (m *Machine) noteSizes() {
	m.sizes.Store(&replicaSizes{replicas: len(m.replicas) - len(m.adding), minInsync: m.o.Settings.MinInsyncReplicas})
}

// HealthCollector exports Kafka's partition health gauges for the
// partitions this broker leads, computed at scrape time from the replicas'
// published views: nothing is paid per produce or per tick.
type HealthCollector struct {
	replicas        *Replicas
	underReplicated *prometheus.Desc
	underMinISR     *prometheus.Desc
}

// NewHealthCollector returns the collector over the replicas of a broker;
// register it on a registry.
func NewHealthCollector(replicas *Replicas) *HealthCollector {
	return &HealthCollector{
		replicas: replicas,
		underReplicated: prometheus.NewDesc("flotilla_partitions_under_replicated",
			"Partitions this broker leads whose ISR is smaller than their replicas (those being added by a reassignment not counted): Kafka's UnderReplicatedPartitions.", nil, nil),
		underMinISR: prometheus.NewDesc("flotilla_partitions_under_min_isr",
			"Partitions this broker leads whose ISR is smaller than min.insync.replicas, where acks=all produces fail: Kafka's UnderMinIsrPartitionCount.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *HealthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.underReplicated
	ch <- c.underMinISR
}

// Collect implements prometheus.Collector.
func (c *HealthCollector) Collect(ch chan<- prometheus.Metric) {
	under, underMin := 0, 0
	for _, r := range c.replicas.All() {
		v := r.Machine.View()
		sz := r.Machine.sizes.Load()
		if !v.Leader || sz == nil {
			continue
		}
		if len(v.ISR) < sz.replicas {
			under++
		}
		if len(v.ISR) < sz.minInsync {
			underMin++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.underReplicated, prometheus.GaugeValue, float64(under))
	ch <- prometheus.MustNewConstMetric(c.underMinISR, prometheus.GaugeValue, float64(underMin))
}
