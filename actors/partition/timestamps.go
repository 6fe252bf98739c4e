package partition

import (
	"fmt"
)

// TimestampOffset is a record's timestamp and offset, as ListOffsets
// answers them.
type TimestampOffset struct {
	Timestamp int64
	Offset    int64
}

// OffsetForTimestamp finds the first record at or above the log start whose
// timestamp is at least ts (ListOffsets with a timestamp). found is false if
// there is none; Kafka then answers offset -1.
//
// It takes the first segment whose largest timestamp reaches ts, starts at
// the time index entry below ts, and reads batches until one's maxTimestamp
// reaches ts. With create-time timestamps it returns the exact record, as
// Kafka does, decompressing a compressed batch to find it. In a
// log-append-time batch every record has the batch's timestamp, so the
// answer is its first record. Safe for concurrent use.
func (l *Log) OffsetForTimestamp(ts int64) (TimestampOffset, bool, error) {
	type result struct {
		to    TimestampOffset
		found bool
	}
	r, err := readView(l, func(v *view) (result, error) {
		to, found, err := v.offsetForTimestamp(ts)
		return result{to, found}, err
	})
	return r.to, r.found, err
}

func (v *view) offsetForTimestamp(ts int64) (TimestampOffset, bool, error) {
	if v.closed {
		return TimestampOffset{}, false, ErrClosed
	}
	if v.start == v.end {
		return TimestampOffset{}, false, nil
	}
	fi := v.segmentIndex(v.start)
	first := v.segment(fi)
	startK := first.find(v.start)
	for i := fi; i < v.numSegments(); i++ {
		sv := v.segment(i)
		if len(sv.dense) == 0 || sv.maxTs < ts {
			continue
		}
		k := 0
		if j := timeIndexFloor(sv.times, ts); j >= 0 {
			k = batchContaining(sv.dense, sv.times[j].rel)
		}
		if sv == first {
			k = max(k, startK)
		}
		sc := newBatchScanner(sv.seg.log, sv.seg.name(), int64(sv.dense[k].pos), sv.size)
		for {
			_, b, reason, err := sc.next()
			if err != nil {
				return TimestampOffset{}, false, err
			}
			if b == nil {
				if reason != "" {
					return TimestampOffset{}, false, fmt.Errorf("%w: %s: %s", ErrCorruptSegment, sv.seg.name(), reason)
				}
				break
			}
			h := decodeHeader(b)
			if h.MaxTimestamp < ts {
				continue
			}
			if to, ok := findRecord(b, h, v.start, func(t int64) bool { return t >= ts }); ok {
				return to, true, nil
			}
		}
	}
	return TimestampOffset{}, false, nil
}

// MaxTimestamp returns the largest timestamp of the records at or above the
// log start and the offset of the first record that has it (ListOffsets
// timestamp -3, KIP-734). found is false if the log is empty or no batch
// has a timestamp.
//
// The segment comes from the per-segment maximum kept in memory; the record
// from reading that one batch (decompressed if need be, as Kafka does); for
// a log-append-time batch it is exactly its first record. When the log start lies inside the first segment, only its
// records from the log start on count: the batch that holds the log start
// is read, and the segment's later batches too if its maximum is not among
// them. Safe for concurrent use.
func (l *Log) MaxTimestamp() (TimestampOffset, bool, error) {
	type result struct {
		to    TimestampOffset
		found bool
	}
	r, err := readView(l, func(v *view) (result, error) {
		to, found, err := v.maxTimestamp()
		return result{to, found}, err
	})
	return r.to, r.found, err
}

func (v *view) maxTimestamp() (TimestampOffset, bool, error) {
	if v.closed {
		return TimestampOffset{}, false, ErrClosed
	}
	if v.start == v.end {
		return TimestampOffset{}, false, nil
	}
	var (
		best   *segView
		bestK  int
		bestTs int64 = noTimestamp
	)
	fi := v.segmentIndex(v.start)
	first := v.segment(fi)
	startK := first.find(v.start)
	for i := fi; i < v.numSegments(); i++ {
		sv := v.segment(i)
		if len(sv.dense) == 0 || sv.maxTs <= bestTs {
			continue
		}
		k, ts := batchContaining(sv.dense, sv.maxTsRel), sv.maxTs
		if sv == first && v.start > sv.seg.base {
			var err error
			if k, ts, err = sv.maxFromOffset(v.start, startK); err != nil {
				return TimestampOffset{}, false, err
			}
			if ts <= bestTs {
				continue
			}
		}
		best, bestK, bestTs = sv, k, ts
	}
	if best == nil {
		return TimestampOffset{}, false, nil
	}
	b, err := best.readBatches(bestK, bestK+1, nil)
	if err != nil {
		return TimestampOffset{}, false, err
	}
	h := decodeHeader(b)
	if to, ok := findRecord(b, h, v.start, func(t int64) bool { return t == bestTs }); ok {
		return to, true, nil
	}
	// The record with the batch's maxTimestamp lies below the log start.
	return TimestampOffset{Timestamp: bestTs, Offset: max(h.BaseOffset, v.start)}, true, nil
}

// maxFromOffset returns the first batch with the largest timestamp among
// the records at or above offset, which lies in batch k, and that timestamp.
// The batch k counts by its records at or above offset (by its maxTimestamp
// for log-append-time); the later batches by their
// maxTimestamp, which the segment's maximum gives without reading when it
// lies after k.
func (sv *segView) maxFromOffset(offset int64, k int) (int, int64, error) {
	b, err := sv.readBatches(k, k+1, nil)
	if err != nil {
		return 0, 0, err
	}
	h := decodeHeader(b)
	best, bestTs := -1, int64(noTimestamp)
	ts := h.MaxTimestamp
	if offset > h.BaseOffset && !h.IsLogAppendTime() {
		ts = noTimestamp
		err := eachRecord(b, h, func(o, t int64) bool {
			if o >= offset {
				ts = max(ts, t)
			}
			return true
		})
		if err != nil {
			ts = h.MaxTimestamp
		}
	}
	if ts > bestTs {
		best, bestTs = k, ts
	}
	if m := batchContaining(sv.dense, sv.maxTsRel); m > k {
		if sv.maxTs > bestTs {
			best, bestTs = m, sv.maxTs
		}
		return best, bestTs, nil
	}
	if k+1 == len(sv.dense) {
		return best, bestTs, nil
	}
	sc := newBatchScanner(sv.seg.log, sv.seg.name(), int64(sv.dense[k+1].pos), sv.size)
	for j := k + 1; j < len(sv.dense); j++ {
		_, b, reason, err := sc.next()
		if err != nil {
			return 0, 0, err
		}
		if b == nil {
			return 0, 0, fmt.Errorf("%w: %s: %s", ErrCorruptSegment, sv.seg.name(), reason)
		}
		if ts := decodeHeader(b).MaxTimestamp; ts > bestTs {
			best, bestTs = j, ts
		}
	}
	return best, bestTs, nil
}

// findRecord returns the first record of the batch b at or above offset
// minOffset whose timestamp satisfies match, decompressing the records when
// the batch is compressed, as Kafka does (as a stream, up to maxWalkBytes). In a log-append-time batch every
// record has the batch's maxTimestamp, so it answers for the batch as a
// whole. ok is false if no record matches.
func findRecord(b []byte, h BatchHeader, minOffset int64, match func(int64) bool) (TimestampOffset, bool) {
	whole := TimestampOffset{Timestamp: h.MaxTimestamp, Offset: max(h.BaseOffset, minOffset)}
	if h.IsLogAppendTime() {
		return whole, match(h.MaxTimestamp) && whole.Offset <= h.LastOffset()
	}
	var found TimestampOffset
	ok := false
	err := eachRecord(b, h, func(offset, ts int64) bool {
		if offset >= minOffset && match(ts) {
			found, ok = TimestampOffset{Timestamp: ts, Offset: offset}, true
			return false
		}
		return true
	})
	if err != nil {
		// Records that do not decode are the client's problem, and a
		// batch that decompresses past maxWalkBytes is not worth
		// reading through; neither is a reason to fail the lookup:
		// answer for the batch.
		return whole, match(h.MaxTimestamp) && whole.Offset <= h.LastOffset()
	}
	return found, ok
}
