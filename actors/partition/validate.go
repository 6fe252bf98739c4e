package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrInvalidTimestamp reports a batch with a record whose timestamp its
// topic does not accept: on a CreateTime topic one out of
// message.timestamp.before.max.ms / after.max.ms of the leader's clock,
// or a timestamp type of LogAppendTime, which only the broker sets. Kafka
// answers it with INVALID_TIMESTAMP.
var ErrInvalidTimestamp = errors.New("invalid record timestamp")

// ErrUnknownCompression reports a batch whose compression codec is none
// of the five Kafka defines (the attributes' low three bits are 5 to 7).
// Kafka's CompressionType.forId throws on it, so its produce request gets
// UNKNOWN_SERVER_ERROR.
var ErrUnknownCompression = errors.New("unknown compression codec")

// RecordError names one record of a refused batch, by its position in the
// batch, and says why: one entry of ProduceResponse's RecordErrors
// (KIP-467).
type RecordError struct {
	Index   int32
	Message string
}

// RecordsError reports a batch refused for some of its records, which
// Records name: Kafka's RecordValidationException. It wraps Kind
// (ErrInvalidTimestamp).
type RecordsError struct {
	Kind    error
	Records []RecordError
}

func (e *RecordsError) Error() string {
	return fmt.Sprintf("%v: %d records of the batch refused, the first, record %d: %s",
		e.Kind, len(e.Records), e.Records[0].Index, e.Records[0].Message)
}

// Unwrap returns Kind.
func (e *RecordsError) Unwrap() error { return e.Kind }

// validateClient applies the checks Kafka makes on a client's batch on top
// of ValidateProduced: its base offset must be 0, as
// UnifiedLog.analyzeAndValidateRecords requires of a client's batch (the
// broker assigns offsets), and its compression codec one Kafka knows
// (ErrUnknownCompression).
func validateClient(h BatchHeader) error {
	if err := ValidateProduced(h); err != nil {
		return err
	}
	if h.BaseOffset != 0 {
		return fmt.Errorf("%w: base offset %d, a client's batch has 0", ErrInvalidRecord, h.BaseOffset)
	}
	if h.Compression() > CompressionZstd {
		return fmt.Errorf("%w: %d", ErrUnknownCompression, h.Compression())
	}
	return nil
}

// timestampRule is what a topic accepts of the record timestamps of one
// produce: on a CreateTime topic the create times from lo to hi, its
// message.timestamp.before.max.ms and after.max.ms around the leader's
// clock; on a LogAppendTime topic any, since the broker replaces them.
type timestampRule struct {
	logAppendTime bool
	lo, hi        int64
	// now, before and after are what lo and hi come from, for messages.
	now, before, after int64
}

// timestampRuleOf returns the rule of a topic with settings s at now (Unix
// milliseconds).
func timestampRuleOf(s Settings, now int64) timestampRule {
	before, after := max(s.TimestampBeforeMaxMs, 0), max(s.TimestampAfterMaxMs, 0)
	r := timestampRule{logAppendTime: s.LogAppendTime, lo: math.MinInt64, hi: math.MaxInt64, now: now, before: before, after: after}
	// Saturating: the default before.max.ms is math.MaxInt64.
	if now >= math.MinInt64+before {
		r.lo = now - before
	}
	if now <= math.MaxInt64-after {
		r.hi = now + after
	}
	return r
}

// refuses reports whether the rule refuses a record of a batch with header
// h that Kafka reads with timestamp ts (LogValidator.validateTimestamp): on
// a CreateTime topic a timestamp out of range (a record without one, -1,
// is not checked), and otherwise a timestamp type of LogAppendTime, which
// a producer may not set.
func (r timestampRule) refuses(h BatchHeader, ts int64) bool {
	if !r.logAppendTime && ts != noTimestamp {
		return ts < r.lo || ts > r.hi
	}
	return h.IsLogAppendTime()
}

// why is the message of a record that the rule refuses.
func (r timestampRule) why(h BatchHeader, ts int64) string {
	switch {
	case r.logAppendTime || ts == noTimestamp:
		return "the batch's timestamp type is LogAppendTime, which only the broker sets"
	case ts > r.hi:
		return fmt.Sprintf("timestamp %d is %d ms after the broker's clock (%d), more than message.timestamp.after.max.ms=%d", ts, ts-r.now, r.now, r.after)
	}
	return fmt.Sprintf("timestamp %d is %d ms before the broker's clock (%d), more than message.timestamp.before.max.ms=%d", ts, r.now-ts, r.now, r.before)
}

// recordTimestamp is the timestamp Kafka reads for a record of a batch with
// header h whose own is ts: in a batch typed LogAppendTime every record
// has the batch's maxTimestamp.
func recordTimestamp(h BatchHeader, ts int64) int64 {
	if h.IsLogAppendTime() {
		return h.MaxTimestamp
	}
	return ts
}

// validateRecords checks the records of the client batch b, whose header h
// passed validateClient, the way Kafka's LogValidator does, with the
// timestamp rule of its topic, and returns the maxTimestamp a CreateTime
// topic stores it with.
//
// The records of an uncompressed batch are walked once. Each must decode
// whole (plainRecord); there must be RecordCount of them, with offset
// deltas 0, 1, 2... in order, and no byte after the last (errors wrapping
// ErrInvalidRecord); and the timestamp of each must pass the rule (a
// *RecordsError wrapping ErrInvalidTimestamp names every record that does
// not). maxTs is the largest of their timestamps.
//
// The records of a compressed batch are not read here: its count is
// checked before, by countCompressed. Its header's baseTimestamp (its
// first record's) and maxTimestamp (its latest) are checked in place of
// every record's, so a record older than the first of a compressed batch
// escapes message.timestamp.before.max.ms. maxTs is the header's
// maxTimestamp.
func validateRecords(b []byte, h BatchHeader, rule timestampRule) (maxTs int64, err error) {
	var refused []RecordError
	if h.Compression() != CompressionNone {
		switch {
		case h.IsLogAppendTime() && rule.refuses(h, h.MaxTimestamp):
			// Every record's timestamp is the header's. Kafka names each
			// record it decompressed; the records here are not kept (the
			// count check, if it ran, only counted them), and
			// naming as many records as the header claims could take
			// millions of entries, so the batch is refused as a whole.
			return 0, fmt.Errorf("%w: the compressed batch's %d records: %s", ErrInvalidTimestamp, h.RecordCount, rule.why(h, h.MaxTimestamp))
		case h.IsLogAppendTime():
		case rule.refuses(h, h.BaseTimestamp):
			return 0, fmt.Errorf("%w: the compressed batch's first record: %s", ErrInvalidTimestamp, rule.why(h, h.BaseTimestamp))
		case rule.refuses(h, h.MaxTimestamp):
			return 0, fmt.Errorf("%w: the compressed batch's maxTimestamp: %s", ErrInvalidTimestamp, rule.why(h, h.MaxTimestamp))
		}
		return h.MaxTimestamp, nil
	}

	recs := b[BatchHeaderSize:]
	maxTs = noTimestamp
	p := 0
	for i := range h.RecordCount {
		tsDelta, offDelta, next, err := plainRecord(recs, p)
		if err != nil {
			return 0, fmt.Errorf("%w: record %d of %d: %v", ErrInvalidRecord, i, h.RecordCount, err)
		}
		if offDelta != i {
			return 0, fmt.Errorf("%w: record %d has offset delta %d", ErrInvalidRecord, i, offDelta)
		}
		p = next
		ts := h.BaseTimestamp + tsDelta
		maxTs = max(maxTs, ts)
		if kts := recordTimestamp(h, ts); rule.refuses(h, kts) {
			refused = append(refused, RecordError{Index: i, Message: rule.why(h, kts)})
		}
	}
	if p != len(recs) {
		return 0, fmt.Errorf("%w: %d bytes after the last of %d records", ErrInvalidRecord, len(recs)-p, h.RecordCount)
	}
	if refused != nil {
		return 0, &RecordsError{Kind: ErrInvalidTimestamp, Records: refused}
	}
	return maxTs, nil
}

// CountCheck is the verdict of CountRecords on the records of one
// partition of a produce request, which the partition answers in its turn
// (Produce.Count). The zero CountCheck is no verdict: the partition then
// checks the count itself.
type CountCheck struct {
	done bool
	err  error
}

// CountRecords makes the one check of a produce's records that can take
// long, before the Produce reaches the partition: a compressed batch that
// claims more records than it has bytes is decompressed and its records
// counted (countCompressed), up to 64 MiB of them. A few hundred
// milliseconds of that on a partition's raft actor hold its heartbeats
// past the followers' election timeout, so the connection that read the
// request runs it, as Kafka runs LogValidator on the request handler
// thread that serves the request, and the partition only answers the
// verdict, where its own checks would have made it: a batch it refuses
// for something it checks first (its leadership, a bad CRC,
// max.message.bytes) gets that answer, as from Kafka.
//
// A batch not to be read is judged from its header's bytes as they are,
// without the CRC the partition checks: a batch the partition reads past
// its header is the same bytes.
func CountRecords(records []byte) CountCheck {
	if !mustCount(records) {
		return CountCheck{done: true}
	}
	batches, err := SplitBatches(records)
	if err != nil || len(batches) != 1 {
		return CountCheck{} // refused before its count matters
	}
	h, err := parseBatchHeader(batches[0])
	if err == nil {
		err = validateClient(h)
	}
	if err != nil {
		return CountCheck{}
	}
	return CountCheck{done: true, err: countCompressed(batches[0], h)}
}

// mustCount reports whether the records of a produce, if they are one
// client batch, are compressed and claim more records than they have
// bytes after the header, read from where the header keeps them.
func mustCount(records []byte) bool {
	if len(records) < BatchHeaderSize {
		return false
	}
	h := BatchHeader{
		Attributes:  int16(binary.BigEndian.Uint16(records[attributesPos:])),
		RecordCount: int32(binary.BigEndian.Uint32(records[recordCountPos:])),
	}
	return claimsMoreThanBytes(h, len(records))
}

// claimsMoreThanBytes reports whether the batch of size bytes whose header
// is h is compressed and claims more records than it has bytes after its
// header: the batches whose count is checked.
func claimsMoreThanBytes(h BatchHeader, size int) bool {
	return h.Compression() != CompressionNone && int64(h.RecordCount) > int64(size-BatchHeaderSize)
}

// countCompressed checks the count of the client batch b, whose header h
// passed validateClient, when it is compressed and claims more records
// than it has compressed bytes (checkCompressedCount). Kafka decompresses
// every batch; reading only those keeps produce cheap: a batch of records
// that carry data holds fewer records than bytes, and one that claims at
// most a record per byte moves the log end by at most one offset per byte
// it sent.
func countCompressed(b []byte, h BatchHeader) error {
	if !claimsMoreThanBytes(h, len(b)) {
		return nil
	}
	return checkCompressedCount(b, h, maxWalkBytes)
}

// minRecordBytes is the size of the smallest record: its length, the
// attributes, the timestamp and offset deltas, the key and value lengths
// (null) and the header count, one byte each.
const minRecordBytes = 7

// checkCompressedCount checks that the compressed records of the client
// batch b, whose header h passed ValidateProduced (so that its
// lastOffsetDelta is RecordCount-1), are the RecordCount records h claims,
// as Kafka's LogValidator reads them through DefaultRecordBatch's
// streaming iterator: each decodes whole, and the stream ends after the
// last ("Incorrect declared batch size, premature EOF reached" or
// "records still remaining", InvalidRecordException, answered
// INVALID_RECORD). Their offset deltas must be 0, 1, 2..., which Kafka
// would instead rewrite (the batch is stored as the client sent it here).
// It decompresses as a stream, at most limit bytes: a count that could not
// fit in limit, or records that go past it, are refused too. Errors wrap
// ErrInvalidRecord.
func checkCompressedCount(b []byte, h BatchHeader, limit int64) error {
	if int64(h.RecordCount)*minRecordBytes > limit {
		return fmt.Errorf("%w: %d records claimed in %d compressed bytes, at least %d bytes decompressed, more than a batch is read for (%d)",
			ErrInvalidRecord, h.RecordCount, len(b)-BatchHeaderSize, int64(h.RecordCount)*minRecordBytes, limit)
	}
	r, err := openCompressed(b[BatchHeaderSize:], h.Compression(), limit)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	defer r.close()
	for i := range h.RecordCount {
		_, off, err := r.next()
		if err != nil {
			return fmt.Errorf("%w: record %d of the %d claimed: %w", ErrInvalidRecord, i, h.RecordCount, err)
		}
		if off != int64(i) {
			return fmt.Errorf("%w: record %d has offset delta %d", ErrInvalidRecord, i, off)
		}
	}
	switch end, err := r.atEnd(); {
	case err != nil:
		return fmt.Errorf("%w: after the %d records claimed: %w", ErrInvalidRecord, h.RecordCount, err)
	case !end:
		return fmt.Errorf("%w: more than the %d records claimed", ErrInvalidRecord, h.RecordCount)
	}
	return nil
}
