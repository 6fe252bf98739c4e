package main

import (
	"slices"
	"testing"
	"time"
)

// TestWindowStats: acknowledgements count towards the window they came in,
// latencies towards the window their record was due in, and the worst
// second is the emptiest whole second of a window.
func TestWindowStats(t *testing.T) {
	s := time.Second
	ack := func(sent, acked time.Duration) trafficAck { return trafficAck{sent: sent, acked: acked} }
	tests := []struct {
		name   string
		acks   []trafficAck
		bounds []time.Duration
		acked  []int
		worst  []int
		lats   [][]time.Duration
	}{
		{
			name:   "one window",
			acks:   []trafficAck{ack(0, 10), ack(s/2, s/2+20), ack(s, s+30)},
			bounds: []time.Duration{0, 2 * s},
			acked:  []int{3}, worst: []int{1},
			lats: [][]time.Duration{{10, 20, 30}},
		},
		{
			name:   "a record due in one window and acked in the next",
			acks:   []trafficAck{ack(s-1, s+5), ack(s+1, s+2)},
			bounds: []time.Duration{0, s, 2 * s},
			acked:  []int{0, 2}, worst: []int{0, 2},
			lats: [][]time.Duration{{6}, {1}},
		},
		{
			name:   "an empty second",
			acks:   []trafficAck{ack(0, 1), ack(2*s, 2*s+1)},
			bounds: []time.Duration{0, 3 * s},
			acked:  []int{2}, worst: []int{0},
			lats: [][]time.Duration{{1, 1}},
		},
		{
			name:   "shorter than a second, and outside every window",
			acks:   []trafficAck{ack(0, 1), ack(s/4, s/4+1), ack(s, s+1)},
			bounds: []time.Duration{s / 8, s / 2},
			acked:  []int{1}, worst: []int{-1},
			lats: [][]time.Duration{{1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := windowStats(tt.acks, tt.bounds)
			if len(ws) != len(tt.acked) {
				t.Fatalf("%d windows, want %d", len(ws), len(tt.acked))
			}
			for i, w := range ws {
				if w.acked != tt.acked[i] || w.worstSecond != tt.worst[i] || !slices.Equal(w.latencies, tt.lats[i]) {
					t.Errorf("window %d: acked %d, worst second %d, latencies %v; want %d, %d, %v",
						i, w.acked, w.worstSecond, w.latencies, tt.acked[i], tt.worst[i], tt.lats[i])
				}
			}
		})
	}
}
