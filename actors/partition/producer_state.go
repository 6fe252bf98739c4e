package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Errors of ProducerState.Check. Returned errors wrap them with the
// producer, epoch and sequence numbers involved; test with errors.Is.
var (
	// ErrOutOfOrderSequence: the batch's first sequence number does not
	// follow the producer's last one (a gap, a retry older than the five
	// batches remembered, or a new epoch that does not start at 0). Kafka
	// answers OUT_OF_ORDER_SEQUENCE_NUMBER.
	ErrOutOfOrderSequence = errors.New("out of order sequence number")
	// ErrInvalidProducerEpoch: the batch's producer epoch is older than the
	// producer's current one (a fenced zombie). Kafka answers
	// INVALID_PRODUCER_EPOCH.
	ErrInvalidProducerEpoch = errors.New("invalid producer epoch")
)

// producerBatchesRetained is how many of a producer's last batches are
// remembered for duplicate detection: Kafka's NUM_BATCHES_TO_RETAIN, which
// is also the most in-flight requests an idempotent client may have.
const producerBatchesRetained = 5

// BatchMetadata describes one batch an idempotent producer wrote: enough to
// recognise a retry of it and to answer the retry as the original was
// answered.
type BatchMetadata struct {
	FirstSequence, LastSequence int32
	BaseOffset, LastOffset      int64
	MaxTimestamp                int64 // for log-append-time topics, the time the broker gave it
}

func metadataOf(h BatchHeader, baseOffset int64) BatchMetadata {
	return BatchMetadata{
		FirstSequence: h.BaseSequence,
		LastSequence:  h.LastSequence(),
		BaseOffset:    baseOffset,
		LastOffset:    baseOffset + int64(h.LastOffsetDelta),
		MaxTimestamp:  h.MaxTimestamp,
	}
}

// Verdict is the outcome of a ProducerState.Check that accepted a batch.
type Verdict struct {
	// Duplicate reports that the batch is a retry of Original, which the
	// partition already holds or has in flight. Nothing must be proposed:
	// the producer is answered with success and Original's base offset
	// (Kafka's behaviour), once Original is applied (InFlight false) or
	// when it will be (InFlight true; and if the proposal is lost, the
	// producer's retry is checked again).
	Duplicate bool
	InFlight  bool
	Original  BatchMetadata
}

// ProducerState is a partition's idempotent-producer state: for each
// producer id, its epoch and the sequence numbers and offsets of its last
// five batches, as Kafka keeps them (ProducerStateManager).
//
// It has two layers. The applied layer is the state of the applied log: it
// changes only through Applied, is identical on every replica, and is what
// MarshalBinary captures for the partition's checkpoint. The in-flight layer
// holds, on the leader, the batches proposed but not yet applied, because a
// producer may have up to five requests in flight and each must be checked
// against the ones before it:
//
//	v, err := ps.Check(h)    // leader, at propose time; refuse on err
//	if v.Duplicate { answer with v.Original; return }
//	... stamp the base offset, rn.Propose(...) ...
//	ps.Proposed(h, base)     // only if the proposal was accepted
//	...
//	ps.Applied(h, base)      // every replica, when the entry is applied
//	ps.DiscardInFlight()     // on losing leadership or a term change
//
// Applied confirms the oldest in-flight batch of that producer. Batches that
// are never applied (the proposal was dropped, or a new leader overwrote
// the entry) are forgotten by DiscardInFlight, which the partition calls
// whenever it stops being leader of the term it proposed them in.
//
// Non-idempotent batches (producer id -1) are always accepted and not
// recorded. The zero value is an empty state ready to use. A ProducerState
// is owned by one goroutine (the partition's actor).
type ProducerState struct {
	applied  map[int64]*producerEntry
	inFlight map[int64]*inFlightProducer
}

// producerEntry is one producer's state.
type producerEntry struct {
	epoch         int16
	n             int // batches remembered, oldest first
	batches       [producerBatchesRetained]BatchMetadata
	lastTimestamp int64 // MaxTimestamp of its last batch, for expiration
}

// add records a batch of the producer at epoch. A new epoch forgets the
// batches of the old one.
func (e *producerEntry) add(epoch int16, m BatchMetadata) {
	if epoch != e.epoch {
		e.epoch, e.n = epoch, 0
	}
	if e.n == producerBatchesRetained {
		copy(e.batches[:], e.batches[1:])
		e.n--
	}
	e.batches[e.n] = m
	e.n++
	e.lastTimestamp = m.MaxTimestamp
}

// lastSequence is the last sequence number of the producer's last batch, or
// -1 (Kafka's NO_SEQUENCE) if none is remembered.
func (e *producerEntry) lastSequence() int32 {
	if e.n == 0 {
		return -1
	}
	return e.batches[e.n-1].LastSequence
}

// find returns the remembered batch with exactly these sequence numbers.
func (e *producerEntry) find(first, last int32) (BatchMetadata, bool) {
	for _, m := range e.batches[:e.n] {
		if m.FirstSequence == first && m.LastSequence == last {
			return m, true
		}
	}
	return BatchMetadata{}, false
}

// inFlightProducer is a producer with batches in flight: entry is its
// applied state with the pending batches added, which is what Check sees.
type inFlightProducer struct {
	entry   producerEntry
	pending []pendingBatch // oldest first
}

type pendingBatch struct {
	epoch int16
	meta  BatchMetadata
}

// inSequence reports whether next follows last; sequence numbers wrap from
// math.MaxInt32 to 0 (Kafka's ProducerAppendInfo.inSequence).
func inSequence(last, next int32) bool {
	return int64(next) == int64(last)+1 || (next == 0 && last == math.MaxInt32)
}

// Check decides whether the partition may append the batch with header h,
// against the applied state plus the batches in flight. It returns an error
// wrapping ErrInvalidRecord (see ValidateProduced), ErrInvalidProducerEpoch
// or ErrOutOfOrderSequence if the batch must be refused; otherwise the
// Verdict says whether it is new (propose it) or a duplicate (answer it).
//
// The rules are Kafka's (ProducerAppendInfo, UnifiedLog):
//
//   - A batch whose epoch and first and last sequence numbers match one of
//     the producer's last five batches is a duplicate. A retry of an older
//     batch is ErrOutOfOrderSequence, as in Kafka.
//   - An epoch older than the producer's is ErrInvalidProducerEpoch.
//   - A newer epoch must start at sequence 0.
//   - In the same epoch the first sequence must follow the last one,
//     wrapping from math.MaxInt32 to 0.
//   - A producer with no state is accepted at any sequence number. This is
//     what Kafka does since 2.5 (KIP-360): its state may have been lost
//     (expired), and refusing would leave the producer unable to go on. Such
//     a producer's first batch is not checked against anything.
func (s *ProducerState) Check(h BatchHeader) (Verdict, error) {
	if err := ValidateProduced(h); err != nil {
		return Verdict{}, err
	}
	if !h.IsIdempotent() {
		return Verdict{}, nil
	}
	e, f := s.current(h.ProducerID)
	if e == nil {
		return Verdict{}, nil
	}
	first, last := h.BaseSequence, h.LastSequence()
	if h.ProducerEpoch == e.epoch {
		if m, ok := e.find(first, last); ok {
			return Verdict{Duplicate: true, InFlight: f.holds(m), Original: m}, nil
		}
	}
	switch {
	case h.ProducerEpoch < e.epoch:
		return Verdict{}, fmt.Errorf("%w: producer %d has epoch %d, batch has %d",
			ErrInvalidProducerEpoch, h.ProducerID, e.epoch, h.ProducerEpoch)
	case h.ProducerEpoch > e.epoch:
		if first != 0 {
			return Verdict{}, fmt.Errorf("%w: producer %d starts epoch %d at sequence %d, not 0",
				ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, first)
		}
	case !inSequence(e.lastSequence(), first):
		return Verdict{}, fmt.Errorf("%w: producer %d epoch %d: sequence %d after %d",
			ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, first, e.lastSequence())
	}
	return Verdict{}, nil
}

// current returns the producer's state as Check sees it, and its in-flight
// record if it has one; nil if the producer is unknown.
func (s *ProducerState) current(id int64) (*producerEntry, *inFlightProducer) {
	if f := s.inFlight[id]; f != nil {
		return &f.entry, f
	}
	return s.applied[id], nil
}

// holds reports whether m is one of the producer's pending batches.
func (f *inFlightProducer) holds(m BatchMetadata) bool {
	if f == nil {
		return false
	}
	for _, p := range f.pending {
		if p.meta == m {
			return true
		}
	}
	return false
}

// Proposed records that the batch with header h, which Check accepted as
// new, was proposed at baseOffset. Later Checks see it. It returns an error,
// and records nothing, if the batch does not pass Check now or is a
// duplicate: proposing it was a mistake of the caller. h must be the header
// as proposed (with the broker's MaxTimestamp on log-append-time topics).
func (s *ProducerState) Proposed(h BatchHeader, baseOffset int64) error {
	if !h.IsIdempotent() || h.IsControl() {
		return nil
	}
	v, err := s.Check(h)
	if err != nil {
		return fmt.Errorf("record proposed batch: %w", err)
	}
	if v.Duplicate {
		return fmt.Errorf("record proposed batch: producer %d sequence %d is a duplicate of the batch at offset %d",
			h.ProducerID, h.BaseSequence, v.Original.BaseOffset)
	}
	f := s.inFlight[h.ProducerID]
	if f == nil {
		f = &inFlightProducer{}
		if e := s.applied[h.ProducerID]; e != nil {
			f.entry = *e
		}
		if s.inFlight == nil {
			s.inFlight = make(map[int64]*inFlightProducer)
		}
		s.inFlight[h.ProducerID] = f
	}
	m := metadataOf(h, baseOffset)
	f.entry.add(h.ProducerEpoch, m)
	f.pending = append(f.pending, pendingBatch{epoch: h.ProducerEpoch, meta: m})
	return nil
}

// Applied records the batch with header h, applied at baseOffset, in the
// applied state. Every replica calls it for every batch it applies, in log
// order; it never refuses (the leader checked). If the batch is the
// producer's oldest in-flight one, that one is confirmed; if the producer
// has in-flight batches but not this one first, the applied log went
// another way and they are dropped. Control batches change nothing
// (transactions are not implemented).
func (s *ProducerState) Applied(h BatchHeader, baseOffset int64) {
	if !h.IsIdempotent() || h.IsControl() {
		return
	}
	m := metadataOf(h, baseOffset)
	e := s.applied[h.ProducerID]
	if e == nil {
		e = &producerEntry{}
		if s.applied == nil {
			s.applied = make(map[int64]*producerEntry)
		}
		s.applied[h.ProducerID] = e
	}
	e.add(h.ProducerEpoch, m)
	f := s.inFlight[h.ProducerID]
	if f == nil {
		return
	}
	if p := f.pending[0]; p.epoch == h.ProducerEpoch && p.meta == m && len(f.pending) > 1 {
		f.pending = f.pending[1:]
		return
	}
	// Either the last pending batch was confirmed, and the applied state is
	// now what Check saw, or the overlay is stale.
	delete(s.inFlight, h.ProducerID)
}

// DiscardInFlight forgets every batch recorded by Proposed and not yet
// applied: the partition calls it when it loses leadership or its term
// changes, since those proposals may never be applied.
func (s *ProducerState) DiscardInFlight() {
	clear(s.inFlight)
}

// InFlight is the number of batches recorded by Proposed and not yet
// applied.
func (s *ProducerState) InFlight() int {
	n := 0
	for _, f := range s.inFlight {
		n += len(f.pending)
	}
	return n
}

// Len is the number of producers in the applied state.
func (s *ProducerState) Len() int { return len(s.applied) }

// ExpireProducers forgets the producers of the applied state whose last
// batch's timestamp is at or before cutoffMs, and returns how many it
// forgot: Kafka's producer.id.expiration.ms, the cutoff being the leader's
// clock less the expiration. It changes the applied state, so every replica
// must call it with the same cutoff at the same point of the log: the
// partition applies it from an entry the leader proposed
// (expireProducersEntry).
//
// It decides from the applied state alone, never from the leader's
// in-flight batches, which the other replicas do not have. A producer with
// batches in flight is forgotten like any other: its in-flight record
// keeps its own copy of the state, so Check goes on seeing the producer as
// the leader proposed for it, and applying its pending batches creates its
// state again, from those batches, as on every other replica. (In-flight
// batches proposed before the expiry entry are applied before it, so this
// only happens to batches proposed while it was in flight.)
func (s *ProducerState) ExpireProducers(cutoffMs int64) int {
	n := 0
	for id, e := range s.applied {
		if e.lastTimestamp <= cutoffMs {
			delete(s.applied, id)
			n++
		}
	}
	return n
}

// anyExpired reports whether ExpireProducers(cutoffMs) would forget a
// producer: the leader proposes an expiry entry only then.
func (s *ProducerState) anyExpired(cutoffMs int64) bool {
	for _, e := range s.applied {
		if e.lastTimestamp <= cutoffMs {
			return true
		}
	}
	return false
}

// Before returns the applied state without the batches at or above offset,
// and without the producers left with none: what a replica starts from
// when it installs a snapshot whose log ends at offset and then applies the
// batches from offset on. It is not quite the state the partition had at
// offset (batches that the removed ones pushed out of a producer's last
// five are not brought back), but applying those batches to either ends in
// the same state, because they push exactly those out again.
func (s *ProducerState) Before(offset int64) *ProducerState {
	out := &ProducerState{applied: make(map[int64]*producerEntry, len(s.applied))}
	for id, e := range s.applied {
		c := *e
		for c.n > 0 && c.batches[c.n-1].BaseOffset >= offset {
			c.n--
		}
		if c.n > 0 {
			// The expiry entries the replica applies before those batches
			// again judge the producer by the timestamp it had then.
			c.lastTimestamp = c.batches[c.n-1].MaxTimestamp
			out.applied[id] = &c
		}
	}
	return out
}

// Encoding of the applied state: a version byte, the number of producers
// (uvarint), then per producer in id order: id int64, epoch int16, last
// timestamp int64, batch count uint8, and per batch first and last sequence
// int32, base and last offset int64, max timestamp int64. Big-endian.
const (
	producerStateVersion = 1
	producerHeaderSize   = 8 + 2 + 8 + 1
	producerBatchSize    = 4 + 4 + 8 + 8 + 8
)

// MarshalBinary encodes the applied state (not the in-flight batches), for
// the partition's checkpoint and snapshot. The encoding is deterministic:
// replicas with the same state produce the same bytes.
func (s *ProducerState) MarshalBinary() ([]byte, error) {
	ids := make([]int64, 0, len(s.applied))
	for id := range s.applied {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := []byte{producerStateVersion}
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		e := s.applied[id]
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.BigEndian.AppendUint16(b, uint16(e.epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.lastTimestamp))
		b = append(b, byte(e.n))
		for _, m := range e.batches[:e.n] {
			b = binary.BigEndian.AppendUint32(b, uint32(m.FirstSequence))
			b = binary.BigEndian.AppendUint32(b, uint32(m.LastSequence))
			b = binary.BigEndian.AppendUint64(b, uint64(m.BaseOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.LastOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.MaxTimestamp))
		}
	}
	return b, nil
}

// UnmarshalBinary replaces the state with the applied state encoded by
// MarshalBinary, and forgets every in-flight batch. On error the state is
// unchanged.
func (s *ProducerState) UnmarshalBinary(b []byte) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("decode producer state: %s", fmt.Sprintf(format, args...))
	}
	if len(b) == 0 || b[0] != producerStateVersion {
		return bad("unknown version")
	}
	count, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return bad("bad producer count")
	}
	b = b[1+n:]
	if count > uint64(len(b)/producerHeaderSize) {
		return bad("%d producers in %d bytes", count, len(b))
	}
	applied := make(map[int64]*producerEntry, count)
	for range count {
		if len(b) < producerHeaderSize {
			return bad("truncated producer")
		}
		id := int64(binary.BigEndian.Uint64(b))
		e := &producerEntry{
			epoch:         int16(binary.BigEndian.Uint16(b[8:])),
			lastTimestamp: int64(binary.BigEndian.Uint64(b[10:])),
			n:             int(b[18]),
		}
		b = b[producerHeaderSize:]
		if id < 0 || applied[id] != nil {
			return bad("producer id %d repeated or negative", id)
		}
		if e.n > producerBatchesRetained || len(b) < e.n*producerBatchSize {
			return bad("producer %d: %d batches", id, e.n)
		}
		for k := range e.n {
			e.batches[k] = BatchMetadata{
				FirstSequence: int32(binary.BigEndian.Uint32(b)),
				LastSequence:  int32(binary.BigEndian.Uint32(b[4:])),
				BaseOffset:    int64(binary.BigEndian.Uint64(b[8:])),
				LastOffset:    int64(binary.BigEndian.Uint64(b[16:])),
				MaxTimestamp:  int64(binary.BigEndian.Uint64(b[24:])),
			}
			b = b[producerBatchSize:]
		}
		applied[id] = e
	}
	if len(b) != 0 {
		return bad("%d trailing bytes", len(b))
	}
	s.applied = applied
	clear(s.inFlight)
	return nil
}
