package broker

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/flotilla/flotilla/configs"
)

// TestHealthzWaitsForQuorum: a broker restarted without a quorum of its
// controller group serves no Kafka client, and /healthz says so with 503
// until a peer is back and it has caught up; then 200.
func TestHealthzWaitsForQuorum(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Debug.Listen = "127.0.0.1:0" })
	c.waitReady()
	for i := range c.brokers {
		c.stop(i)
	}
	// A restart binds a new debug port: ask the broker for it.
	c.cfgs[0].Debug.Listen = "127.0.0.1:0"
	c.start(0)
	health := func() (int, string) {
		resp, err := http.Get("http://" + c.brokers[0].DebugAddr() + "/healthz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var body struct {
			Status string `json:"status"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return resp.StatusCode, err.Error()
		}
		return resp.StatusCode, body.Status
	}
	// Well past an election timeout: it stays unhealthy alone.
	deadline := time.Now().Add(5 * c.electionTimeout())
	for time.Now().Before(deadline) {
		if code, status := health(); code != http.StatusServiceUnavailable {
			t.Fatalf("alone: /healthz %d %q, want 503", code, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, status := health()
	t.Logf("alone: %d %q", code, status)
	c.start(1)
	c.waitFor(15*time.Second, "/healthz 200 once a quorum is back", func() bool {
		code, _ := health()
		return code == http.StatusOK
	})
}

// electionTimeout is the brokers' election timeout.
func (c *testCluster) electionTimeout() time.Duration {
	return time.Duration(c.cfgs[0].Raft.ElectionTicks) * c.cfgs[0].TickInterval()
}
