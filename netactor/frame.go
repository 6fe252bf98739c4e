package netactor

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The frame codec. A frame is a 4-byte big-endian length followed by that many
// bytes of a protobuf-encoded Envelope (see envelope.proto):
//
//	message Envelope   { uint64 from = 1; uint64 to = 2; repeated GroupBatch batches = 3;
//	                     repeated LeaderInfo leaders = 4;  // leaders.go
//	                     repeated bytes control = 5;       // control.go: opaque, at most MaxControlBytes each
//	                     SnapChunk snap = 6;               // snapshot.go: a piece of a MsgSnap too large for a frame
//	                     bool leaders_complete = 7;        // leaders.go
//	                     uint64 incarnation = 8;           // the hello's: the sender's process (Liveness)
//	                     Refusal refused = 9;              // hold.go: the acceptor's answer to a hello it refuses
//	                     bool quiesces = 10; }             // the hello's: the sender follows quiet raft groups (Liveness.Quiet)
//	message GroupBatch { uint64 group = 1; repeated bytes messages = 2; } // each a marshalled raftpb.Message
//
// The envelope is written by hand with protowire rather than generated so that
// each raftpb.Message is marshalled straight into the frame buffer, with no
// intermediate []byte per message.

// FrameHeaderLen is the size of the length prefix in front of every frame.
const FrameHeaderLen = 4

// Field numbers of envelope.proto.
const (
	fieldEnvelopeFrom        protowire.Number = 1
	fieldEnvelopeTo          protowire.Number = 2
	fieldEnvelopeBatches     protowire.Number = 3
	fieldEnvelopeIncarnation protowire.Number = 8
	fieldEnvelopeQuiesces    protowire.Number = 10

	fieldBatchGroup    protowire.Number = 1
	fieldBatchMessages protowire.Number = 2
)

// readChunk is how much of a frame's body ReadFrame allocates before the bytes
// have actually arrived, so that a peer announcing a large frame and sending
// little makes us allocate little.
const readChunk = 64 << 10

var (
	// ErrFrameTooLarge is returned by ReadFrame for a frame whose announced
	// length is above the reader's limit. The connection cannot be resynchronised
	// and must be closed.
	ErrFrameTooLarge = errors.New("netactor: frame too large")

	// ErrMalformedFrame is returned for a frame body that is not a valid
	// Envelope (bad protobuf, or a message that is not a raftpb.Message).
	ErrMalformedFrame = errors.New("netactor: malformed frame")
)

// Envelope is the payload of one frame: what one node sends another in one
// write. From, To and Incarnation are set in the hello frame that opens a
// connection and are left zero in the frames that follow.
type Envelope struct {
	From, To uint64
	// Incarnation names the sender's process (SenderOptions.Incarnation):
	// a peer that says hello with a new one has restarted since its last
	// hello (Liveness.Restarts). Zero is unknown, as from a sender that
	// predates the field, which a receiver that predates it skips.
	Incarnation uint64
	Batches     []GroupBatch
	// Leaders is what the sender leads (leaders.go); usually empty.
	Leaders []LeaderInfo
	// LeadersComplete ends the whole set of leaderships a sender sends
	// when it connects (leaders.go).
	LeadersComplete bool
	// Control holds opaque control messages for the receiver's ControlSink
	// (control.go); usually empty, never in a hello.
	Control [][]byte
	// Snap is a piece of a MsgSnap too large for a frame (snapshot.go);
	// usually nil, never in a hello.
	Snap *SnapChunk
	// Refused is set only in the one frame an acceptor sends back, on a
	// connection whose hello it refuses (hold.go).
	Refused *Refusal
	// Quiesces, in a hello, says that the sender's raft groups follow
	// quiet leaders (raftactor's quiet groups) and that its transport
	// wakes them when it loses this node (Liveness.Quiet). A receiver that
	// predates it skips it, and a sender that predates it never sets it.
	Quiesces bool
}

// GroupBatch is one group's messages inside an Envelope, in the order the
// group sent them.
type GroupBatch struct {
	Group uint64
	Msgs  []*pb.Message
}

// cachedSize reads back the size that proto.Size just stored in a message.
var cachedSize = proto.MarshalOptions{UseCachedSize: true}

// AppendFrame appends env as one frame (length prefix and body) to dst. On
// error dst is returned unchanged in length.
func AppendFrame(dst []byte, env *Envelope) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	out, err := appendEnvelope(dst, env)
	if err != nil {
		return dst[:start], err
	}
	n := len(out) - start - FrameHeaderLen
	if n > math.MaxUint32 {
		return out[:start], fmt.Errorf("netactor: encode frame: %d bytes does not fit the length prefix", n)
	}
	binary.BigEndian.PutUint32(out[start:], uint32(n))
	return out, nil
}

func appendEnvelope(dst []byte, env *Envelope) ([]byte, error) {
	if env.From != 0 {
		dst = protowire.AppendTag(dst, fieldEnvelopeFrom, protowire.VarintType)
		dst = protowire.AppendVarint(dst, env.From)
	}
	if env.To != 0 {
		dst = protowire.AppendTag(dst, fieldEnvelopeTo, protowire.VarintType)
		dst = protowire.AppendVarint(dst, env.To)
	}
	if env.Incarnation != 0 {
		dst = protowire.AppendTag(dst, fieldEnvelopeIncarnation, protowire.VarintType)
		dst = protowire.AppendVarint(dst, env.Incarnation)
	}
	if env.Quiesces {
		dst = protowire.AppendTag(dst, fieldEnvelopeQuiesces, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	}
	for i := range env.Batches {
		b := &env.Batches[i]
		size, err := batchSize(b)
		if err != nil {
			return dst, err
		}
		dst = protowire.AppendTag(dst, fieldEnvelopeBatches, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(size))
		if dst, err = appendBatch(dst, b); err != nil {
			return dst, err
		}
	}
	dst, err := appendControl(appendLeadersComplete(appendLeaders(dst, env.Leaders), env.LeadersComplete), env.Control)
	if err != nil {
		return dst, err
	}
	return appendRefusal(appendSnapChunk(dst, env.Snap), env.Refused), nil
}

// batchSize returns the encoded size of b's body. It also leaves every
// message's size in its size cache, which appendBatch then reuses.
func batchSize(b *GroupBatch) (int, error) {
	n := 0
	if b.Group != 0 {
		n += protowire.SizeTag(fieldBatchGroup) + protowire.SizeVarint(b.Group)
	}
	for _, m := range b.Msgs {
		if m == nil {
			return 0, fmt.Errorf("netactor: encode group %d: nil message", b.Group)
		}
		n += protowire.SizeTag(fieldBatchMessages) + protowire.SizeBytes(proto.Size(m))
	}
	return n, nil
}

func appendBatch(dst []byte, b *GroupBatch) ([]byte, error) {
	if b.Group != 0 {
		dst = protowire.AppendTag(dst, fieldBatchGroup, protowire.VarintType)
		dst = protowire.AppendVarint(dst, b.Group)
	}
	for _, m := range b.Msgs {
		size := cachedSize.Size(m)
		dst = protowire.AppendTag(dst, fieldBatchMessages, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(size))
		before := len(dst)
		var err error
		dst, err = cachedSize.MarshalAppend(dst, m)
		if err != nil {
			return dst, fmt.Errorf("netactor: encode group %d %s: %w", b.Group, m.GetType(), err)
		}
		// A message changed between sizing and marshalling would corrupt the
		// frame for the receiver; refuse to send it instead.
		if len(dst)-before != size {
			return dst, fmt.Errorf("netactor: encode group %d %s: message changed while being encoded", b.Group, m.GetType())
		}
	}
	return dst, nil
}

// ReadFrame reads one frame from r and decodes it. maxBytes bounds the frame's
// body: a longer announced length is rejected with ErrFrameTooLarge before
// anything is allocated for it. buf is a buffer to reuse for the body; the
// (possibly grown) buffer is returned for the next call. The returned Envelope
// does not alias buf.
//
// A clean end of stream before a frame starts is io.EOF; one inside a frame is
// io.ErrUnexpectedEOF.
func ReadFrame(r *bufio.Reader, maxBytes int, buf []byte) (*Envelope, []byte, error) {
	var hdr [FrameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max(maxBytes, 0)) {
		return nil, buf, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, maxBytes)
	}
	buf, err := readBody(r, int(n), buf[:0])
	if err != nil {
		return nil, buf, err
	}
	env, err := DecodeEnvelope(buf)
	return env, buf, err
}

// readBody reads exactly n bytes into buf, growing it no faster than bytes
// arrive.
func readBody(r io.Reader, n int, buf []byte) ([]byte, error) {
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), max(cap(buf), readChunk)))
		}
		got, err := io.ReadFull(r, buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+got]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
	}
	return buf, nil
}

// DecodeEnvelope decodes a frame body. Unknown fields are skipped, as protobuf
// requires; anything that is not valid protobuf, or that carries more than
// the bounds of limits.go allow, is ErrMalformedFrame. It never panics,
// whatever b holds, and the result does not alias b.
func DecodeEnvelope(b []byte) (*Envelope, error) {
	fb := newFrameBudget(len(b))
	env, err := sizeEnvelope(b, fb)
	if err != nil {
		return nil, err
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, malformed("envelope tag", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldEnvelopeFrom && typ == protowire.VarintType:
			env.From, n = protowire.ConsumeVarint(b)
		case num == fieldEnvelopeTo && typ == protowire.VarintType:
			env.To, n = protowire.ConsumeVarint(b)
		case num == fieldEnvelopeIncarnation && typ == protowire.VarintType:
			env.Incarnation, n = protowire.ConsumeVarint(b)
		case num == fieldEnvelopeQuiesces && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			env.Quiesces = v != 0
		case num == fieldEnvelopeBatches && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				batch, err := decodeBatch(v, fb)
				if err != nil {
					return nil, err
				}
				env.Batches = append(env.Batches, batch)
			}
		case num == fieldEnvelopeLeaders && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				li, err := decodeLeader(v, fb)
				if err != nil {
					return nil, err
				}
				env.Leaders = append(env.Leaders, li)
			}
		case num == fieldEnvelopeLeadersComplete && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			env.LeadersComplete = v != 0
		case num == fieldEnvelopeControl && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				if len(v) > MaxControlBytes {
					return nil, malformed("control message", fmt.Errorf("%d bytes, limit %d", len(v), MaxControlBytes))
				}
				// v aliases the reader's buffer, which the next frame
				// overwrites.
				env.Control = append(env.Control, append([]byte{}, v...))
			}
		case num == fieldEnvelopeSnap && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				var err error
				if env.Snap, err = decodeSnapChunk(v, fb); err != nil {
					return nil, err
				}
			}
		case num == fieldEnvelopeRefused && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				var err error
				if env.Refused, err = decodeRefusal(v); err != nil {
					return nil, err
				}
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, malformed(fmt.Sprintf("envelope field %d", num), protowire.ParseError(n))
		}
		b = b[n:]
	}
	return env, nil
}

// sizeEnvelope counts the batches, leaderships, control messages and
// snapshot chunks of an envelope body against the budget before anything is
// decoded, and returns an Envelope with room for exactly as many.
func sizeEnvelope(b []byte, fb *frameBudget) (*Envelope, error) {
	var batches, leaders, control, snaps int
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, malformed("envelope tag", protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType {
			switch num {
			case fieldEnvelopeBatches:
				batches++
			case fieldEnvelopeLeaders:
				leaders++
			case fieldEnvelopeControl:
				control++
			case fieldEnvelopeSnap:
				snaps++
			}
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, malformed(fmt.Sprintf("envelope field %d", num), protowire.ParseError(n))
		}
		b = b[n:]
	}
	if err := errors.Join(
		spend(&fb.batches, batches, "group batches"),
		spend(&fb.leaders, leaders, "leaderships"),
		spend(&fb.control, control, "control messages"),
		spend(&fb.snaps, snaps, "snapshot chunks"),
	); err != nil {
		return nil, err
	}
	env := &Envelope{}
	if batches > 0 {
		env.Batches = make([]GroupBatch, 0, batches)
	}
	if leaders > 0 {
		env.Leaders = make([]LeaderInfo, 0, leaders)
	}
	if control > 0 {
		env.Control = make([][]byte, 0, control)
	}
	return env, nil
}

// decodeBatch decodes one group's batch, charging fb for each message
// before decoding it.
func decodeBatch(b []byte, fb *frameBudget) (GroupBatch, error) {
	var batch GroupBatch
	count, err := countFields(b, fieldBatchMessages, protowire.BytesType, "batch")
	if err != nil {
		return batch, err
	}
	if count > fb.messages {
		return batch, malformed("raft messages", errOverFrameLimit)
	}
	if count > 0 {
		batch.Msgs = make([]*pb.Message, 0, count)
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return batch, malformed("batch tag", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldBatchGroup && typ == protowire.VarintType:
			batch.Group, n = protowire.ConsumeVarint(b)
		case num == fieldBatchMessages && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				if err := fb.spendMessage(v); err != nil {
					return batch, err
				}
				m := &pb.Message{}
				// proto.Unmarshal copies bytes fields, so the message
				// outlives the reader's reused buffer.
				if err := proto.Unmarshal(v, m); err != nil {
					return batch, malformed(fmt.Sprintf("message %d of group %d", len(batch.Msgs), batch.Group), err)
				}
				batch.Msgs = append(batch.Msgs, m)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return batch, malformed(fmt.Sprintf("batch field %d", num), protowire.ParseError(n))
		}
		b = b[n:]
	}
	return batch, nil
}

func malformed(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrMalformedFrame, what, err)
}
