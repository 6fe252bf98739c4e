package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseStages(t *testing.T) {
	const text = `# HELP flotilla_wal_fsync_seconds Latency of WAL fsyncs.
# TYPE flotilla_wal_fsync_seconds histogram
flotilla_wal_fsync_seconds_bucket{le="0.001"} 3
flotilla_wal_fsync_seconds_sum 0.012
flotilla_wal_fsync_seconds_count 4
flotilla_wal_persist_seconds_sum 0.05
flotilla_wal_persist_seconds_count 10
flotilla_partition_produce_seconds_sum{stage="applied"} 0.3
flotilla_partition_produce_seconds_count{stage="applied"} 20
flotilla_partition_produce_seconds_sum{stage="durable"} 0.2
flotilla_partition_produce_seconds_count{stage="durable"} 20
flotilla_partition_sync_seconds_sum 0.016
flotilla_partition_sync_seconds_count 8
flotilla_partition_keep_seconds_sum 0.006
flotilla_partition_keep_seconds_count 12
flotilla_kafka_request_duration_seconds_sum{api="Fetch"} 9
flotilla_kafka_request_duration_seconds_count{api="Fetch"} 1
flotilla_kafka_request_duration_seconds_sum{api="Produce"} 0.1
flotilla_kafka_request_duration_seconds_count{api="Produce"} 5
`
	s, err := parseStages(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		got  timer
		mean time.Duration
	}{
		{"request", s.request, 20 * time.Millisecond},
		{"durable", s.durable, 10 * time.Millisecond},
		{"applied", s.applied, 15 * time.Millisecond},
		{"keep", s.keep, 500 * time.Microsecond},
		{"persist", s.persist, 5 * time.Millisecond},
		{"fsync", s.fsync, 3 * time.Millisecond},
		{"segment sync", s.segSync, 2 * time.Millisecond},
	} {
		if d := tc.got.mean() - tc.mean; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("%s: mean %v, want %v", tc.name, tc.got.mean(), tc.mean)
		}
	}
	d := s.since(stages{fsync: timer{sum: 0.004, count: 2}})
	if d.fsync.count != 2 || d.fsync.mean() != 4*time.Millisecond || d.request != s.request {
		t.Errorf("since: %+v", d)
	}
	if _, err := parseStages(strings.NewReader("flotilla_wal_fsync_seconds_sum x\n")); err == nil {
		t.Error("a bad value parsed")
	}
	if empty, err := parseStages(strings.NewReader("")); err != nil || empty.request.mean() != 0 {
		t.Errorf("empty exposition: %+v, %v", empty, err)
	}
}
