package partition

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/flotilla/flotilla/raftactor"
)

// deleteHighWatermark is DeleteRecords' offset for "up to the high
// watermark" (Kafka's DeleteRecordsRequest.HIGH_WATERMARK).
const deleteHighWatermark = -1

// deleteWaiter is a DeleteRecords whose log-start move this leader
// proposed and has not yet applied.
type deleteWaiter struct {
	ref      uint64
	offset   int64
	deadline uint64
	replyTo  *actor.PID
}

// deleteRecords serves DeleteRecords as Kafka's
// Partition.deleteRecordsOnLeader does: offset -1 is the high watermark,
// an offset below 0 or above the high watermark is OFFSET_OUT_OF_RANGE
// (UnifiedLog.maybeIncrementLogStartOffset), and the log start never moves
// back. The move is a raft entry like retention's (enforceRetention), so
// that every replica applies it, and it survives restarts and snapshots.
func (m *Machine) deleteRecords(h *raftactor.Handle, ctx actor.Context, r *DeleteRecords) {
	answer := func(low int64, err error) {
		ctx.Send(r.ReplyTo, &DeleteRecordsDone{Ref: r.Ref, LowWatermark: low, Err: err})
	}
	if !m.ready || !h.IsLeader() || h.Term() != m.readyTerm {
		answer(-1, kerr.NotLeaderForPartition)
		return
	}
	hw, start := m.log.LogEnd(), m.log.LogStart()
	offset := r.Offset
	if offset == deleteHighWatermark {
		offset = hw
	}
	switch {
	case offset < 0 || offset > hw:
		answer(-1, fmt.Errorf("%w: offset %d, the high watermark is %d", kerr.OffsetOutOfRange, r.Offset, hw))
		return
	case offset <= start:
		answer(start, nil)
		return
	}
	boundary, ok := m.boundaryAfter(offset)
	if err := h.ProposeRaw([][]byte{logStartEntry(offset, boundary, ok)}); err != nil {
		answer(-1, fmt.Errorf("%w: %v", kerr.NotLeaderForPartition, err))
		return
	}
	m.deletes = append(m.deletes, deleteWaiter{ref: r.Ref, offset: offset, deadline: m.ticks + r.TimeoutTicks, replyTo: r.ReplyTo})
}

// settleDeletes answers the DeleteRecords whose log start has been
// reached (by their own move or a later one, retention's included), those
// whose time is up, and, when all is set (the leadership was lost), every
// one: a move proposed may or may not commit, and the client retries.
func (m *Machine) settleDeletes(ctx actor.Context, all bool) {
	if len(m.deletes) == 0 {
		return
	}
	start := m.log.LogStart()
	kept := m.deletes[:0]
	for _, d := range m.deletes {
		switch {
		case start >= d.offset:
			ctx.Send(d.replyTo, &DeleteRecordsDone{Ref: d.ref, LowWatermark: start})
		case all:
			ctx.Send(d.replyTo, &DeleteRecordsDone{Ref: d.ref, LowWatermark: -1, Err: kerr.NotLeaderForPartition})
		case m.ticks >= d.deadline:
			ctx.Send(d.replyTo, &DeleteRecordsDone{Ref: d.ref, LowWatermark: -1, Err: kerr.RequestTimedOut})
		default:
			kept = append(kept, d)
		}
	}
	clear(m.deletes[len(kept):])
	m.deletes = kept
}
