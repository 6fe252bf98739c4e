package main

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// TestValuePoolIncompressible: no two values within a produce batch's worth
// of records (1 MB) are equal, so the batch cannot be compressed by
// repetition.
func TestValuePoolIncompressible(t *testing.T) {
	pool := newValuePool(benchPoolBytes)
	const perBatch = 1 << 20 / benchValueBytes
	seen := map[string]int{}
	for i := range 2 * perBatch {
		v := pool.value(i)
		if len(v) != benchValueBytes || cap(v) != benchValueBytes {
			t.Fatalf("value %d: len %d cap %d", i, len(v), cap(v))
		}
		if j, ok := seen[string(v)]; ok {
			t.Fatalf("values %d and %d are equal", j, i)
		}
		seen[string(v)] = i
	}
	if bytes.Equal(newValuePool(4096), make([]byte, 4096)) {
		t.Fatal("the pool is zeros")
	}
}

// TestProcReaders reads this process's RSS and CPU and the machine's CPU.
func TestProcReaders(t *testing.T) {
	st, err := readProcStatus(os.Getpid())
	if err != nil || st.rss <= 0 || st.hwm < st.rss {
		t.Fatalf("status %+v, %v", st, err)
	}
	if _, ppid, err := processTicks(os.Getpid()); err != nil || ppid != os.Getppid() {
		t.Fatalf("ppid %d (want %d), %v", ppid, os.Getppid(), err)
	}
	a, err := sampleCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); { // burn some CPU
	}
	b, err := sampleCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u := b.since(a); u.broker < 0 || u.other < 0 || u.loadgen != 0 {
		t.Fatalf("use %+v", u)
	}
	if peak := sampleRSS(os.Getpid(), time.Millisecond).Stop(); peak < st.rss/2 {
		t.Fatalf("peak RSS %d, status said %d", peak, st.rss)
	}
}

// TestMedianRatios takes the median of each ratio over the rounds.
func TestMedianRatios(t *testing.T) {
	mk := func(flRate, kfRate float64) round {
		res := func(rate float64) targetResult {
			lat := []time.Duration{time.Millisecond}
			return targetResult{peakRSS: 1, load: loadResult{records: int(rate), produceTime: time.Second, consumeTime: time.Second, latencies: lat}}
		}
		return round{flotilla: res(flRate), kfake: res(kfRate)}
	}
	got := medianRatios([]round{mk(1, 4), mk(3, 4), mk(2, 4)})
	if got.produce != 0.5 || got.consume != 0.5 || got.p50 != 1 || got.rss != 1 {
		t.Fatalf("medians %+v", got)
	}
	if got := medianRatios([]round{mk(1, 4), mk(3, 4)}); got.produce != 0.5 {
		t.Fatalf("even median %v", got.produce)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 20; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*100*time.Millisecond)
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{
		{0, 100 * time.Millisecond},
		{50, time.Second},
		{90, 1800 * time.Millisecond},
		{99, 2 * time.Second},
		{100, 2 * time.Second},
	}
	for _, tt := range tests {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("percentile(1..20 × 100 ms, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got, want := spread(ds), "median 1000 ms, p99 2000 ms, max 2000 ms"; got != want {
		t.Errorf("spread = %q, want %q", got, want)
	}
}
