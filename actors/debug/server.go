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
	// Serving is closed once the broker serves Kafka clients, which it
	// does once caught up with the controller and told by its peers what
	// they lead; /healthz answers 503 until then (nil: once caught up).
	Serving <-chan struct{}
	// ServedFrom returns the controller state's applied index when the
	// broker began serving (0 before, and when nil): /healthz waits only
	// for replicas of partitions that existed by then (behindReplicas).
	ServedFrom func() uint64
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
		v := groupsView(src)
		writeJSON(w, map[string]any{"node_id": src.NodeID, "groups": v.Groups, "unanswered_offsets_partitions": v.Unanswered})
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
