package netactor

import (
	pb "go.etcd.io/raft/v3/raftpb"
)

// Outbound hands a group's messages for one peer to that peer's PeerSender.
type Outbound struct {
	Group uint64
	Msgs  []*pb.Message
}

// The messages below are internal: they are how the goroutines an actor owns
// report to it through its mailbox.

// connIdentified: an inbound connection's hello named its peer.
type connIdentified struct {
	id   uint64
	peer uint64
}

// connClosed: an inbound connection's reader has ended and closed it. err is
// why; reject is the metric reason when the peer broke the protocol.
type connClosed struct {
	id     uint64
	err    error
	reject string
}

// writerConnected: the writer has dialled the peer and sent the hello.
type writerConnected struct {
	w *writer
}

// writerSettled: the connection has lived settleAfter. Only then is it
// counted as working: a peer that accepts and drops at once (a wrong
// address, another service on the port, a peer refusing the hello) is a
// failed dial.
type writerSettled struct {
	w *writer
}

// dialFailed: the writer could not connect; it retries after a backoff.
type dialFailed struct {
	w   *writer
	err error
}

// writerDisconnected: the connection died while the writer was idle.
type writerDisconnected struct {
	w   *writer
	err error
}

// frameWritten: the writer is done with job. A nil err means the frame was
// written to the socket; otherwise it was lost and, unless encode is set,
// so was the connection.
type frameWritten struct {
	w      *writer
	job    *frameJob
	err    error
	encode bool
}

// OutboundLeaders hands a PeerSender what this node leads, to go out with
// its next frame. Only the latest matters: a newer one replaces one not yet
// sent, and one that meets a disconnected peer is dropped (the next comes
// soon).
type OutboundLeaders struct {
	Infos []LeaderInfo
}

// ControlReceived delivers one control message from a peer to the Router's
// ControlSink entry. Data is the receiver's own copy.
type ControlReceived struct {
	From uint64
	Data []byte
}

// outboundControl hands a PeerSender one control message for its peer
// (Peers.SendControl).
type outboundControl struct {
	data []byte
}
