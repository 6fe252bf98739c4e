package netactor

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// field appends field num of wire type bytes holding body.
func field(dst []byte, num protowire.Number, body []byte) []byte {
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendBytes(dst, body)
}

// repeated returns n empty fields num: each 2 bytes on the wire, each a
// whole Go value once decoded.
func repeated(num protowire.Number, n int) []byte {
	return bytes.Repeat(field(nil, num, nil), n)
}

// A frame body of n bytes must not make the receiver allocate many times n.
// Every 2 bytes of this one (an empty messages field) would decode into a
// whole pb.Message: about 100 times the frame, gigabytes at the frame limit.
func TestDecodeAmplificationBounded(t *testing.T) {
	const n = 1 << 20
	body := field(nil, fieldEnvelopeBatches, repeated(fieldBatchMessages, (n-8)/2))
	var err error
	alloc := allocatedBytes(func() { _, err = DecodeEnvelope(body) })
	t.Logf("body %d bytes -> %d bytes allocated (x%.1f)", len(body), alloc, float64(alloc)/float64(len(body)))
	if !errors.Is(err, ErrMalformedFrame) {
		t.Errorf("decoding %d empty messages in one frame: %v, want ErrMalformedFrame", (n-8)/2, err)
	}
	if alloc > 8*uint64(len(body)) {
		t.Errorf("decoding a %d-byte frame allocated %d bytes (x%.0f)", len(body), alloc, float64(alloc)/float64(len(body)))
	}
}

// Every bound of limits.go admits a frame at it and refuses one past it.
func TestDecodeEnvelopeFrameLimits(t *testing.T) {
	batch := func(msgs []byte) []byte { return field(nil, fieldEnvelopeBatches, msgs) }
	message := func(body []byte) []byte { return field(nil, fieldBatchMessages, body) }
	isr := func(n int) []byte {
		return field(nil, fieldEnvelopeLeaders, field(nil, fieldLeaderISR, bytes.Repeat([]byte{1}, n)))
	}
	// One message with n responses: n+1 messages.
	responses := func(n int) []byte { return batch(message(repeated(fieldMessageResponses, n))) }
	entries := func(n int) []byte { return batch(message(repeated(fieldMessageEntries, n))) }
	tests := []struct {
		name     string
		at, over []byte
	}{
		{"messages in one batch",
			batch(repeated(fieldBatchMessages, maxFrameMessages)),
			batch(repeated(fieldBatchMessages, maxFrameMessages+1))},
		{"messages over batches",
			bytes.Repeat(batch(repeated(fieldBatchMessages, maxFrameMessages/4)), 4),
			append(bytes.Repeat(batch(repeated(fieldBatchMessages, maxFrameMessages/4)), 4), batch(message(nil))...)},
		{"messages as responses", responses(maxFrameMessages - 1), responses(maxFrameMessages)},
		{"batches", repeated(fieldEnvelopeBatches, maxFrameBatches), repeated(fieldEnvelopeBatches, maxFrameBatches+1)},
		{"entries", entries(minFrameEntries), entries(minFrameEntries + 1)},
		{"leaderships", repeated(fieldEnvelopeLeaders, maxFrameLeaders), repeated(fieldEnvelopeLeaders, maxFrameLeaders+1)},
		{"replica ids", isr(maxFrameISR), isr(maxFrameISR + 1)},
		{"control messages", repeated(fieldEnvelopeControl, maxFrameControl), repeated(fieldEnvelopeControl, maxFrameControl+1)},
		{"snapshot chunks", repeated(fieldEnvelopeSnap, maxFrameSnaps), repeated(fieldEnvelopeSnap, maxFrameSnaps+1)},
		{"messages with a snapshot header",
			append(batch(repeated(fieldBatchMessages, maxFrameMessages-1)), field(nil, fieldEnvelopeSnap, field(nil, fieldChunkHeader, []byte{8, 7}))...),
			append(batch(repeated(fieldBatchMessages, maxFrameMessages)), field(nil, fieldEnvelopeSnap, field(nil, fieldChunkHeader, []byte{8, 7}))...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			alloc := allocatedBytes(func() { _, err = DecodeEnvelope(tt.at) })
			if err != nil {
				t.Fatalf("a frame at the limit: %v", err)
			}
			// What a frame at the limits costs, whatever its size.
			if alloc > 8<<20 {
				t.Errorf("a %d-byte frame at the limit allocated %d bytes", len(tt.at), alloc)
			}
			over := allocatedBytes(func() { _, err = DecodeEnvelope(tt.over) })
			if !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("a frame past the limit: %v, want ErrMalformedFrame", err)
			}
			t.Logf("a %d-byte frame at the limit allocated %d bytes; one past it %d", len(tt.at), alloc, over)
		})
	}
}

// A large frame may carry one entry per entryWireBytes of its body.
func TestDecodeEnvelopeEntriesScaleWithFrame(t *testing.T) {
	const n = 2 * minFrameEntries
	m := msg(pb.MessageType_MsgApp, 2, 1, 1)
	for i := range n {
		m.Entries = append(m.Entries, &pb.Entry{Term: proto.Uint64(3), Index: proto.Uint64(uint64(i + 2)), Data: make([]byte, entryWireBytes)})
	}
	frame := encode(t, &Envelope{Batches: []GroupBatch{{Group: 7, Msgs: []*pb.Message{m}}}})
	env, err := DecodeEnvelope(frame[FrameHeaderLen:])
	if err != nil {
		t.Fatalf("%d entries of %d data bytes in a %d-byte frame: %v", n, entryWireBytes, len(frame), err)
	}
	if got := len(env.Batches[0].Msgs[0].Entries); got != n {
		t.Fatalf("decoded %d entries, want %d", got, n)
	}
}

// nextFrame never builds a frame a peer refuses for its number of messages
// or entries.
func TestNextFrameWithinFrameLimits(t *testing.T) {
	const maxFrame = 32 << 20
	var q sendQueue
	const beats = maxFrameMessages + 10
	for i := range beats {
		q.push(item(uint64(i%300+1), pb.MessageType_MsgHeartbeat, uint64(i), 0), false)
	}
	// Two appends whose entries together are past minFrameEntries, small
	// enough that a frame of both would be refused.
	for range 2 {
		m := msg(pb.MessageType_MsgApp, 2, 1, 1)
		for range minFrameEntries/2 + 1 {
			m.Entries = append(m.Entries, &pb.Entry{})
		}
		q.push(queued{group: 9, msg: m, size: proto.Size(m)}, false)
	}
	var frames []int
	for q.len() > 0 && len(frames) < 10 {
		job := q.nextFrame(maxFrame, 0, maxFrame, false, map[uint64]int{})
		frame := encode(t, job.env)
		if _, err := DecodeEnvelope(frame[FrameHeaderLen:]); err != nil {
			t.Fatalf("frame %d of %d messages: %v", len(frames), job.msgs, err)
		}
		frames = append(frames, job.msgs)
	}
	if q.len() > 0 || len(frames) != 3 || frames[0] != maxFrameMessages {
		t.Fatalf("frames of %v messages, %d left; want the heartbeats over two frames, then the second append alone", frames, q.len())
	}
}

func TestTakeLeaders(t *testing.T) {
	many := make([]LeaderInfo, maxFrameLeaders+5)
	for i := range many {
		many[i] = LeaderInfo{Group: uint64(i + 1024), Leader: 1, Term: 1}
	}
	wide := []LeaderInfo{
		{Group: 1, ISR: make([]uint64, maxFrameISR/2)},
		{Group: 2, ISR: make([]uint64, maxFrameISR/2)},
		{Group: 3, ISR: make([]uint64, 1)},
	}
	tests := []struct {
		name    string
		pending []LeaderInfo
		sizes   []int // leaderships per frame
	}{
		{"none", nil, nil},
		{"few", many[:3], []int{3}},
		{"more than a frame", many, []int{maxFrameLeaders, 5}},
		{"replica ids past a frame", wide, []int{2, 1}},
		{"one past any frame", []LeaderInfo{{Group: 1, ISR: make([]uint64, maxFrameISR+1)}, {Group: 2}}, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sizes []int
			pending := tt.pending
			for range 5 {
				var next []LeaderInfo
				next, pending = takeLeaders(pending)
				if next == nil {
					break
				}
				if _, err := DecodeEnvelope(encode(t, &Envelope{Leaders: next})[FrameHeaderLen:]); err != nil {
					t.Fatalf("frame of %d leaderships: %v", len(next), err)
				}
				sizes = append(sizes, len(next))
			}
			if pending != nil || !slices.Equal(sizes, tt.sizes) {
				t.Fatalf("frames of %v leaderships, %d left; want %v", sizes, len(pending), tt.sizes)
			}
		})
	}
}

// A message a peer would refuse even alone, for entries too many and too
// small, is dropped and reported instead of costing the connection.
func TestSenderDropsMessageWithTooManyEntries(t *testing.T) {
	n1, n2 := newNode(t, 1), newNode(t, 2)
	n2.listen("127.0.0.1:0")
	remote, local := n2.group(7), n1.group(7)
	p := n1.peers(map[uint64]string{2: n2.addr}, SenderOptions{})
	root := n1.sys.Root
	connect(t, root, p, 7, 2, remote)

	bad := msg(pb.MessageType_MsgApp, 2, 1, 1)
	for range minFrameEntries + 1 {
		bad.Entries = append(bad.Entries, &pb.Entry{})
	}
	unreachable := local.unreachableTo(2)
	p.Send(root, 7, []*pb.Message{bad, msg(pb.MessageType_MsgApp, 2, 1, 2)})
	waitFor(t, 5*time.Second, "the other append", func() bool { return remote.count() == 1 })
	if got := n1.metric("flotilla_raft_messages_dropped_total", "reason", DropTooLarge); got != 1 {
		t.Fatalf("too_large drops = %v, want 1", got)
	}
	waitFor(t, 5*time.Second, "the group to hear Unreachable", func() bool { return local.unreachableTo(2) > unreachable })
	if got := n2.metric("flotilla_raft_connections_rejected_total", "reason", RejectMalformed); got != 0 {
		t.Fatalf("peer rejected %v connections", got)
	}
}
