// Package netactor is the Raft transport: it carries raftpb.Messages between
// the brokers of a cluster over TCP, for every raft group at once.
//
// # Wire
//
// A connection carries frames in one direction, from the node that
// dialled it to the node that accepted it. A frame is a 4-byte big-endian
// length and a protobuf Envelope (envelope.proto) holding, per group, a batch
// of marshalled raftpb.Messages. The first frame is a hello naming the sender,
// its process (an incarnation, random per start) and the receiver; the
// receiver closes a connection whose hello is not addressed to it, and
// answers one whose node id another live process holds with a refusal, the
// only frame sent the other way (hold.go). A frame longer than the receiver's limit, one that does
// not decode, or one that carries more messages, entries, leaderships or
// control messages than limits.go allows (each decodes into far more memory
// than its wire form), closes that connection and nothing else, as does
// silence for the Listener's IdleTimeout after the hello. A frame may
// also carry what its sender leads (leaders.go) and opaque control messages
// between brokers (control.go), which the reader hands to the Listener's
// LeaderBoard and to the Router's ControlSink entry, and a chunk of a
// MsgSnap too large for one frame (snapshot.go), which the reader
// reassembles, up to MaxSnapshotBytes, and steps into its group whole. The
// snapshots being reassembled from all peers together hold at most
// MaxSnapshotBytes too: one more is refused and skipped, and raft sends it
// again.
//
// # Actors
//
// Listener (kind "listener", name "raft/listener") owns the listening socket
// and the inbound connections. An accept goroutine feeds it actors.Accepted; for
// each connection it starts a reader goroutine that decodes frames and sends
// each group's batch to the group as raftactor.Step, looking the group up in
// the Router. The Listener itself sees only connections opening and closing
// (connIdentified, connClosed), so no message passes through its mailbox.
// It keeps one connection per peer: a newer one from the same process closes
// the older, which its sender has given up on, and one from another process
// of that peer id is refused while the first holds it (hold.go).
// Messages for a group that is not in the Router are dropped and counted.
//
// PeerSender (kind "peer", name "peer/<id>") owns the one long-lived
// connection to a peer. Peers holds one per peer, spawning and retiring them
// as the cluster's membership changes (SetPeer, RemovePeer). It takes
// Outbound from Peers.Send, control messages from Peers.SendControl and
// raftactor.Tick from the broker's Ticker, and sends
// raftactor.Unreachable and raftactor.SnapshotStatus to the groups through
// the Router. A ticked sender that has sent nothing for keepaliveTicks
// sends an empty frame, so that every running broker hears from every
// peer it can reach at least that often, however idle.
//
// Liveness (liveness.go) records when each peer's last frame arrived: the
// readers update it, and the broker asks it which brokers are alive (to
// leave dead ones out of Metadata and out of new placements). It also
// holds the peers that announced a clean stop (MarkStopping), until they
// open a new connection, and counts the peers' restarts: hellos naming
// another incarnation than the one before (Restarts). Its writer goroutine does the blocking work (dial with backoff,
// hello, write) and reports back through the mailbox: writerConnected,
// writerSettled, dialFailed, writerDisconnected, frameWritten. A connection
// that dies before it settled (lived settleAfter) is logged and backed off
// as a failed dial: one warning, then a summary every few minutes. The
// loss of a peer that announced a clean stop, and the first failed dial
// after it, are routine (a rolling restart) and logged at info; a summary
// still warns.
//
// # Invariants
//
//   - No actor blocks. A PeerSender hands its writer a frame only when the
//     previous one has been reported done, so the writer's channel (capacity
//     one) is always empty when it is sent to.
//   - Heartbeats and votes never queue behind appends: a PeerSender keeps a
//     control lane and a bulk lane (MsgApp, MsgSnap), and each frame holds
//     every queued control message and at most BulkBytesPerFrame of bulk, so a
//     control message waits behind at most one bounded frame.
//   - A MsgSnap too large for a frame is streamed, a chunk of half the bulk
//     budget per frame, one snapshot per peer at a time; appends of the
//     peer's other groups share the frames. The next streamed MsgSnap and
//     the later messages of its group and of the streaming group are set
//     aside until the stream is done, so that they hold up no other
//     group. It is charged in the queue for
//     its header and one chunk: its data is the group's snapshot, read
//     into each frame as it is written.
//   - Heartbeats are coalesced per peer when there are many: a PeerSender
//     that the broker's Ticker ticks (Peers.TickWith) and that queued at
//     least coalesceHeartbeats MsgHeartbeat/MsgHeartbeatResp in the last
//     tick holds the next ones in a third lane until the next Tick, and
//     they all go in one frame, as the raftpb.Messages raft produced. A
//     heartbeat is then up to a tick late, well inside an election timeout;
//     votes and everything else still go at once. With a few groups
//     heartbeats go at once like any control message.
//   - Each group's messages to a peer arrive in the order the group sent them
//     within a lane; control may overtake bulk and held heartbeats, which
//     raft tolerates as it tolerates any reordering.
//   - What a PeerSender queues never exceeds SenderOptions.QueueBytes (encoded
//     size plus a per-message allowance): past it the newest bulk messages
//     are dropped, then the newest held heartbeats, then the newest control
//     messages.
//   - Messages are never held for a disconnected peer: they are dropped, and
//     each group hears Unreachable once per outage. Every MsgSnap ends in
//     exactly one SnapshotStatus: Failed unless its frame, or the frame of
//     its last chunk, was written to the socket. A sender leaving the Peers table is retired through its
//     mailbox, so it reports what was sent to it before it stops.
//   - Each group on this node is reachable through the Router, an immutable
//     map swapped as a whole, so readers on every connection route without
//     locks. The Peers table is built the same way for the groups that send.
//   - Control messages are never coalesced: each queued one goes out, in
//     order, with the next frame, or in a frame of its own when no raft
//     message is waiting. They wait for a connection, the newest
//     maxQueuedControl of them.
//
// Time inside the actors comes only from messages; the socket deadlines and
// the reconnection backoff live in the goroutines that do the I/O.
package netactor
