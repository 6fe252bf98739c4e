package broker

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flotilla/flotilla/configs"
)

// TestHealthzAfterCreateTopic: creating a topic does not turn a healthy
// broker's /healthz 503 (at most a blip). It used to for about 1.5 s on
// every broker hosting it, while the new partitions' replicas started,
// elected and learnt their ISR, which is nothing to wait for in a rolling
// restart (debug.behindReplicas).
func TestHealthzAfterCreateTopic(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Debug.Listen = "127.0.0.1:0"; cfg.Raft.TickMs = 50 })
	c.waitReady()
	for i := range c.brokers {
		c.waitFor(15*time.Second, "healthy", func() bool { code, _ := c.healthz(i); return code == http.StatusOK })
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var startAt time.Time // set before stop is closed, read after
	res := make([]string, len(c.brokers))
	worst := make([]time.Duration, len(c.brokers))
	for i := range c.brokers {
		wg.Go(func() {
			var first, last time.Time
			var why string
			for {
				select {
				case <-stop:
					if !first.IsZero() {
						res[i] = fmt.Sprintf("503 from %v to %v after the create (%s)", first.Sub(startAt), last.Sub(startAt), why)
						worst[i] = last.Sub(first)
					} else {
						res[i] = "always 200"
					}
					return
				default:
				}
				code, body := c.healthz(i)
				if code != http.StatusOK {
					if first.IsZero() {
						first = time.Now()
					}
					last = time.Now()
					if len(body.Behind) > 0 {
						why = body.Behind[0].Reason
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	startAt = time.Now()
	c.createTopic(ctx, c.client(), "flap", 12, 3, nil)
	// The 503s lasted until every new replica knew its leader's ISR: watch
	// well past that.
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	for i, r := range res {
		t.Logf("broker %d: %s", i+1, r)
		if worst[i] > 500*time.Millisecond {
			t.Errorf("broker %d of a healthy cluster answered /healthz 503 for %v after a topic was created", i+1, worst[i])
		}
	}
}
