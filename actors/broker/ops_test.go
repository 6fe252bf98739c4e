package broker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla/flotilla/raftactor"
)

// logBuffer collects a broker's JSON log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the logged lines whose message is msg, decoded.
func (l *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if !strings.Contains(sc.Text(), msg) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %s: %v", sc.Text(), err)
		}
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestNewLeaderLogsNoISRChangeFromEmpty: a new partition leader logs its
// first ISR with its readiness, not as a change from an empty ISR it never
// had (`ISR changed … was=[]`, though the previous leader's ISR was full).
func TestNewLeaderLogsNoISRChangeFromEmpty(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tp, leader := c.strictPartition(ctx, "isr-log")
	other := (leader + 1) % 3
	var logs logBuffer
	c.stop(other)
	c.logTo = &logs
	c.start(other)
	c.logTo = nil
	lead := c.brokers[leader].Replicas().Get(tp)
	c.waitFor(20*time.Second, "the restarted replica rejoins the ISR", func() bool { return len(lead.Machine.View().ISR) == 3 })
	c.brokers[leader].Actors().Root.Send(lead.PID, &raftactor.TransferLeader{To: uint64(other + 1)})
	c.waitFor(10*time.Second, "the restarted broker logs its leadership", func() bool {
		return len(logs.lines(t, "partition leader ready")) > 0
	})
	for _, l := range logs.lines(t, "partition leader ready") {
		if isr, _ := l["isr"].([]any); len(isr) == 0 {
			t.Errorf("leader ready without its ISR: %v", l)
		}
	}
	for _, l := range logs.lines(t, "partition ISR changed") {
		if was, _ := l["was"].([]any); len(was) == 0 {
			t.Errorf("ISR change from an empty ISR logged: %v", l)
		}
	}
}
