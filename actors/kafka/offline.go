package kafka

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flotilla/flotilla/actors/controller"
)

// OfflineCollector exports Kafka's OfflinePartitionsCount: the partitions
// without a live leader, as this broker knows them (leaderOf). Like
// Kafka's, only the controller leader reports it (0 elsewhere), so that
// the brokers' values add up to the cluster's count. It is computed at
// scrape time from published views.
type OfflineCollector struct {
	svc  *Service
	desc *prometheus.Desc
}

// NewOfflineCollector returns the collector over s; register it on a
// registry.
func NewOfflineCollector(s *Service) *OfflineCollector {
	return &OfflineCollector{svc: s, desc: prometheus.NewDesc("flotilla_partitions_offline",
		"Partitions with no live leader, reported by the controller leader only (0 on the other brokers): Kafka's OfflinePartitionsCount. Topics still being created are not counted.", nil, nil)}
}

// Describe implements prometheus.Collector.
func (c *OfflineCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *OfflineCollector) Collect(ch chan<- prometheus.Metric) {
	n := 0
	if st := c.svc.Board.Get(controller.ControllerGroup); st != nil && st.Role == "leader" {
		for _, t := range c.svc.Machine.View().Topics {
			if t.Creating {
				continue
			}
			for _, p := range t.Partitions {
				if leader, _ := c.svc.leaderOf(p); leader == 0 {
					n++
				}
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}
