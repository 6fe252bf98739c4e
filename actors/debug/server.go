package debug

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/group"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// Sources are the views the endpoint shows.
type Sources struct {
	NodeID     uint64
	Actors     *actors.System
	Board      *raftactor.StatusBoard
	Controller *controller.StateMachine // /healthz answers 503 until this broker caught up with it (nil: no such wait)
	// Coordinators and Replicas show the groups this broker coordinates
	// and their lag (nil in tests that have none).
	Coordinators *group.Coordinators
	Replicas     *partition.Replicas
	// Leaders is what this broker knows of the leaders of partitions it
	// does not host (nil: only the local replicas' view).
	Leaders *partition.Leaders
	// ConfigPeers returns the peers list of the config the broker runs
	// with now (SIGHUP may change it); nil shows none.
	ConfigPeers func() map[uint64]string
	// Liveness is this broker's judgement of its peers (nil: not shown).
	Liveness *netactor.Liveness
	Gatherer prometheus.Gatherer
	Log      zerolog.Logger
}

// NewActor returns the producer of the debug actor serving on ln, which the
// caller binds first so that a taken port fails startup, not the actor.
func NewActor(ln net.Listener, src Sources) actor.Producer {
	return func() actor.Actor { return &debugActor{ln: ln, src: src} }
}

type debugActor struct {
	ln  net.Listener
	src Sources
	srv *http.Server
}

func (d *debugActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		d.srv = &http.Server{Handler: Handler(d.src), ReadHeaderTimeout: 5 * time.Second}
		srv, ln, log := d.srv, d.ln, d.src.Log
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Err(err).Msg("debug endpoint stopped")
			}
		}()
		log.Info().Str("addr", ln.Addr().String()).Msg("debug endpoint listening")
	case *actor.Restarting, *actor.Stopping:
		// The listener belongs to this actor for its whole life; a restart
		// must not leave the port closed, so only Stopping closes it.
		if _, stopping := ctx.Message().(*actor.Stopping); stopping && d.srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = d.srv.Shutdown(sctx)
			cancel()
		}
	}
}

// Handler returns the endpoint's routes.
func Handler(src Sources) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/actors", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"actors": src.Actors.List()})
	})
	mux.HandleFunc("GET /debug/raft", func(w http.ResponseWriter, r *http.Request) {
		groups := src.Board.All()
		if groups == nil {
			groups = []*raftactor.GroupStatus{}
		}
		writeJSON(w, map[string]any{"node_id": src.NodeID, "groups": groups})
	})
	mux.HandleFunc("GET /debug/cluster", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, clusterView(src))
	})
	mux.HandleFunc("GET /debug/groups", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"node_id": src.NodeID, "groups": groupsView(src)})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { serveHealth(w, src) })
	// One failing collector must not blind the others (WAL, Go runtime):
	// serve what was gathered and log the error.
	mux.Handle("GET /metrics", promhttp.HandlerFor(src.Gatherer, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      scrapeErrorLog{src.Log},
	}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { servePage(w, src) })
	return mux
}

// scrapeErrorLog hands promhttp's gathering errors to the broker's log.
type scrapeErrorLog struct{ log zerolog.Logger }

func (l scrapeErrorLog) Println(v ...any) {
	l.log.Warn().Str("error", fmt.Sprint(v...)).Msg("metrics scrape was partial")
}

// healthHaltedShown is how many halted groups /healthz names: a broker whose
// disk filled up may have halted hundreds, and the count says the rest.
const healthHaltedShown = 5

// HaltedGroup is a halted raft group as /healthz shows it.
type HaltedGroup struct {
	Name   string `json:"name"`
	Group  uint64 `json:"raft_group"`
	Reason string `json:"reason"`
}

// serveHealth answers 200 while the broker serves Kafka clients and no raft
// group of it has halted; 503 with the reason otherwise. A halted group
// takes no part in raft until the broker restarts, so the broker needs a
// restart (after its storage is fixed). Until the broker has caught up with
// the controller's state its Kafka listener accepts no client, and while no
// controller leader is known no metadata can change: a rolling restart
// that moved on to the next broker then could leave the cluster without a
// quorum.
func serveHealth(w http.ResponseWriter, src Sources) {
	var halted []HaltedGroup
	n := 0
	for _, st := range src.Board.All() {
		if st.Halted == "" {
			continue
		}
		n++
		if len(halted) < healthHaltedShown {
			halted = append(halted, HaltedGroup{Name: st.Name, Group: st.Group, Reason: st.Halted})
		}
	}
	if n > 0 {
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "raft groups halted; restart the broker", "halted_groups": n, "halted": halted})
		return
	}
	st := src.Board.Get(controller.ControllerGroup)
	switch {
	case st == nil:
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "controller group not running"})
	case src.Controller != nil && !src.Controller.CaughtUp():
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "catching up with the controller; not serving Kafka clients yet", "controller_leader": st.Leader, "role": st.Role})
	case st.Leader == 0:
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "no controller leader", "role": st.Role})
	default:
		writeJSON(w, map[string]any{"status": "ok", "controller_leader": st.Leader, "role": st.Role})
	}
}
