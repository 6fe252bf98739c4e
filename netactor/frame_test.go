package netactor

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func msg(t pb.MessageType, to, from, index uint64, entries ...[]byte) *pb.Message {
	m := &pb.Message{
		Type:  t.Enum(),
		To:    proto.Uint64(to),
		From:  proto.Uint64(from),
		Term:  proto.Uint64(3),
		Index: proto.Uint64(index),
	}
	for i, data := range entries {
		m.Entries = append(m.Entries, &pb.Entry{
			Term: proto.Uint64(3), Index: proto.Uint64(index + uint64(i) + 1),
			Type: pb.EntryType_EntryNormal.Enum(), Data: data,
		})
	}
	return m
}

func manyGroups(groups, perGroup int) *Envelope {
	env := &Envelope{}
	for g := range groups {
		b := GroupBatch{Group: uint64(g + 1)}
		for i := range perGroup {
			b.Msgs = append(b.Msgs, msg(pb.MessageType_MsgHeartbeat, 2, 1, uint64(i)))
		}
		env.Batches = append(env.Batches, b)
	}
	return env
}

func requireEnvEqual(t testing.TB, want, got *Envelope) {
	t.Helper()
	if want.From != got.From || want.To != got.To || want.Incarnation != got.Incarnation || want.Quiesces != got.Quiesces {
		t.Fatalf("from/to/incarnation/quiesces: want %d/%d/%d/%v, got %d/%d/%d/%v", want.From, want.To, want.Incarnation, want.Quiesces,
			got.From, got.To, got.Incarnation, got.Quiesces)
	}
	if len(want.Batches) != len(got.Batches) {
		t.Fatalf("batches: want %d, got %d", len(want.Batches), len(got.Batches))
	}
	for i := range want.Batches {
		w, g := want.Batches[i], got.Batches[i]
		if w.Group != g.Group || len(w.Msgs) != len(g.Msgs) {
			t.Fatalf("batch %d: want group %d with %d messages, got group %d with %d", i, w.Group, len(w.Msgs), g.Group, len(g.Msgs))
		}
		for j := range w.Msgs {
			if !proto.Equal(w.Msgs[j], g.Msgs[j]) {
				t.Fatalf("batch %d message %d: want %v, got %v", i, j, w.Msgs[j], g.Msgs[j])
			}
		}
	}
	if len(want.Leaders) != len(got.Leaders) {
		t.Fatalf("leaders: want %d, got %d", len(want.Leaders), len(got.Leaders))
	}
	for i := range want.Leaders {
		w, g := want.Leaders[i], got.Leaders[i]
		if w.Group != g.Group || w.Leader != g.Leader || w.Term != g.Term || !slices.Equal(w.ISR, g.ISR) {
			t.Fatalf("leader %d: want %+v, got %+v", i, w, g)
		}
	}
	if want.LeadersComplete != got.LeadersComplete {
		t.Fatalf("leaders complete: want %v, got %v", want.LeadersComplete, got.LeadersComplete)
	}
	if len(want.Control) != len(got.Control) {
		t.Fatalf("control: want %d messages, got %d", len(want.Control), len(got.Control))
	}
	for i := range want.Control {
		if !bytes.Equal(want.Control[i], got.Control[i]) {
			t.Fatalf("control %d: want %q, got %q", i, want.Control[i], got.Control[i])
		}
	}
	if w, g := want.Snap, got.Snap; (w == nil) != (g == nil) ||
		w != nil && (w.Group != g.Group || w.Size != g.Size || !bytes.Equal(w.Header, g.Header) || !bytes.Equal(w.Data, g.Data)) {
		t.Fatalf("snapshot chunk: want %+v, got %+v", w, g)
	}
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encode(t testing.TB, env *Envelope) []byte {
	t.Helper()
	b, err := AppendFrame(nil, env)
	if err != nil {
		t.Fatalf("AppendFrame: %v", err)
	}
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 8<<20)
	full := &pb.Message{
		Type: pb.MessageType_MsgSnap.Enum(), To: proto.Uint64(2), From: proto.Uint64(1),
		Term: proto.Uint64(9), LogTerm: proto.Uint64(8), Index: proto.Uint64(100), Commit: proto.Uint64(99),
		Reject: proto.Bool(true), RejectHint: proto.Uint64(7), Context: []byte("ctx"), Vote: proto.Uint64(1),
		Snapshot: &pb.Snapshot{Data: []byte("snap"), Metadata: &pb.SnapshotMetadata{
			Index: proto.Uint64(100), Term: proto.Uint64(8), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}},
		}},
	}
	tests := []struct {
		name string
		env  *Envelope
	}{
		{"empty", &Envelope{}},
		{"hello", &Envelope{From: 1, To: 2}},
		{"hello with incarnation", &Envelope{From: 1, To: 2, Incarnation: 1<<64 - 1}},
		{"hello of a node with quiet groups", &Envelope{From: 1, To: 2, Incarnation: 5, Quiesces: true}},
		{"group zero and empty batch", &Envelope{Batches: []GroupBatch{{Group: 0}, {Group: 5}}}},
		{"one group", &Envelope{Batches: []GroupBatch{{Group: 7, Msgs: []*pb.Message{msg(pb.MessageType_MsgApp, 2, 1, 10, []byte("a"), []byte("b"))}}}}},
		{"every field", &Envelope{From: 1 << 63, To: 1<<64 - 1, Batches: []GroupBatch{{Group: 1<<64 - 1, Msgs: []*pb.Message{full, {}}}}}},
		{"many groups", manyGroups(500, 10)},
		{"leaders", &Envelope{Leaders: []LeaderInfo{{Group: 1024, Leader: 2, Term: 7, ISR: []uint64{1, 2, 3}}, {Group: 1<<64 - 1, Leader: 1, Term: 1}}}},
		{"leaders with messages", &Envelope{Batches: []GroupBatch{{Group: 7, Msgs: []*pb.Message{msg(pb.MessageType_MsgHeartbeat, 2, 1, 1)}}},
			Leaders: []LeaderInfo{{Group: 7, Leader: 1, Term: 3, ISR: []uint64{1}}}}},
		{"leaders complete", &Envelope{Leaders: []LeaderInfo{{Group: 7, Leader: 1, Term: 3}}, LeadersComplete: true}},
		{"leaders complete alone", &Envelope{LeadersComplete: true}},
		{"control", &Envelope{Control: [][]byte{[]byte("join 4"), {}, bytes.Repeat([]byte{0xff}, MaxControlBytes)}}},
		{"control with messages and leaders", &Envelope{Batches: []GroupBatch{{Group: 7, Msgs: []*pb.Message{msg(pb.MessageType_MsgHeartbeat, 2, 1, 1)}}},
			Leaders: []LeaderInfo{{Group: 7, Leader: 1, Term: 3}}, Control: [][]byte{[]byte("a"), []byte("b")}}},
		{"first snapshot chunk", &Envelope{Snap: &SnapChunk{Group: 1<<64 - 1, Header: mustMarshal(t, snapHeader(full)), Size: 1 << 40, Data: big[:1<<20]}}},
		{"snapshot chunk with messages", &Envelope{Batches: []GroupBatch{{Group: 7, Msgs: []*pb.Message{msg(pb.MessageType_MsgApp, 2, 1, 1, []byte("a"))}}},
			Control: [][]byte{[]byte("c")}, Snap: &SnapChunk{Group: 8, Data: []byte("next")}}},
		{"empty snapshot chunk", &Envelope{Snap: &SnapChunk{}}},
		{"big entries", &Envelope{Batches: []GroupBatch{
			{Group: 1, Msgs: []*pb.Message{msg(pb.MessageType_MsgApp, 2, 1, 1, big, big[:1<<20])}},
			{Group: 2, Msgs: []*pb.Message{msg(pb.MessageType_MsgHeartbeat, 2, 1, 0)}},
		}}},
	}
	// All frames in one stream, read back with one reused buffer: a decoded
	// envelope must not alias the buffer the next frame overwrites.
	var stream []byte
	for _, tt := range tests {
		stream = encode(t, tt.env)
		env, err := DecodeEnvelope(stream[FrameHeaderLen:])
		if err != nil {
			t.Fatalf("%s: DecodeEnvelope: %v", tt.name, err)
		}
		requireEnvEqual(t, tt.env, env)
	}
	stream = stream[:0]
	for _, tt := range tests {
		var err error
		if stream, err = AppendFrame(stream, tt.env); err != nil {
			t.Fatalf("%s: AppendFrame: %v", tt.name, err)
		}
	}
	r := bufio.NewReader(bytes.NewReader(stream))
	var buf []byte
	var got []*Envelope
	for range tests {
		env, b, err := ReadFrame(r, 16<<20, buf)
		if err != nil {
			t.Fatalf("ReadFrame: %v", err)
		}
		buf = b
		got = append(got, env)
	}
	if _, _, err := ReadFrame(r, 16<<20, buf); err != io.EOF {
		t.Fatalf("after the last frame: want io.EOF, got %v", err)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { requireEnvEqual(t, tt.env, got[i]) })
	}
}

func TestAppendFrameRejectsOversizeControl(t *testing.T) {
	dst := []byte("keep")
	out, err := AppendFrame(dst, &Envelope{Control: [][]byte{[]byte("ok"), make([]byte, MaxControlBytes+1)}})
	if err == nil {
		t.Fatal("want an error for a control message over MaxControlBytes")
	}
	if string(out) != "keep" {
		t.Fatalf("dst changed on error: %q", out)
	}
}

func TestAppendFrameRejectsNilMessage(t *testing.T) {
	dst := []byte("keep")
	out, err := AppendFrame(dst, &Envelope{Batches: []GroupBatch{{Group: 1, Msgs: []*pb.Message{nil}}}})
	if err == nil {
		t.Fatal("want an error for a nil message")
	}
	if string(out) != "keep" {
		t.Fatalf("dst changed on error: %q", out)
	}
}

// allocatedBytes returns how much f allocates.
func allocatedBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestReadFrameRejectsOversizeWithoutAllocating(t *testing.T) {
	for _, announced := range []uint32{1<<20 + 1, 1<<32 - 1} {
		var hdr [FrameHeaderLen]byte
		binary.BigEndian.PutUint32(hdr[:], announced)
		r := bufio.NewReader(io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(make([]byte, 1<<10))))
		var err error
		n := allocatedBytes(func() { _, _, err = ReadFrame(r, 1<<20, nil) })
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("announced %d: want ErrFrameTooLarge, got %v", announced, err)
		}
		if n > 16<<10 {
			t.Fatalf("announced %d: allocated %d bytes before rejecting", announced, n)
		}
	}
}

func TestReadFrameAllocatesAsBytesArrive(t *testing.T) {
	// A length within the limit, but the peer sends only a few bytes.
	var hdr [FrameHeaderLen]byte
	binary.BigEndian.PutUint32(hdr[:], 60<<20)
	r := bufio.NewReader(io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader([]byte{1, 2, 3})))
	var err error
	n := allocatedBytes(func() { _, _, err = ReadFrame(r, 64<<20, nil) })
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("want io.ErrUnexpectedEOF, got %v", err)
	}
	if n > 1<<20 {
		t.Fatalf("allocated %d bytes for a 3-byte body", n)
	}
}

func TestReadFrameTruncated(t *testing.T) {
	frame := encode(t, manyGroups(3, 3))
	for n := range len(frame) {
		_, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame[:n])), 1<<20, nil)
		want := io.ErrUnexpectedEOF
		if n == 0 {
			want = io.EOF
		}
		if err != want {
			t.Fatalf("prefix of %d/%d bytes: want %v, got %v", n, len(frame), want, err)
		}
	}
}

func TestDecodeEnvelopeMalformed(t *testing.T) {
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	batch := func(body []byte) []byte {
		return cat(tag(fieldEnvelopeBatches, protowire.BytesType), protowire.AppendVarint(nil, uint64(len(body))), body)
	}
	tests := map[string][]byte{
		"truncated varint":        cat(tag(fieldEnvelopeFrom, protowire.VarintType), []byte{0x80}),
		"overlong varint":         cat(tag(fieldEnvelopeFrom, protowire.VarintType), bytes.Repeat([]byte{0xff}, 11)),
		"length past end":         cat(tag(fieldEnvelopeBatches, protowire.BytesType), []byte{10, 1, 2}),
		"field number zero":       {0x00, 0x01},
		"reserved wire type":      {0x0e},
		"unmatched end group":     tag(20, protowire.EndGroupType),
		"unterminated group":      cat(tag(20, protowire.StartGroupType), tag(fieldEnvelopeFrom, protowire.VarintType), []byte{1}),
		"bad batch tag":           batch([]byte{0x80}),
		"bad message bytes":       batch(cat(tag(fieldBatchMessages, protowire.BytesType), []byte{2, 0xff, 0xff})),
		"message length past end": batch(cat(tag(fieldBatchMessages, protowire.BytesType), []byte{50, 8})),
		"bad batch unknown data":  batch(cat(tag(9, protowire.Fixed64Type), []byte{1, 2, 3})),
		"control past end":        cat(tag(fieldEnvelopeControl, protowire.BytesType), []byte{5, 1}),
		"control too large":       protowire.AppendBytes(tag(fieldEnvelopeControl, protowire.BytesType), make([]byte, MaxControlBytes+1)),
		"snapshot chunk past end": cat(tag(fieldEnvelopeSnap, protowire.BytesType), []byte{5, 1}),
		"bad snapshot chunk tag":  protowire.AppendBytes(tag(fieldEnvelopeSnap, protowire.BytesType), []byte{0x80}),
		"bad snapshot header":     protowire.AppendBytes(tag(fieldEnvelopeSnap, protowire.BytesType), cat(tag(fieldChunkHeader, protowire.BytesType), []byte{2, 0xff, 0xff})),
		"snapshot data past end":  protowire.AppendBytes(tag(fieldEnvelopeSnap, protowire.BytesType), cat(tag(fieldChunkData, protowire.BytesType), []byte{9, 1})),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeEnvelope(b); !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("want ErrMalformedFrame, got %v", err)
			}
		})
	}
}

func TestDecodeEnvelopeSkipsUnknownFields(t *testing.T) {
	want := &Envelope{From: 1, To: 2, Batches: []GroupBatch{{Group: 3, Msgs: []*pb.Message{msg(pb.MessageType_MsgVote, 2, 1, 5)}}}}
	b := encode(t, want)[FrameHeaderLen:]
	b = protowire.AppendTag(b, 15, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("future"))
	b = protowire.AppendTag(b, 16, protowire.VarintType)
	b = protowire.AppendVarint(b, 42)
	b = protowire.AppendTag(b, fieldEnvelopeBatches, protowire.VarintType) // known number, other type
	b = protowire.AppendVarint(b, 1)
	got, err := DecodeEnvelope(b)
	if err != nil {
		t.Fatalf("DecodeEnvelope: %v", err)
	}
	requireEnvEqual(t, want, got)
}

func TestDecodeEnvelopeGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	valid := encode(t, manyGroups(4, 4))
	for i := range 20000 {
		var b []byte
		if i%2 == 0 {
			b = make([]byte, rng.IntN(200))
			for j := range b {
				b[j] = byte(rng.UintN(256))
			}
		} else { // a valid frame with a few bytes flipped
			b = bytes.Clone(valid)
			for range 1 + rng.IntN(4) {
				b[rng.IntN(len(b))] ^= byte(1 + rng.UintN(255))
			}
		}
		// Either outcome is fine; neither may panic or hang.
		_, _, _ = ReadFrame(bufio.NewReader(bytes.NewReader(b)), 1<<16, nil)
		_, _ = DecodeEnvelope(b)
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, env := range []*Envelope{
		{},
		{From: 1, To: 2},
		manyGroups(3, 2),
		{Batches: []GroupBatch{{Group: 9, Msgs: []*pb.Message{msg(pb.MessageType_MsgApp, 2, 1, 1, []byte("entry"))}}}},
		{Control: [][]byte{[]byte("hello"), {}}, Leaders: []LeaderInfo{{Group: 3, Leader: 1, Term: 2}}},
		{Snap: &SnapChunk{Group: 4, Header: []byte{8, 7}, Size: 3, Data: []byte("abc")}},
	} {
		b, err := AppendFrame(nil, env)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0, 0, 4, 0x1a, 2, 0x12, 0xff})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		env, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(data)), 1<<20, nil)
		if err != nil {
			return
		}
		frame, err := AppendFrame(nil, env)
		if err != nil {
			t.Fatalf("re-encode a decoded envelope: %v", err)
		}
		again, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), len(frame), nil)
		if err != nil {
			t.Fatalf("decode a re-encoded envelope: %v", err)
		}
		requireEnvEqual(t, env, again)
	})
}
