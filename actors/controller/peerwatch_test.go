package controller

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/netactor"
)

// TestPeerWatchLogsTransitionsOnce: a registered peer that falls silent
// past the session timeout is logged dead once, however often it is
// checked, counted in the gauge, and logged alive once when heard again.
func TestPeerWatchLogsTransitionsOnce(t *testing.T) {
	sm := NewStateMachine(zerolog.Nop())
	for i, c := range []Command{
		{RegisterBroker: &RegisterBroker{NodeID: 1, KafkaAddr: "127.0.0.1:9091", RaftAddr: "127.0.0.1:7001"}},
		{RegisterBroker: &RegisterBroker{NodeID: 2, KafkaAddr: "127.0.0.1:9092", RaftAddr: "127.0.0.1:7002"}},
		{RegisterBroker: &RegisterBroker{NodeID: 3, KafkaAddr: "127.0.0.1:9093", RaftAddr: "127.0.0.1:7003"}},
	} {
		sm.Apply(uint64(i+1), 1, c.Encode())
	}
	now := time.Unix(1000, 0)
	liveness := netactor.NewLiveness(1, time.Second, func() time.Time { return now })
	var logs bytes.Buffer
	gauge := NewDeadPeersGauge(nil)
	c := NewActor(Options{NodeID: 1, Machine: sm, Liveness: liveness, DeadPeers: gauge, Log: zerolog.New(&logs)})().(*controllerActor)

	steps := []struct {
		name       string
		advance    time.Duration
		heard      []uint64
		dead       float64
		died, back int // log lines so far
	}{
		{"grace period", 500 * time.Millisecond, []uint64{2}, 0, 0, 0},
		{"3 never heard after the grace period", 600 * time.Millisecond, []uint64{2}, 1, 1, 0},
		{"checked again", 100 * time.Millisecond, []uint64{2}, 1, 1, 0},
		{"2 silent too", 1500 * time.Millisecond, nil, 2, 2, 0},
		{"2 and 3 heard again", 100 * time.Millisecond, []uint64{2, 3}, 0, 2, 2},
		{"checked again while alive", 100 * time.Millisecond, []uint64{2, 3}, 0, 2, 2},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		for _, id := range s.heard {
			liveness.Heard(id)
		}
		c.watchPeers(sm.View())
		var m dto.Metric
		if err := gauge.(prometheus.Metric).Write(&m); err != nil {
			t.Fatal(err)
		}
		died := strings.Count(logs.String(), "peer counts as dead")
		back := strings.Count(logs.String(), "peer alive again")
		if m.GetGauge().GetValue() != s.dead || died != s.died || back != s.back {
			t.Fatalf("%s: %v dead, %d dead lines, %d alive lines; want %v, %d, %d\n%s",
				s.name, m.GetGauge().GetValue(), died, back, s.dead, s.died, s.back, logs.String())
		}
	}
}
