package partition

// RetentionPoint returns the log start that retention would choose now:
// the base offset of the first segment to keep. It is a pure decision; the
// leader proposes the result and every replica applies it with
// AdvanceLogStart, so that all of them agree.
//
// As in Kafka, only whole segments go, oldest first, and never the active
// one, nor one that reaches the high watermark (uncommitted batches are not
// retention's to judge):
//
//   - by time, when retentionMs >= 0: while a segment's largest timestamp is
//     more than retentionMs before nowMs (a segment without timestamps
//     counts by its file's modification time, as Kafka does);
//   - by size, when retentionBytes >= 0: while dropping the oldest segment
//     still leaves at least retentionBytes below the high watermark.
//
// The result is the furthest of the two, and LogStart() if neither deletes
// anything. Safe for concurrent use.
func (l *Log) RetentionPoint(nowMs, retentionMs, retentionBytes int64) int64 {
	v := l.view.Load()
	if v.closed {
		return v.start
	}
	point := v.start
	if retentionMs >= 0 {
		for i := range v.sealed {
			sv := &v.sealed[i]
			if nowMs-sv.largestTimestamp() <= retentionMs {
				break
			}
			point = max(point, v.segment(i+1).seg.base)
		}
	}
	if retentionBytes >= 0 {
		committed := v.active.size
		for i := range v.sealed {
			committed += v.sealed[i].size
		}
		excess := committed - retentionBytes
		for i := range v.sealed {
			if excess-v.sealed[i].size < 0 {
				break
			}
			excess -= v.sealed[i].size
			point = max(point, v.segment(i+1).seg.base)
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
