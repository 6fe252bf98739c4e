package controller

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flotilla/flotilla/netactor"
)

// peerWatch follows this broker's judgement of the registered brokers
// (netactor.Liveness: a frame within broker_session_timeout_ms), logs each
// change once and counts the dead, which is otherwise visible only on
// /debug/cluster.
type peerWatch struct {
	liveness *netactor.Liveness
	gauge    prometheus.Gauge // nil: not counted
	dead     map[uint64]bool
}

// NewDeadPeersGauge returns the gauge of the peers this broker counts dead,
// registered with reg when it is not nil, for Options.DeadPeers.
func NewDeadPeersGauge(reg prometheus.Registerer) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "flotilla_peers_dead",
		Help: "Registered brokers this broker heard no raft frame from within broker_session_timeout_ms. Metadata leaves them out, unless most controller voters seem dead (this broker is then more likely the one cut off).",
	})
	if reg != nil {
		reg.MustRegister(g)
	}
	return g
}

// watchPeers judges every registered broker of view but self and removed ones,
// logs those that died or came back since the last check, and sets the
// gauge.
func (c *controllerActor) watchPeers(view *State) {
	w := &c.watch
	if w.liveness == nil {
		return
	}
	if w.dead == nil {
		w.dead = map[uint64]bool{}
	}
	n := 0
	for _, id := range slices.Sorted(maps.Keys(view.Brokers)) {
		if id == c.o.NodeID || view.IsRemoved(id) {
			continue
		}
		alive := w.liveness.Alive(id)
		if !alive {
			n++
		}
		switch {
		case !alive && !w.dead[id]:
			w.dead[id] = true
			c.o.Log.Warn().Uint64("peer", id).Int64("heard_ms_ago", w.liveness.HeardMsAgo(id)).
				Msg("peer counts as dead: no raft frame from it within broker_session_timeout_ms")
		case alive && w.dead[id]:
			delete(w.dead, id)
			c.o.Log.Info().Uint64("peer", id).Msg("peer alive again")
		}
	}
	for id := range w.dead {
		if _, ok := view.Brokers[id]; !ok || view.IsRemoved(id) {
			delete(w.dead, id)
		}
	}
	if w.gauge != nil {
		w.gauge.Set(float64(n))
	}
}
