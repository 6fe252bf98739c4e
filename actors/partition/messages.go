package partition

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/flotilla/flotilla/actors/controller"
)

// Produce asks a partition's leader to append the record batches of one
// produce request for this partition. The partition answers ReplyTo with
// ProduceDone: at once for an error or a duplicate of an applied batch,
// after the leader persisted the batch for acks=1, after it is committed
// and applied for acks=all (-1), and, when the topic's min.insync.replicas
// is above a majority of the replicas, once that many replicas match it.
// acks=0 is answered once proposed: the connection closes on an error, as
// Kafka's does, and says nothing otherwise.
type Produce struct {
	Ref          uint64 // echoed in ProduceDone
	Records      []byte // the request's records for this partition: one batch, which the leader stamps in place
	Acks         int16
	TimeoutTicks uint64 // how long an acks=1/all answer may take
	ReplyTo      *actor.PID
	// Count is CountRecords(Records), run by the sender so that the
	// partition's actor does not decompress; without it the partition
	// checks the count itself.
	Count CountCheck
}

// ProduceDone answers Produce. Err is a *kerr.Error, possibly wrapped.
type ProduceDone struct {
	Ref            uint64
	BaseOffset     int64
	LogAppendTime  int64 // -1 unless the topic uses LogAppendTime
	LogStartOffset int64
	Err            error
	// RecordErrors name the records the batch was refused for, with Err
	// (INVALID_TIMESTAMP): ProduceResponse's RecordErrors.
	RecordErrors []RecordError
}

// WatchFetch asks the partition to send FetchReady to ReplyTo once its high
// watermark passes Offset, its leadership changes, or TimeoutTicks pass:
// the long poll of a Fetch that found too little data. Fetches read the
// log themselves (View); this only wakes them.
type WatchFetch struct {
	Ref uint64
	// Index is the caller's own tag for the partition, echoed in FetchReady
	// so that a call watching several partitions knows which one woke it.
	Index        [2]int
	Offset       int64
	TimeoutTicks uint64
	ReplyTo      *actor.PID
}

// FetchReady answers WatchFetch.
type FetchReady struct {
	Ref   uint64
	Index [2]int // WatchFetch's
}

// SetAssignment gives a running replica (a partition's or an
// offsets-topic partition's) its partition's assignment as the controller
// changed it: Kafka's replicas, adding and removing during a
// reassignment. Its leader brings the raft group's membership there.
type SetAssignment struct {
	Replicas, Adding, Removing []uint64
}

// SetSettings gives a running partition replica its settings again after
// they changed: its topic's configs were altered (IncrementalAlterConfigs,
// AlterConfigs), or this broker's topic config defaults were reloaded
// (SetTopicDefaults).
type SetSettings struct {
	Settings Settings
}

// SetTopicDefaults gives the replica manager this broker's reloaded topic
// config defaults: replicas started from then on use them, and every
// running replica of a topic that does not set a changed key is sent its
// new settings.
type SetTopicDefaults struct {
	Defaults controller.TopicDefaults
}

// DeleteRecords asks a partition's leader to move its log start up to
// Offset (-1: the high watermark), Kafka's DeleteRecords. The leader
// proposes the move, and every replica applies it, as it applies
// retention's. The partition answers ReplyTo with DeleteRecordsDone once
// the move is committed and applied on the leader, at once for an error or
// an offset at or below the log start, and with REQUEST_TIMED_OUT after
// TimeoutTicks.
type DeleteRecords struct {
	Ref          uint64 // echoed in DeleteRecordsDone
	Offset       int64
	TimeoutTicks uint64
	ReplyTo      *actor.PID
}

// DeleteRecordsDone answers DeleteRecords. LowWatermark is the log start
// after the move (-1 with an error); Err is a *kerr.Error, possibly
// wrapped.
type DeleteRecordsDone struct {
	Ref          uint64
	LowWatermark int64
	Err          error
}
