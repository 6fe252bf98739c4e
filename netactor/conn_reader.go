package netactor

import (
	"bufio"
	"errors"
	"fmt"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"io"
	"net"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/raftactor"
)

const (
	// readBufferBytes sizes the bufio.Reader in front of each connection.
	readBufferBytes = 64 << 10
	// maxHelloBytes bounds the first frame, read before the peer is known.
	maxHelloBytes = 256
	// keepFrameBytes is the largest frame buffer a reader keeps between
	// frames; a bigger one is released so an idle connection pins little.
	keepFrameBytes = 4 << 20
)

// connReader is the goroutine that reads one inbound connection: it checks
// the hello, then decodes frames and sends each group's batch to the group.
// It shares nothing with the Listener but immutable values and reports its
// end through the Listener's mailbox.
type connReader struct {
	id           uint64
	conn         net.Conn
	self         uint64
	maxFrame     int
	maxSnapshot  int
	budget       *snapBudget // the node's, shared by every reader
	holders      *holders    // the node's, shared by every reader
	peerAddr     func(id uint64) string
	remote       string
	helloTimeout time.Duration
	idleTimeout  time.Duration // 0: none
	router       *Router
	metrics      *Metrics
	liveness     *Liveness
	leaderBoard  LeaderBoard
	root         *actor.RootContext
	listener     *actor.PID
	log          zerolog.Logger
}

// rejectError is a protocol violation by the peer, with its metric reason.
type rejectError struct {
	reason string
	err    error
}

func (e *rejectError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

func (r *connReader) run() {
	err := r.serve()
	r.conn.Close()
	msg := &connClosed{id: r.id, err: err}
	if rej, ok := errors.AsType[*rejectError](err); ok {
		msg.reject = rej.reason
	}
	r.root.Send(r.listener, msg)
}

func (r *connReader) serve() error {
	in := &idleReader{conn: r.conn}
	br := bufio.NewReaderSize(in, readBufferBytes)
	peer, incarnation, quiesces, err := r.hello(br)
	if err != nil {
		return err
	}
	// Before anything from this process counts: not its restart, not a
	// frame, not even the replacement of the holder's connection.
	held, holder, first := r.holders.claim(peer, incarnation, r.id, r.remote)
	if holder != nil {
		return r.refuse(peer, incarnation, holder, first)
	}
	defer r.holders.release(peer, held)
	// From now on each read may wait idleTimeout, however long a frame
	// takes to arrive: a slow link that keeps delivering stays open.
	in.timeout = r.idleTimeout
	r.root.Send(r.listener, &connIdentified{id: r.id, peer: peer})
	counters := r.metrics.received(peer)
	restarted := r.liveness.connected(peer, incarnation, quiesces)
	defer r.liveness.disconnected(peer)
	if restarted {
		r.log.Info().Uint64("peer", peer).Str("process_incarnation", fmt.Sprintf("%016x", incarnation)).
			Msg("raft peer restarted: its replicas leave the ISRs this broker leads until they catch up")
	}
	heard := r.liveness.recorder(peer)
	heard()
	// A snapshot half received when the connection ends is dropped with
	// it: its sender reports it failed, and raft sends it again.
	asm := &assembly{max: r.maxSnapshot, gauge: r.metrics.receivingGauge(peer), budget: r.budget}
	defer asm.reset()
	var buf []byte
	for {
		env, b, err := ReadFrame(br, r.maxFrame, buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("netactor: nothing received from peer %d for %s: %w", peer, r.idleTimeout, err)
			}
			return classify(err)
		}
		counters.add(FrameHeaderLen + len(b))
		heard()
		r.holders.heard(held)
		buf = b
		if cap(buf) > keepFrameBytes {
			buf = nil
		}
		if len(env.Leaders) > 0 || env.LeadersComplete {
			r.leaders(peer, env.Leaders, env.LeadersComplete)
		}
		if len(env.Control) > 0 {
			r.control(peer, env.Control)
		}
		for _, batch := range env.Batches {
			r.deliver(peer, batch.Group, batch.Msgs)
		}
		// After the batches: the sender puts a chunk behind the messages
		// of its group that it queued before the snapshot.
		if env.Snap != nil {
			group, m, err := asm.add(env.Snap)
			if refused, ok := errors.AsType[*snapshotRefusedError](err); ok {
				r.refused(peer, refused)
				err = nil
			}
			if err != nil {
				return err
			}
			if m != nil {
				r.deliver(peer, group, []*pb.Message{m})
			}
		}
	}
}

// refusalLinger bounds how long a refused connection stays open for its
// dialer to read the refusal and hang up.
const refusalLinger = time.Second

// refuse answers a hello naming a node id that holder, another live
// process, holds: it sends the dialer the refusal, half-closes, and reads
// until the dialer hangs up (for at most refusalLinger), since closing on
// frames it has not read would reset the connection, and the reset may
// destroy the refusal before the dialer reads it. The first refusal of a
// process while holder holds is logged; it redials, to the same answer.
func (r *connReader) refuse(peer, incarnation uint64, holder *hold, first bool) error {
	ref := &Refusal{NodeID: peer, Remote: holder.remote}
	if r.peerAddr != nil {
		ref.Addr = r.peerAddr(peer)
	}
	if first {
		r.log.Warn().Uint64("peer", peer).Str("remote", r.remote).Str("process_incarnation", fmt.Sprintf("%016x", incarnation)).
			Str("holder_remote", holder.remote).Str("holder_incarnation", fmt.Sprintf("%016x", holder.incarnation)).
			Msg("refused a second process with a peer's node id: another live process holds that id; told it to stop (is a copy of that broker's config running?)")
	}
	frame, err := AppendFrame(nil, &Envelope{Refused: ref})
	if err == nil {
		err = r.conn.SetWriteDeadline(time.Now().Add(refusalLinger))
	}
	if err == nil {
		_, err = r.conn.Write(frame)
	}
	if tc, ok := r.conn.(*net.TCPConn); ok && err == nil {
		if tc.CloseWrite() == nil && tc.SetReadDeadline(time.Now().Add(refusalLinger)) == nil {
			_, _ = io.Copy(io.Discard, tc)
		}
	}
	return &rejectError{reason: RejectDuplicateID,
		err: fmt.Errorf("hello from a process of node %d while another (connected from %s) holds that id", peer, holder.remote)}
}

// refused logs and counts a snapshot refused for the node's budget, once,
// at its header: its chunks are skipped without a word.
func (r *connReader) refused(peer uint64, e *snapshotRefusedError) {
	r.metrics.drop(DropSnapshotMemory, 1)
	r.log.Warn().Uint64("peer", peer).Uint64("raft_group", e.group).Int("bytes", e.size).
		Int("receiving_bytes", e.held).Int("max_snapshot_bytes", e.limit).
		Msg("raft snapshot refused: with it, the snapshots being received from all peers would exceed max_snapshot_bytes; its chunks are skipped, and raft sends it again")
}

// deliver steps a group's messages from peer into the group, those the
// peer may send.
func (r *connReader) deliver(peer, group uint64, msgs []*pb.Message) {
	if len(msgs) == 0 {
		return
	}
	pid, ok := r.router.Lookup(group)
	if !ok {
		r.metrics.drop(DropUnknownGroup, len(msgs))
		return
	}
	msgs = r.admissible(peer, msgs)
	if len(msgs) > 0 {
		r.root.Send(pid, &raftactor.Step{Msgs: msgs})
	}
}

// leaders hands what a peer says it leads to the leader board, keeping
// only its claims about itself: a node speaks for its own leaderships only.
func (r *connReader) leaders(peer uint64, infos []LeaderInfo, complete bool) {
	if r.leaderBoard == nil {
		return
	}
	own := infos[:0]
	for _, li := range infos {
		if li.Leader == peer {
			own = append(own, li)
		}
	}
	if len(own) > 0 || complete {
		r.leaderBoard.PeerLeads(peer, own, complete)
	}
}

// control hands a peer's control messages to the control sink, one
// ControlReceived each, in order. Without a sink they are dropped and
// counted like messages for a group this node does not host.
func (r *connReader) control(peer uint64, control [][]byte) {
	pid, ok := r.router.Lookup(ControlSink)
	if !ok {
		r.metrics.drop(DropUnknownGroup, len(control))
		return
	}
	for _, data := range control {
		r.root.Send(pid, &ControlReceived{From: peer, Data: data})
	}
}

// admissible returns the messages a peer may send us: from the node its
// hello named, to this node, and never one of raft's local message types
// (MsgHup, MsgStorageAppendResp, …), which would let a peer drive this
// node's raft as if it were its own storage or clock. The others are
// dropped and counted; the slice is filtered in place.
func (r *connReader) admissible(peer uint64, msgs []*pb.Message) []*pb.Message {
	kept := msgs[:0]
	for _, m := range msgs {
		if m.GetFrom() != peer || m.GetTo() != r.self || raft.IsLocalMsg(m.GetType()) {
			r.metrics.drop(DropForged, 1)
			continue
		}
		kept = append(kept, m)
	}
	return kept
}

// hello reads the first frame, which must name its sender and address us,
// and returns the sender, its incarnation (0: unknown) and whether it
// follows quiet groups.
func (r *connReader) hello(br *bufio.Reader) (peer, incarnation uint64, quiesces bool, err error) {
	if err := r.conn.SetReadDeadline(time.Now().Add(r.helloTimeout)); err != nil {
		return 0, 0, false, err
	}
	env, _, err := ReadFrame(br, maxHelloBytes, nil)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, 0, false, &rejectError{reason: RejectHelloTimeout, err: err}
		}
		return 0, 0, false, classify(err)
	}
	switch {
	case env.To != r.self:
		return 0, 0, false, &rejectError{reason: RejectBadHello, err: fmt.Errorf("hello addressed to node %d, this is node %d", env.To, r.self)}
	case env.From == 0:
		return 0, 0, false, &rejectError{reason: RejectBadHello, err: errors.New("hello does not name its sender")}
	case len(env.Batches) != 0:
		return 0, 0, false, &rejectError{reason: RejectBadHello, err: errors.New("hello carries messages")}
	case len(env.Control) != 0:
		return 0, 0, false, &rejectError{reason: RejectBadHello, err: errors.New("hello carries control messages")}
	case env.Snap != nil:
		return 0, 0, false, &rejectError{reason: RejectBadHello, err: errors.New("hello carries a snapshot chunk")}
	case env.Refused != nil:
		return 0, 0, false, &rejectError{reason: RejectBadHello, err: errors.New("hello carries a refusal")}
	}
	if err := r.conn.SetReadDeadline(time.Time{}); err != nil {
		return 0, 0, false, err
	}
	return env.From, env.Incarnation, env.Quiesces, nil
}

// idleReader reads a connection; with a timeout, each read fails when
// nothing arrives for that long.
type idleReader struct {
	conn    net.Conn
	timeout time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	if r.timeout > 0 {
		if err := r.conn.SetReadDeadline(time.Now().Add(r.timeout)); err != nil {
			return 0, err
		}
	}
	return r.conn.Read(p)
}

// classify turns codec errors into protocol violations; anything else (end of
// stream, reset, our own close) is the connection simply ending.
func classify(err error) error {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return &rejectError{reason: RejectFrameTooLarge, err: err}
	case errors.Is(err, ErrMalformedFrame):
		return &rejectError{reason: RejectMalformed, err: err}
	}
	return err
}
