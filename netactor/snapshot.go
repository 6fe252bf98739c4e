package netactor

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Snapshot streaming. A group's whole state travels as one MsgSnap, and the
// state of a consumer-offsets partition or of the controller can outgrow a
// frame. A MsgSnap whose frame would exceed the peer's limit goes as a
// sequence of frames instead, each carrying one chunk (envelope.proto):
//
//	message Envelope  { ... SnapChunk snap = 6; }
//	message SnapChunk { uint64 group = 1; bytes header = 2; uint64 size = 3; bytes data = 4; }
//
// The first chunk carries the header, the MsgSnap marshalled without its
// Snapshot.Data, and size, the length of that data; every chunk, the first
// included, carries the next bytes of the data. A connection's frames
// arrive in order and a sender streams one snapshot at a time per
// connection, so its reader keeps one assembly and steps the whole MsgSnap
// into the group once size bytes have arrived, as if it had come in one
// frame. A sender abandons a snapshot half sent only with its connection, or
// when a frame fails to encode; the next snapshot's header then replaces the
// stale assembly.
//
// A chunk frame is bounded and decoded like any other (limits.go); the
// assembly is bounded by MaxSnapshotBytes, which a sender checks before it
// streams and a reader when a header announces the size: a larger one
// closes the connection. The Listener keeps one connection per peer, and
// all the assemblies of a node share a budget of MaxSnapshotBytes, which a
// header reserves its size from: a snapshot that does not fit is refused,
// and its chunks are skipped without closing the connection. Its sender
// counts it as sent; raft finds the follower still behind and sends it
// again, as it does after a failure. A reader that predates streaming
// skips the unknown field, so an old broker drops the snapshot and stays
// up.

// Field numbers of the chunk in envelope.proto.
const (
	fieldEnvelopeSnap protowire.Number = 6

	fieldChunkGroup  protowire.Number = 1
	fieldChunkHeader protowire.Number = 2
	fieldChunkSize   protowire.Number = 3
	fieldChunkData   protowire.Number = 4
)

// chunkOverhead bounds the wire bytes of a chunk beyond its header and
// data: the envelope field's tag and length, and the group, the size and
// the tags and lengths of the header and data.
const chunkOverhead = (1 + 5) + (1 + 10) + (1 + 5) + (1 + 10) + (1 + 5)

// DefaultMaxSnapshotBytes is the largest raft snapshot a peer streams or
// accepts.
const DefaultMaxSnapshotBytes = 1 << 30

// SnapChunk is one piece of a streamed MsgSnap.
type SnapChunk struct {
	Group uint64
	// Header is the MsgSnap without its Snapshot.Data, marshalled; set in
	// the first chunk only, which it marks.
	Header []byte
	// Size is the length of the whole Snapshot.Data; set with Header.
	Size uint64
	// Data is the next bytes of the Snapshot.Data.
	Data []byte
}

func appendSnapChunk(dst []byte, c *SnapChunk) []byte {
	if c == nil {
		return dst
	}
	n := protowire.SizeTag(fieldChunkGroup) + protowire.SizeVarint(c.Group)
	if len(c.Header) > 0 {
		n += protowire.SizeTag(fieldChunkHeader) + protowire.SizeBytes(len(c.Header)) +
			protowire.SizeTag(fieldChunkSize) + protowire.SizeVarint(c.Size)
	}
	if len(c.Data) > 0 {
		n += protowire.SizeTag(fieldChunkData) + protowire.SizeBytes(len(c.Data))
	}
	dst = protowire.AppendTag(dst, fieldEnvelopeSnap, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(n))
	dst = protowire.AppendTag(dst, fieldChunkGroup, protowire.VarintType)
	dst = protowire.AppendVarint(dst, c.Group)
	if len(c.Header) > 0 {
		dst = protowire.AppendTag(dst, fieldChunkHeader, protowire.BytesType)
		dst = protowire.AppendBytes(dst, c.Header)
		dst = protowire.AppendTag(dst, fieldChunkSize, protowire.VarintType)
		dst = protowire.AppendVarint(dst, c.Size)
	}
	if len(c.Data) > 0 {
		dst = protowire.AppendTag(dst, fieldChunkData, protowire.BytesType)
		dst = protowire.AppendBytes(dst, c.Data)
	}
	return dst
}

// decodeSnapChunk decodes a chunk, charging fb for its header as for any
// raft message. The result does not alias b.
func decodeSnapChunk(b []byte, fb *frameBudget) (*SnapChunk, error) {
	c := &SnapChunk{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, malformed("snapshot chunk tag", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldChunkGroup && typ == protowire.VarintType:
			c.Group, n = protowire.ConsumeVarint(b)
		case num == fieldChunkSize && typ == protowire.VarintType:
			c.Size, n = protowire.ConsumeVarint(b)
		case num == fieldChunkHeader && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				if err := fb.spendMessage(v); err != nil {
					return nil, err
				}
				c.Header = slices.Clone(v)
			}
		case num == fieldChunkData && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				c.Data = slices.Clone(v)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, malformed(fmt.Sprintf("snapshot chunk field %d", num), protowire.ParseError(n))
		}
		b = b[n:]
	}
	return c, nil
}

// chunkBytes is how much snapshot data a PeerSender puts in one frame: half
// its bulk budget, so that appends for the peer's other groups share every
// frame with the stream, and at most a quarter of a frame, which leaves
// room for the header and the frame's other contents.
func chunkBytes(maxFrame, bulkPerFrame int) int {
	return max(1, min(bulkPerFrame/2, maxFrame/4))
}

// snapStream is a MsgSnap a PeerSender sends in chunks.
type snapStream struct {
	header []byte // the MsgSnap without its Snapshot.Data, marshalled
	data   []byte // its Snapshot.Data: read, never copied or changed
	sent   int    // bytes of data in the chunks taken so far
	chunk  int    // bytes of data per chunk
}

// newSnapStream prepares m, a MsgSnap, to be sent in chunks of chunk bytes
// of data. The header is marshalled now, so that a frame carrying a chunk
// never fails to encode because of it.
func newSnapStream(m *pb.Message, chunk int) (*snapStream, error) {
	header, err := proto.Marshal(snapHeader(m))
	if err != nil {
		return nil, fmt.Errorf("netactor: encode snapshot header: %w", err)
	}
	return &snapStream{header: header, data: m.GetSnapshot().GetData(), chunk: chunk}, nil
}

// snapHeader returns m without its Snapshot.Data, sharing everything else
// with m, which is not changed: the group may still hold it.
func snapHeader(m *pb.Message) *pb.Message {
	h := &pb.Message{}
	dst := h.ProtoReflect()
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	h.Snapshot = &pb.Snapshot{Metadata: m.GetSnapshot().GetMetadata()}
	return h
}

// cost is what a streamed MsgSnap is charged in its sender's queue: the
// header and one chunk, what the sender encodes from it at a time. Its
// data is the group's own snapshot, which the stream only reads.
func (s *snapStream) cost() int { return len(s.header) + s.chunk + queuedMemOverhead }

// nextWire is the wire size of the next chunk.
func (s *snapStream) nextWire() int {
	n := chunkOverhead + min(s.chunk, len(s.data)-s.sent)
	if s.sent == 0 {
		n += len(s.header)
	}
	return n
}

// next takes the next chunk for group and tells whether it is the last.
func (s *snapStream) next(group uint64) (*SnapChunk, bool) {
	n := min(s.chunk, len(s.data)-s.sent)
	c := &SnapChunk{Group: group, Data: s.data[s.sent : s.sent+n]}
	if s.sent == 0 {
		c.Header, c.Size = s.header, uint64(len(s.data))
	}
	s.sent += n
	return c, s.sent == len(s.data)
}

// snapBudget bounds the snapshot bytes a node reassembles at once, from
// all its peers together; the readers of every connection share it.
type snapBudget struct {
	limit int
	held  atomic.Int64
}

// reserve takes n bytes of the budget, if they are free, and returns what
// was held before. A nil budget has room for anything.
func (b *snapBudget) reserve(n int) (int, bool) {
	if b == nil {
		return 0, true
	}
	for {
		held := b.held.Load()
		if held+int64(n) > int64(b.limit) {
			return int(held), false
		}
		if b.held.CompareAndSwap(held, held+int64(n)) {
			return int(held), true
		}
	}
}

func (b *snapBudget) release(n int) {
	if b != nil && n != 0 {
		b.held.Add(-int64(n))
	}
}

// snapshotRefusedError tells that an assembly refused a snapshot because
// the node's budget (snapBudget) lacked room for the size its header
// announced. It is no protocol violation: the assembly skips the chunks of
// that snapshot and takes the next.
type snapshotRefusedError struct {
	group             uint64
	size, held, limit int
}

func (e *snapshotRefusedError) Error() string {
	return fmt.Sprintf("snapshot of group %d: %d bytes announced, %d of the node's %d already held by snapshots being received",
		e.group, e.size, e.held, e.limit)
}

// assembly is the MsgSnap a connection's reader is reassembling from its
// chunks. It belongs to the reader's goroutine.
type assembly struct {
	max    int              // largest Snapshot.Data accepted
	gauge  prometheus.Gauge // bytes held by assemblies of the peer; may be nil
	budget *snapBudget      // shared by the node's assemblies; nil: none

	group uint64
	msg   *pb.Message // the header; nil when no snapshot is being received
	size  int
	data  []byte
	// skipping: the snapshot of group, refused for the budget, is being
	// received without its data being kept; skipped bytes of it have come.
	skipping bool
	skipped  int
	reserved int // bytes of budget reserved for the snapshot being received
}

var errNoSnapshot = errors.New("no snapshot of that group being received")

// add takes the next chunk of the connection. When it completes a MsgSnap,
// add returns it with its group. A chunk that does not continue the
// snapshot being received, or data beyond the size its header announced,
// is ErrMalformedFrame; a size above max is a rejectError. A header whose
// size the budget has no room for is a *snapshotRefusedError: that
// snapshot's chunks are then skipped, and the connection may go on.
func (a *assembly) add(c *SnapChunk) (uint64, *pb.Message, error) {
	if len(c.Header) > 0 {
		// The sender abandoned the snapshot it was sending, if any.
		a.reset()
		if c.Size > uint64(a.max) {
			return 0, nil, &rejectError{reason: RejectSnapshotTooLarge,
				err: fmt.Errorf("snapshot of group %d: %d bytes announced, limit %d", c.Group, c.Size, a.max)}
		}
		m := &pb.Message{}
		if err := proto.Unmarshal(c.Header, m); err != nil {
			return 0, nil, malformed(fmt.Sprintf("snapshot header of group %d", c.Group), err)
		}
		if m.GetType() != pb.MessageType_MsgSnap || m.GetSnapshot() == nil || len(m.GetSnapshot().GetData()) > 0 {
			return 0, nil, malformed(fmt.Sprintf("snapshot header of group %d", c.Group),
				fmt.Errorf("a %s, not a MsgSnap without data", m.GetType()))
		}
		a.group, a.size = c.Group, int(c.Size)
		held, ok := a.budget.reserve(a.size)
		if !ok {
			a.skipping = true
			if _, _, err := a.skip(c); err != nil {
				return 0, nil, err
			}
			return 0, nil, &snapshotRefusedError{group: c.Group, size: a.size, held: held, limit: a.budget.limit}
		}
		a.msg, a.reserved = m, a.size
	} else if a.skipping && c.Group == a.group {
		return a.skip(c)
	} else if a.msg == nil || c.Group != a.group {
		return 0, nil, malformed(fmt.Sprintf("snapshot chunk of group %d", c.Group), errNoSnapshot)
	}
	if len(c.Data) > a.size-len(a.data) {
		return a.overrun()
	}
	a.data = appendUpTo(a.data, c.Data, a.size)
	a.addGauge(len(c.Data))
	if len(a.data) < a.size {
		return 0, nil, nil
	}
	group, m := a.group, a.msg
	m.Snapshot.Data = a.data
	a.addGauge(-len(a.data))
	a.msg, a.data = nil, nil
	a.budget.release(a.reserved)
	a.reserved = 0
	return group, m, nil
}

// skip takes a chunk of a refused snapshot, keeping none of its data.
func (a *assembly) skip(c *SnapChunk) (uint64, *pb.Message, error) {
	if len(c.Data) > a.size-a.skipped {
		return a.overrun()
	}
	a.skipped += len(c.Data)
	if a.skipped == a.size {
		a.skipping, a.skipped = false, 0
	}
	return 0, nil, nil
}

func (a *assembly) overrun() (uint64, *pb.Message, error) {
	group := a.group
	a.reset()
	return 0, nil, malformed(fmt.Sprintf("snapshot chunk of group %d", group), errors.New("more data than the header announced"))
}

// reset drops the snapshot being received, if any.
func (a *assembly) reset() {
	a.addGauge(-len(a.data))
	a.budget.release(a.reserved)
	a.msg, a.data, a.reserved = nil, nil, 0
	a.skipping, a.skipped = false, 0
}

func (a *assembly) addGauge(n int) {
	if a.gauge != nil && n != 0 {
		a.gauge.Add(float64(n))
	}
}

// appendUpTo appends b to dst, which is to hold limit bytes in the end:
// it grows no faster than bytes arrive, and never past limit.
func appendUpTo(dst, b []byte, limit int) []byte {
	if cap(dst)-len(dst) < len(b) {
		n := min(limit, max(2*cap(dst), len(dst)+len(b), readChunk))
		dst = slices.Grow(dst, n-len(dst))
	}
	return append(dst, b...)
}
