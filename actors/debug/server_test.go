package debug

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/raftactor"
)

// failingCollector reports one broken metric, as a collector with a bug
// would.
type failingCollector struct{ desc *prometheus.Desc }

func (c failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c failingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(c.desc, errors.New("broken"))
}

// TestMetricsSurviveABrokenCollector: one failing collector must not blind
// the rest of the scrape.
func TestMetricsSurviveABrokenCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	ok := prometheus.NewCounter(prometheus.CounterOpts{Name: "flotilla_test_ok_total", Help: "A healthy metric."})
	ok.Inc()
	reg.MustRegister(ok, failingCollector{prometheus.NewDesc("flotilla_test_broken", "A broken metric.", nil, nil)})
	src := Sources{NodeID: 1, Board: raftactor.NewStatusBoard(), Gatherer: reg, Log: zerolog.Nop()}
	rec := httptest.NewRecorder()
	Handler(src).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "flotilla_test_ok_total 1") {
		t.Fatalf("GET /metrics: %d\n%s", rec.Code, rec.Body.String())
	}
}

// TestHealthz: /healthz answers 200 only while the broker serves Kafka
// clients: 503 until it has caught up with the controller's state and
// heard what its peers lead (its Kafka listener accepts nobody before),
// while no controller leader is
// known, and when any raft group of the broker has halted (it needs a
// restart), naming a few of those with their reasons and counting all.
func TestHealthz(t *testing.T) {
	running := &raftactor.GroupStatus{Group: controller.ControllerGroup, Name: "controller", Role: "leader", Leader: 1}
	leaderless := &raftactor.GroupStatus{Group: controller.ControllerGroup, Name: "controller", Role: "pre-candidate"}
	tests := []struct {
		name       string
		groups     []*raftactor.GroupStatus
		behind     bool // the broker has not caught up with the controller
		learning   bool // caught up, it has not heard what its peers lead
		code       int
		status     string
		halted     int
		firstShown string
	}{
		{"healthy", []*raftactor.GroupStatus{running, {Group: 1024, Name: "t/0", Role: "follower"}}, false, false, http.StatusOK, "ok", 0, ""},
		{"no controller", nil, false, false, http.StatusServiceUnavailable, "controller group not running", 0, ""},
		{"catching up", []*raftactor.GroupStatus{running}, true, false, http.StatusServiceUnavailable, "catching up with the controller; not serving Kafka clients yet", 0, ""},
		{"learning the leaders", []*raftactor.GroupStatus{running}, false, true, http.StatusServiceUnavailable, "learning from its peers which partitions they lead; not serving Kafka clients yet", 0, ""},
		{"no controller leader", []*raftactor.GroupStatus{leaderless}, false, false, http.StatusServiceUnavailable, "no controller leader", 0, ""},
		{"controller halted", []*raftactor.GroupStatus{
			{Group: controller.ControllerGroup, Name: "controller", Role: "halted", Halted: "write wal: no space left on device"},
		}, false, false, http.StatusServiceUnavailable, "raft groups halted; restart the broker", 1, "controller"},
		{"partitions halted", append([]*raftactor.GroupStatus{running}, haltedPartitions(40)...), false, false,
			http.StatusServiceUnavailable, "raft groups halted; restart the broker", 40, "t/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			board := raftactor.NewStatusBoard()
			for _, g := range tt.groups {
				board.Publish(g)
			}
			sm := controller.NewStateMachine(zerolog.Nop())
			if !tt.behind {
				sm.MarkCaughtUp()
			}
			serving := make(chan struct{})
			if !tt.learning {
				close(serving)
			}
			rec := httptest.NewRecorder()
			Handler(Sources{NodeID: 1, Board: board, Controller: sm, Serving: serving, Gatherer: prometheus.NewRegistry(), Log: zerolog.Nop()}).
				ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			var body struct {
				Status       string        `json:"status"`
				HaltedGroups int           `json:"halted_groups"`
				Halted       []HaltedGroup `json:"halted"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
			}
			if rec.Code != tt.code || body.Status != tt.status || body.HaltedGroups != tt.halted {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tt.halted == 0 {
				return
			}
			if len(body.Halted) != min(tt.halted, healthHaltedShown) || body.Halted[0].Name != tt.firstShown || body.Halted[0].Reason == "" {
				t.Errorf("halted groups shown: %+v", body.Halted)
			}
			if rec.Body.Len() > 2048 {
				t.Errorf("body of %d bytes", rec.Body.Len())
			}
		})
	}
}

func haltedPartitions(n int) []*raftactor.GroupStatus {
	var out []*raftactor.GroupStatus
	for i := range n {
		out = append(out, &raftactor.GroupStatus{
			Group: uint64(1024 + i), Name: fmt.Sprintf("t/%d", i), Role: "halted",
			Halted: "write partition segment: no space left on device",
		})
	}
	return out
}

// TestPageShowsHaltReason: the page shows why a group halted.
func TestPageShowsHaltReason(t *testing.T) {
	board := raftactor.NewStatusBoard()
	board.Publish(&raftactor.GroupStatus{Group: 1024, Name: "t/0", Role: "halted", Halted: "write partition segment: no space left on device"})
	sys := actors.NewSystem(zerolog.Nop())
	defer sys.Shutdown()
	src := Sources{NodeID: 1, Actors: sys, Board: board, Controller: controller.NewStateMachine(zerolog.Nop()), Gatherer: prometheus.NewRegistry(), Log: zerolog.Nop()}
	rec := httptest.NewRecorder()
	Handler(src).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if want := "halted: write partition segment: no space left on device"; !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("page lacks %q:\n%s", want, rec.Body)
	}
}
