package netactor

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Bounds on what one frame decodes into. Each repeated field of a frame
// decodes into a Go value far larger than its wire form: an empty raft
// message is 2 bytes on the wire and a pb.Message of about 200 bytes on the
// heap, an empty entry 2 bytes and a pb.Entry of about 100, an empty
// LeaderInfo 2 bytes and 48. Without bounds, anyone who reaches the raft
// port (the hello is not authenticated) makes a reader build gigabytes from
// one frame of the size limit before a single message is checked. A frame
// over any bound is ErrMalformedFrame, which closes its connection.
//
// The bounds are far above what a PeerSender puts in one frame, and
// nextFrame and takeLeaders hold it to them: a tick's heartbeats and their
// answers for a few hundred groups are a few hundred messages, and appends
// are held to BulkBytesPerFrame. The decoded form of a frame at every bound
// is a few MiB.
const (
	// maxFrameMessages bounds the raft messages of a frame, over all its
	// batches, with those nested as a message's responses.
	maxFrameMessages = 1 << 14
	// maxFrameBatches bounds the group batches of a frame; a sender never
	// sends one without a message.
	maxFrameBatches = maxFrameMessages
	// maxFrameLeaders bounds the leaderships of a frame: a sender splits
	// what a node leads (one per group at most) over frames of this many.
	maxFrameLeaders = 1 << 16
	// maxFrameISR bounds the replica ids of a frame's leaderships.
	maxFrameISR = 4 * maxFrameLeaders
	// maxFrameControl bounds the control messages of a frame; a sender
	// holds no more than maxQueuedControl.
	maxFrameControl = 4 * maxQueuedControl
	// maxFrameSnaps bounds the snapshot chunks of a frame: a sender
	// streams one snapshot at a time, a chunk per frame.
	maxFrameSnaps = 1
	// minFrameEntries is how many raft entries any frame may carry. A
	// larger frame may carry one per entryWireBytes of its body: only a
	// frame whose entries average fewer bytes than that, which no real
	// entry with its term and index and data is, is held to
	// minFrameEntries. The decoded entries of a frame are so at most a few
	// MiB or a few times its size.
	minFrameEntries = 1 << 15
	entryWireBytes  = 16
)

// Field numbers of raftpb.Message (raft.proto) that decode into one Go
// value each.
const (
	fieldMessageEntries   protowire.Number = 7
	fieldMessageResponses protowire.Number = 14
)

// maxEntries is how many raft entries a frame body of n bytes may carry.
func maxEntries(n int) int {
	return max(minFrameEntries, n/entryWireBytes)
}

// frameBudget is what is left of a frame's bounds while it is decoded.
type frameBudget struct {
	messages, batches, leaders, isr, control, snaps, entries int
}

func newFrameBudget(bodyBytes int) *frameBudget {
	return &frameBudget{
		messages: maxFrameMessages,
		batches:  maxFrameBatches,
		leaders:  maxFrameLeaders,
		isr:      maxFrameISR,
		control:  maxFrameControl,
		snaps:    maxFrameSnaps,
		entries:  maxEntries(bodyBytes),
	}
}

var errOverFrameLimit = errors.New("more than one frame may carry")

// spend takes n from left, or fails the frame when it holds fewer.
func spend(left *int, n int, what string) error {
	if n > *left {
		return malformed(what, errOverFrameLimit)
	}
	*left -= n
	return nil
}

// countFields counts the fields num of wire type typ in b, the body of a
// protobuf message, without allocating; other fields are skipped.
func countFields(b []byte, num protowire.Number, typ protowire.Type, what string) (int, error) {
	count := 0
	for len(b) > 0 {
		n, t, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, malformed(what+" tag", protowire.ParseError(l))
		}
		b = b[l:]
		if n == num && t == typ {
			count++
		}
		l = protowire.ConsumeFieldValue(n, t, b)
		if l < 0 {
			return 0, malformed(fmt.Sprintf("%s field %d", what, n), protowire.ParseError(l))
		}
		b = b[l:]
	}
	return count, nil
}

// spendMessage charges the budget for one encoded raft message before it is
// decoded: the message, its entries, and its responses with theirs.
func (fb *frameBudget) spendMessage(b []byte) error {
	if err := spend(&fb.messages, 1, "raft messages"); err != nil {
		return err
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("raft message tag", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldMessageEntries && typ == protowire.BytesType:
			if err := spend(&fb.entries, 1, "raft entries"); err != nil {
				return err
			}
			n = protowire.ConsumeFieldValue(num, typ, b)
		case num == fieldMessageResponses && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				// Nesting is bounded by the budget: each level is a message.
				if err := fb.spendMessage(v); err != nil {
					return err
				}
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return malformed(fmt.Sprintf("raft message field %d", num), protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}
