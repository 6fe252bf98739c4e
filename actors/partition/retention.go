package partition

// RetentionPoint returns the log start that retention would choose now:
// the end of the last segment to delete. It is a pure decision; the leader
// proposes the result and every replica applies it with AdvanceLogStart,
// so that all of them agree.
//
// As in Kafka (UnifiedLog.deletableSegments), only whole segments go,
// oldest first, and none that reaches above the high watermark
// (uncommitted batches are not retention's to judge): the active segment
// goes too when it is not empty and everything written is committed, and
// the log start then reaches the high watermark (AdvanceLogStart rolls it
// so that its files can go). A segment goes
//
//   - by time, when retentionMs >= 0: while its largest timestamp is more
//     than retentionMs before nowMs (a segment without timestamps counts
//     by its file's modification time, as Kafka does);
//   - by size, when retentionBytes >= 0: while dropping it still leaves at
//     least retentionBytes below the high watermark.
//
// The result is the furthest of the two, and LogStart() if neither deletes
// anything. Safe for concurrent use.
func (l *Log) RetentionPoint(nowMs, retentionMs, retentionBytes int64) int64 {
	v := l.view.Load()
	if v.closed {
		return v.start
	}
	// The view's last segment is cut at the high watermark; it is the
	// whole active segment when nothing is written above the mark.
	n := len(v.sealed)
	if v.end == v.written && v.active.size > 0 {
		n++
	}
	end := func(i int) int64 {
		if i < len(v.sealed) {
			return v.segment(i + 1).seg.base
		}
		return v.end
	}
	point := v.start
	if retentionMs >= 0 {
		for i := range n {
			if nowMs-v.segment(i).largestTimestamp() <= retentionMs {
				break
			}
			point = max(point, end(i))
		}
	}
	if retentionBytes >= 0 {
		committed := v.active.size
		for i := range v.sealed {
			committed += v.sealed[i].size
		}
		excess := committed - retentionBytes
		for i := range n {
			size := v.segment(i).size
			if excess-size < 0 {
				break
			}
			excess -= size
			point = max(point, end(i))
		}
	}
	return point
}

// largestTimestamp is the segment's largest timestamp, or, when none of its
// batches has one, its file's modification time (Kafka's
// LogSegment.largestTimestamp).
func (sv *segView) largestTimestamp() int64 {
	if sv.maxTs != noTimestamp {
		return sv.maxTs
	}
	info, err := sv.seg.log.Stat()
	if err != nil {
		// A segment being deleted: it is going anyway.
		return sv.maxTs
	}
	return info.ModTime().UnixMilli()
}
