package raftactor

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports every group's status from a StatusBoard as Prometheus
// metrics at scrape time, so the raft actors pay nothing per update.
type Collector struct {
	board   *StatusBoard
	term    *prometheus.Desc
	role    *prometheus.Desc
	commit  *prometheus.Desc
	applied *prometheus.Desc
	leader  *prometheus.Desc
	// withheld counts, on groups with a cold log, the snapshot requests
	// withheld (tiered.go): a follower behind the log start waits.
	withheld *prometheus.Desc
}

// NewCollector returns a collector over board; register it on a registry.
func NewCollector(board *StatusBoard) *Collector {
	l := []string{"group"}
	return &Collector{
		board:   board,
		term:    prometheus.NewDesc("flotilla_raft_term", "Current raft term of the group.", l, nil),
		role:    prometheus.NewDesc("flotilla_raft_role", "1 for the group's current role on this node; role halted: it stopped taking part in raft after a storage failure, until a restart.", []string{"group", "role"}, nil),
		commit:  prometheus.NewDesc("flotilla_raft_commit_index", "Highest committed raft index of the group.", l, nil),
		applied: prometheus.NewDesc("flotilla_raft_applied_index", "Highest applied raft index of the group.", l, nil),
		leader:  prometheus.NewDesc("flotilla_raft_leader", "Node id of the group's leader as this node knows it (0: none).", l, nil),
		withheld: prometheus.NewDesc("flotilla_raft_snapshots_withheld_total",
			"Snapshot requests for a follower behind the partition's log start that were withheld: no snapshot at its boundary, and the latest would skip retained records; the follower waits (docs/decisions.md).", l, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.term, c.role, c.commit, c.applied, c.leader, c.withheld} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. Series are labelled by the
// group's name, which two groups share for a while when a topic is deleted
// and re-created: the old group stays on the board until its actor has
// stopped. Only the newest of them is exported (group ids are never reused
// and grow, so the highest id is the new partition); a duplicate would fail
// the whole scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	all := c.board.All() // ordered by group id
	newest := make(map[string]*GroupStatus, len(all))
	for _, s := range all {
		newest[s.Name] = s
	}
	for _, s := range all {
		if newest[s.Name] != s {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(s.Term), s.Name)
		ch <- prometheus.MustNewConstMetric(c.commit, prometheus.GaugeValue, float64(s.Commit), s.Name)
		ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(s.Applied), s.Name)
		ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, float64(s.Leader), s.Name)
		ch <- prometheus.MustNewConstMetric(c.withheld, prometheus.CounterValue, float64(s.SnapshotsWithheld), s.Name)
		for _, r := range []string{"leader", "follower", "candidate", "pre-candidate", "halted"} {
			v := 0.0
			if r == s.Role {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.role, prometheus.GaugeValue, v, s.Name, r)
		}
	}
}
