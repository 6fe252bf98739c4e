package partition

import (
	"testing"
)

func TestTimestampQueries(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	opts.SegmentBytes = 180 // about two batches per segment
	l := mustOpen(t, opts)
	defer l.Close()
	var m model
	logAppendTime := int64(300)
	for _, s := range []spec{
		{records: 3, ts: []int64{100, 90, 105}},                                 // offsets 0-2
		{records: 2, ts: []int64{200, 150}, attrs: 1},                           // 3-4, gzip: not decoded
		{records: 3, ts: []int64{1, 2, 3}, attrs: 8, maxTs: ptr(logAppendTime)}, // 5-7, log-append time
		{records: 2, ts: []int64{250, 260}},                                     // 8-9
		{records: 2, ts: []int64{300, 40}},                                      // 10-11: ties with the log-append-time batch
	} {
		m.add(t, l, mkBatch(t, s), 0, s.ts)
	}
	if n := len(l.view.Load().sealed); n < 2 {
		t.Fatalf("%d sealed segments: the test should span several", n)
	}
	type q struct {
		ts    int64
		want  TimestampOffset
		found bool
	}
	check := func(qs []q) {
		t.Helper()
		for _, c := range qs {
			got, found, err := l.OffsetForTimestamp(c.ts)
			if err != nil || got != c.want || found != c.found {
				t.Errorf("start %d: OffsetForTimestamp(%d) = %+v %v %v, want %+v %v", l.LogStart(), c.ts, got, found, err, c.want, c.found)
			}
		}
	}
	checkMax := func(want TimestampOffset) {
		t.Helper()
		got, found, err := l.MaxTimestamp()
		if err != nil || !found || got != want {
			t.Errorf("start %d: MaxTimestamp = %+v %v %v, want %+v", l.LogStart(), got, found, err, want)
		}
	}
	check([]q{
		{0, TimestampOffset{100, 0}, true},
		{100, TimestampOffset{100, 0}, true},
		{101, TimestampOffset{105, 2}, true}, // the record at 1 (90) is older
		{106, TimestampOffset{200, 3}, true}, // compressed: the batch, with its maxTimestamp
		{201, TimestampOffset{300, 5}, true}, // log-append time: its first record
		{255, TimestampOffset{300, 5}, true}, // the first batch that reaches it, not the closest
		{301, TimestampOffset{}, false},
	})
	checkMax(TimestampOffset{300, 5}) // the first of two batches with 300

	if err := l.AdvanceLogStart(1); err != nil {
		t.Fatal(err)
	}
	check([]q{
		{0, TimestampOffset{90, 1}, true},
		{95, TimestampOffset{105, 2}, true},
	})
	if err := l.AdvanceLogStart(6); err != nil { // inside the log-append-time batch
		t.Fatal(err)
	}
	check([]q{
		{0, TimestampOffset{300, 6}, true},
		{255, TimestampOffset{300, 6}, true},
	})
	checkMax(TimestampOffset{300, 6})
	if err := l.AdvanceLogStart(11); err != nil { // past the record with 300 in the last batch
		t.Fatal(err)
	}
	check([]q{
		{0, TimestampOffset{40, 11}, true},
		{41, TimestampOffset{}, false},
	})
	checkMax(TimestampOffset{40, 11})
}

func TestMaxTimestampStartInsideSegment(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	opts.SegmentBytes = 1 << 20 // one segment
	l := mustOpen(t, opts)
	defer l.Close()
	var m model
	for _, ts := range [][]int64{{500, 10}, {100, 50}, {200}, {150, 200}} {
		m.add(t, l, mkBatch(t, spec{records: len(ts), ts: ts}), 0, ts)
	}
	for _, tc := range []struct {
		start int64
		want  TimestampOffset
	}{
		{0, TimestampOffset{500, 0}},
		{1, TimestampOffset{200, 4}}, // the 500 is below the start; the first 200 wins the tie
		{2, TimestampOffset{200, 4}},
		{5, TimestampOffset{200, 6}},
		{6, TimestampOffset{200, 6}},
	} {
		if err := l.AdvanceLogStart(tc.start); err != nil {
			t.Fatal(err)
		}
		got, found, err := l.MaxTimestamp()
		if err != nil || !found || got != tc.want {
			t.Errorf("start %d: MaxTimestamp = %+v %v %v, want %+v", tc.start, got, found, err, tc.want)
		}
		checkTimestamps(t, l, &m)
	}
}
