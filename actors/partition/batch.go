package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Layout of a record batch, magic 2. Every field is big-endian. The CRC
// covers the bytes from attributesPos to the end of the batch, so the fields
// before it (baseOffset, batchLength, partitionLeaderEpoch) can be rewritten
// without recomputing it.
const (
	baseOffsetPos           = 0
	batchLengthPos          = 8
	partitionLeaderEpochPos = 12
	magicPos                = 16
	crcPos                  = 17
	attributesPos           = 21
	lastOffsetDeltaPos      = 23
	baseTimestampPos        = 27
	maxTimestampPos         = 35
	producerIDPos           = 43
	producerEpochPos        = 51
	baseSequencePos         = 53
	recordCountPos          = 57

	// batchLengthOverhead is the number of bytes before and including
	// batchLength, which batchLength itself does not count.
	batchLengthOverhead = 12
	// BatchHeaderSize is the size of a record batch without its records.
	BatchHeaderSize = 61
	// minBatchLength is the smallest batchLength a magic 2 batch can have.
	minBatchLength = BatchHeaderSize - batchLengthOverhead
)

// Attribute bits of a record batch.
const (
	compressionMask       = 0x07
	timestampTypeBit      = 0x08
	transactionalBit      = 0x10
	controlBit            = 0x20
	currentMagic     int8 = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorruptBatch reports bytes that are not a valid record batch: wrong
// length, bad CRC, impossible counts. Errors returned by ParseBatch and
// SplitBatches wrap it with the reason; Kafka answers it with
// CORRUPT_MESSAGE.
var ErrCorruptBatch = errors.New("corrupt record batch")

// ErrUnsupportedMagic reports a well-framed batch whose magic byte is not 2
// (the message formats of Kafka before 0.11, which Flotilla does not
// accept). Kafka answers it with UNSUPPORTED_FOR_MESSAGE_FORMAT.
var ErrUnsupportedMagic = errors.New("unsupported record batch magic")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruptBatch, fmt.Sprintf(format, args...))
}

// Compression is the codec of a batch's records, from the low three bits of
// its attributes. The broker passes compressed batches through untouched.
type Compression int8

// The compression codecs Kafka defines.
const (
	CompressionNone   Compression = 0
	CompressionGzip   Compression = 1
	CompressionSnappy Compression = 2
	CompressionLZ4    Compression = 3
	CompressionZstd   Compression = 4
)

// String returns the codec's name as Kafka's compression.type spells it.
func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionGzip:
		return "gzip"
	case CompressionSnappy:
		return "snappy"
	case CompressionLZ4:
		return "lz4"
	case CompressionZstd:
		return "zstd"
	}
	return fmt.Sprintf("compression(%d)", int8(c))
}

// BatchHeader is the fixed-size header of a record batch (magic 2), that is
// everything but the records. ParseBatch returns it for a validated batch.
type BatchHeader struct {
	BaseOffset           int64
	BatchLength          int32 // bytes after this field; the batch is BatchLength+12 bytes
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32 // CRC-32C of everything from Attributes to the end
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64
	MaxTimestamp         int64
	ProducerID           int64 // -1 for a producer that is not idempotent
	ProducerEpoch        int16
	BaseSequence         int32
	RecordCount          int32
}

// Size is the number of bytes of the whole batch.
func (h BatchHeader) Size() int { return int(h.BatchLength) + batchLengthOverhead }

// LastOffset is the offset of the batch's last record.
func (h BatchHeader) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// NextOffset is the offset just after the batch: the log end once it is
// appended.
func (h BatchHeader) NextOffset() int64 { return h.LastOffset() + 1 }

// Compression is the codec of the batch's records.
func (h BatchHeader) Compression() Compression { return Compression(h.Attributes & compressionMask) }

// IsLogAppendTime reports whether the batch's timestamps are the broker's
// append time (timestamp type 1) rather than the producer's create time. In
// such a batch every record's timestamp is MaxTimestamp.
func (h BatchHeader) IsLogAppendTime() bool { return h.Attributes&timestampTypeBit != 0 }

// IsTransactional reports whether the batch belongs to a transaction.
func (h BatchHeader) IsTransactional() bool { return h.Attributes&transactionalBit != 0 }

// IsControl reports whether the batch holds control records (transaction
// markers) instead of data.
func (h BatchHeader) IsControl() bool { return h.Attributes&controlBit != 0 }

// IsIdempotent reports whether the batch carries a producer id, so that its
// producer epoch and sequence numbers must be checked.
func (h BatchHeader) IsIdempotent() bool { return h.ProducerID >= 0 }

// LastSequence is the sequence number of the batch's last record. Sequence
// numbers wrap from math.MaxInt32 to 0, as in Kafka's
// DefaultRecordBatch.incrementSequence. It is -1 when the batch has none.
func (h BatchHeader) LastSequence() int32 {
	if h.BaseSequence < 0 {
		return -1
	}
	return incrementSequence(h.BaseSequence, h.LastOffsetDelta)
}

// incrementSequence adds n (>= 0) to a sequence number, wrapping past
// math.MaxInt32 to 0.
func incrementSequence(seq, n int32) int32 {
	return int32((int64(seq) + int64(n)) % (1 << 31))
}

// ParseBatch validates one record batch and returns its header. b must be
// exactly one batch: its length must be 12+batchLength. It checks the magic
// (ErrUnsupportedMagic), the CRC-32C, and that the batch has at least one
// record and a non-negative lastOffsetDelta (errors wrapping
// ErrCorruptBatch). It does not look inside the records, which may be
// compressed.
func ParseBatch(b []byte) (BatchHeader, error) {
	h, err := parseBatchHeader(b)
	if err != nil {
		return h, err
	}
	if h.RecordCount <= 0 {
		return h, corrupt("record count %d", h.RecordCount)
	}
	if h.LastOffsetDelta < 0 {
		return h, corrupt("lastOffsetDelta %d", h.LastOffsetDelta)
	}
	return h, nil
}

// parseBatchHeader is ParseBatch without the checks of the record count
// and lastOffsetDelta, which a client's batch gets from ValidateProduced.
func parseBatchHeader(b []byte) (BatchHeader, error) {
	var h BatchHeader
	if len(b) < batchLengthOverhead {
		return h, corrupt("%d bytes is shorter than a batch length prefix", len(b))
	}
	h.BatchLength = int32(binary.BigEndian.Uint32(b[batchLengthPos:]))
	if int64(len(b)) != int64(h.BatchLength)+batchLengthOverhead {
		return h, corrupt("%d bytes, but batchLength %d says %d", len(b), h.BatchLength, int64(h.BatchLength)+batchLengthOverhead)
	}
	// The magic byte sits at the same place in the old message formats, so
	// an old-format message is recognised as such rather than as garbage.
	if len(b) <= magicPos {
		return h, corrupt("batchLength %d is too short for a magic byte", h.BatchLength)
	}
	h.Magic = int8(b[magicPos])
	if h.Magic != currentMagic {
		return h, fmt.Errorf("%w: %d", ErrUnsupportedMagic, h.Magic)
	}
	if h.BatchLength < minBatchLength {
		return h, corrupt("batchLength %d is shorter than the %d-byte header", h.BatchLength, minBatchLength)
	}
	h.BaseOffset = int64(binary.BigEndian.Uint64(b[baseOffsetPos:]))
	h.PartitionLeaderEpoch = int32(binary.BigEndian.Uint32(b[partitionLeaderEpochPos:]))
	h.CRC = binary.BigEndian.Uint32(b[crcPos:])
	h.Attributes = int16(binary.BigEndian.Uint16(b[attributesPos:]))
	h.LastOffsetDelta = int32(binary.BigEndian.Uint32(b[lastOffsetDeltaPos:]))
	h.BaseTimestamp = int64(binary.BigEndian.Uint64(b[baseTimestampPos:]))
	h.MaxTimestamp = int64(binary.BigEndian.Uint64(b[maxTimestampPos:]))
	h.ProducerID = int64(binary.BigEndian.Uint64(b[producerIDPos:]))
	h.ProducerEpoch = int16(binary.BigEndian.Uint16(b[producerEpochPos:]))
	h.BaseSequence = int32(binary.BigEndian.Uint32(b[baseSequencePos:]))
	h.RecordCount = int32(binary.BigEndian.Uint32(b[recordCountPos:]))
	if got := crc32.Checksum(b[attributesPos:], castagnoli); got != h.CRC {
		return h, corrupt("CRC mismatch: stored %#08x, computed %#08x", h.CRC, got)
	}
	return h, nil
}

// SplitBatches splits concatenated record batches (the records field of a
// produce request for one partition) into one slice per batch, sharing b's
// memory. It only checks the framing: every batch must be complete and at
// least a header long, and there must be no bytes left over. Validate each
// batch with ParseBatch.
func SplitBatches(b []byte) ([][]byte, error) {
	var out [][]byte
	for pos := 0; pos < len(b); {
		rest := b[pos:]
		if len(rest) < batchLengthOverhead {
			return nil, corrupt("%d trailing bytes at position %d", len(rest), pos)
		}
		length := int32(binary.BigEndian.Uint32(rest[batchLengthPos:]))
		if length < 0 || int64(length)+batchLengthOverhead > int64(len(rest)) {
			return nil, corrupt("batch at position %d has batchLength %d, %d bytes left", pos, length, len(rest))
		}
		n := int(length) + batchLengthOverhead
		out = append(out, rest[:n:n])
		pos += n
	}
	return out, nil
}

// SetBaseOffset rewrites the base offset of the batch b in place. The field
// is outside the CRC, so the batch stays valid. b must be at least a header
// long (a batch that passed ParseBatch).
func SetBaseOffset(b []byte, offset int64) {
	binary.BigEndian.PutUint64(b[baseOffsetPos:], uint64(offset))
}

// SetPartitionLeaderEpoch rewrites the partition leader epoch (the Raft term
// of the leader that appended it) of the batch b in place. The field is
// outside the CRC.
func SetPartitionLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[partitionLeaderEpochPos:], uint32(epoch))
}

// ErrInvalidRecord reports a well-formed batch that a client may not
// produce. Kafka answers it with INVALID_RECORD.
var ErrInvalidRecord = errors.New("invalid record batch")

// ValidateProduced applies the checks Kafka's LogValidator makes on the
// header of a batch that comes from a client (in addition to ParseBatch's):
// the record count must be positive and match the offset range
// (LogValidator.validateBatch), clients may not write control batches
// (transaction markers are the broker's), an idempotent batch needs a
// sequence number, and a transactional one a producer id. Errors wrap
// ErrInvalidRecord.
func ValidateProduced(h BatchHeader) error {
	switch {
	case h.RecordCount <= 0:
		return fmt.Errorf("%w: record count %d", ErrInvalidRecord, h.RecordCount)
	case int64(h.LastOffsetDelta)+1 != int64(h.RecordCount):
		return fmt.Errorf("%w: lastOffsetDelta %d and record count %d disagree", ErrInvalidRecord, h.LastOffsetDelta, h.RecordCount)
	case h.IsControl():
		return fmt.Errorf("%w: clients may not write control batches", ErrInvalidRecord)
	case h.IsIdempotent() && h.BaseSequence < 0:
		return fmt.Errorf("%w: sequence number %d with producer id %d", ErrInvalidRecord, h.BaseSequence, h.ProducerID)
	case h.IsTransactional() && !h.IsIdempotent():
		return fmt.Errorf("%w: transactional batch without a producer id", ErrInvalidRecord)
	}
	return nil
}

// setCreateTime makes the header of a batch of a CreateTime topic say so,
// as Kafka's LogValidator does: it clears the timestamp-type bit a
// producer may have set (consumers would otherwise give every record the
// batch's maxTimestamp) and writes maxTs, both inside the CRC, which is
// recomputed. A header that is right already, the common case, is left
// as is.
func setCreateTime(b []byte, maxTs int64) {
	attrs := binary.BigEndian.Uint16(b[attributesPos:])
	if attrs&timestampTypeBit == 0 && int64(binary.BigEndian.Uint64(b[maxTimestampPos:])) == maxTs {
		return
	}
	binary.BigEndian.PutUint16(b[attributesPos:], attrs&^timestampTypeBit)
	binary.BigEndian.PutUint64(b[maxTimestampPos:], uint64(maxTs))
	binary.BigEndian.PutUint32(b[crcPos:], crc32.Checksum(b[attributesPos:], castagnoli))
}
