package debug

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

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
