package netactor

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Control messages ride on the raft transport too: opaque payloads between
// brokers, which the controller uses for its join and removal handshakes
// (envelope.proto):
//
//	message Envelope { ... repeated bytes control = 5; }
//
// They are rare (about one a second per peer) and best effort: a sender
// holds a few for a peer it is not connected to, drops the oldest past
// maxQueuedControl, and loses those of a frame that fails to be written, so
// the protocols above repeat themselves until they see their effect.

// ControlSink is the Router entry that receives ControlReceived: the actor
// that speaks the brokers' control protocol (the controller). Without one,
// control messages are dropped.
const ControlSink uint64 = 2

// MaxControlBytes bounds one control payload. Peers.SendControl refuses a
// larger one, and a frame carrying one is malformed.
const MaxControlBytes = 64 << 10

// maxQueuedControl is how many control messages a PeerSender holds for its
// peer; past it the oldest is dropped.
const maxQueuedControl = 64

// controlOverhead bounds the wire bytes of one control payload beyond its
// data: tag and length.
const controlOverhead = 1 + 5

const fieldEnvelopeControl protowire.Number = 5

func appendControl(dst []byte, control [][]byte) ([]byte, error) {
	for _, c := range control {
		if len(c) > MaxControlBytes {
			return dst, fmt.Errorf("netactor: encode control message: %d bytes, limit %d", len(c), MaxControlBytes)
		}
		dst = protowire.AppendTag(dst, fieldEnvelopeControl, protowire.BytesType)
		dst = protowire.AppendBytes(dst, c)
	}
	return dst, nil
}
