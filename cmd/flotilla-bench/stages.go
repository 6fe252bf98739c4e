package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// timer is one Prometheus histogram's running sum and count.
type timer struct {
	sum   float64 // seconds
	count float64
}

// mean is the average observation, or 0 with none.
func (t timer) mean() time.Duration {
	if t.count == 0 {
		return 0
	}
	return time.Duration(t.sum / t.count * float64(time.Second))
}

// stages are a broker's own timers of the produce path, read from its
// /metrics: the whole produce request, the batch from proposal to durable
// and to applied on its leader, a partition's raft actor writing a Ready's
// batches (keep), a Persist in the storage actor, a WAL fsync, and a sync
// of a partition's segments. The difference of two readings covers what
// happened between them.
type stages struct {
	request, durable, applied, keep, persist, fsync, segSync timer
}

// stageSeries maps each timer to the name of its histogram series, without
// the _sum/_count suffix.
var stageSeries = []struct {
	series string
	timer  func(*stages) *timer
}{
	{`flotilla_kafka_request_duration_seconds{api="Produce"}`, func(s *stages) *timer { return &s.request }},
	{`flotilla_partition_produce_seconds{stage="durable"}`, func(s *stages) *timer { return &s.durable }},
	{`flotilla_partition_produce_seconds{stage="applied"}`, func(s *stages) *timer { return &s.applied }},
	{`flotilla_partition_keep_seconds`, func(s *stages) *timer { return &s.keep }},
	{`flotilla_wal_persist_seconds`, func(s *stages) *timer { return &s.persist }},
	{`flotilla_wal_fsync_seconds`, func(s *stages) *timer { return &s.fsync }},
	{`flotilla_partition_sync_seconds`, func(s *stages) *timer { return &s.segSync }},
}

// parseStages reads the stage timers from a Prometheus text exposition. A
// series that is missing reads as zero.
func parseStages(r io.Reader) (stages, error) {
	var s stages
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		for _, st := range stageSeries {
			base, labels, _ := strings.Cut(st.series, "{")
			if labels != "" {
				labels = "{" + labels
			}
			var field *float64
			switch name {
			case base + "_sum" + labels:
				field = &st.timer(&s).sum
			case base + "_count" + labels:
				field = &st.timer(&s).count
			default:
				continue
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return s, fmt.Errorf("metric %s: %w", name, err)
			}
			*field = v
		}
	}
	return s, sc.Err()
}

// scrapeStages reads the stage timers of the broker whose debug endpoint is
// at debug.
func scrapeStages(debug string) (stages, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + debug + "/metrics")
	if err != nil {
		return stages{}, fmt.Errorf("stage timers: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return stages{}, fmt.Errorf("stage timers: GET /metrics: %s", resp.Status)
	}
	return parseStages(resp.Body)
}

// since is what the timers recorded between reading earlier and reading s.
func (s stages) since(earlier stages) stages {
	d := s
	for _, st := range stageSeries {
		t, e := st.timer(&d), st.timer(&earlier)
		t.sum -= e.sum
		t.count -= e.count
	}
	return d
}

// stageHeader is the header of a stage table whose first column is named
// first, and stageRow one of its rows: the means of s, and the fsyncs and
// segment syncs per second over secs.
func stageHeader(first string) string {
	return "| " + first + " | request | batch durable | batch applied | keep | WAL persist | WAL fsync | fsyncs/s | segment sync | syncs/s |\n" +
		"|---|---|---|---|---|---|---|---|---|---|"
}

func stageRow(label string, s stages, secs float64) string {
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %.0f | %s | %.0f |", label, usec(s.request.mean()), usec(s.durable.mean()),
		usec(s.applied.mean()), usec(s.keep.mean()), usec(s.persist.mean()), usec(s.fsync.mean()), s.fsync.count/secs,
		usec(s.segSync.mean()), s.segSync.count/secs)
}

// scrapeAllStages reads the stage timers of every broker of debugs.
func scrapeAllStages(debugs []string) ([]stages, error) {
	all := make([]stages, len(debugs))
	for i, d := range debugs {
		st, err := scrapeStages(d)
		if err != nil {
			return nil, err
		}
		all[i] = st
	}
	return all, nil
}
