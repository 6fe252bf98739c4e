package netactor

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla/flotilla/raftactor"
)

// failureSummaryEvery spaces the warnings about a peer that stays
// unreachable.
const failureSummaryEvery = 5 * time.Minute

// PeerSender is the actor that owns this node's connection to one peer. It
// takes Outbound from the groups, queues their messages in two lanes and
// hands its writer one frame at a time, so it never blocks. Delivery failures
// go back to the groups as raftactor.Unreachable and raftactor.SnapshotStatus.
type PeerSender struct {
	self, peer uint64
	addr       string
	opts       SenderOptions
	router     *Router
	root       *actor.RootContext
	log        zerolog.Logger
	gauge      prometheus.Gauge

	w         *writer
	connected bool
	inflight  *frameJob      // handed to the writer and not yet reported done
	leaders   pendingLeaders // to go out with the next frames (OutboundLeaders)
	// leads returns what this node leads, which a new connection carries
	// first (Peers.Leads); complete is set until the frame carrying the
	// last of it goes out, marked LeadersComplete.
	leads    *atomic.Pointer[func() []LeaderInfo]
	complete bool
	queue    sendQueue
	// control holds control messages for the next frames, oldest first,
	// at most maxQueuedControl. Unlike raft messages they wait for a
	// connection: they are rare, and one sent right after Peers.SetPeer
	// would otherwise always meet a sender still dialling.
	control [][]byte
	// unreachable holds the groups told Unreachable since the connection went
	// down, so that an outage costs each group one report, not one per message.
	unreachable map[uint64]struct{}
	// settled: the connection lived settleAfter, and was logged as up.
	// Until then its loss counts as one of dialFailures, the failed
	// attempts since the last settled connection; failureLogged is when
	// the last of their warnings went out.
	settled       bool
	dialFailures  int
	failureLogged time.Time
	// refusalLogged: a refusal of the hello (hold.go) was logged since
	// the last settled connection; the next ones count as failed dials.
	refusalLogged bool
	// refusedSince is when the peer began refusing this process's hello
	// (RefusedError.Since); zero once a connection settles.
	refusedSince time.Time
	// snapTooLarge is when each group's snapshot above MaxSnapshotBytes
	// was last logged: raft sends it again after every failure.
	snapTooLarge map[uint64]time.Time

	// Heartbeat coalescing, driven by the broker's Ticker (Peers.TickWith).
	// hold is decided at each Tick from the heartbeats of the tick before:
	// a few go at once, as any control message; past coalesceHeartbeats
	// they wait for the next Tick and go out together in one frame. A
	// sender that is never ticked never holds any.
	hold        bool
	release     bool // a Tick came: the held heartbeats go with the next frame
	beatsInTick int  // heartbeats enqueued since the last Tick
	// idleTicks counts the Ticks since the last frame went to the writer;
	// at keepaliveTicks an empty frame goes, so that the peer's Liveness
	// hears from this node however idle it is.
	idleTicks int

	index   map[uint64]int      // scratch for nextFrame
	dropped []queued            // scratch for trim and drain
	groups  map[uint64]struct{} // scratch for report
}

func newPeerSender(self, peer uint64, addr string, router *Router, root *actor.RootContext, leads *atomic.Pointer[func() []LeaderInfo], opts SenderOptions) *PeerSender {
	return &PeerSender{
		self: self, peer: peer, addr: addr, opts: opts, router: router, root: root, leads: leads,
		log:          opts.Log.With().Uint64("peer", peer).Str("addr", addr).Logger(),
		gauge:        opts.Metrics.queueGauge(peer),
		unreachable:  make(map[uint64]struct{}),
		snapTooLarge: make(map[uint64]time.Time),
		index:        make(map[uint64]int),
		groups:       make(map[uint64]struct{}),
	}
}

// Receive implements actor.Actor.
func (s *PeerSender) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *Outbound:
		s.enqueue(ctx, msg)
	case *raftactor.Tick:
		s.hold = s.beatsInTick >= coalesceHeartbeats
		s.beatsInTick = 0
		s.release = true
		s.idleTicks++
		s.opts.Liveness.check(s.peer)
	case *OutboundLeaders:
		if s.connected {
			// The managers' broadcasts and the replicas' announcements
			// (Announcer) merge into the next frame, a group's later
			// term kept (pendingLeaders.merge).
			s.leaders.merge(msg.Infos)
		}
	case *outboundControl:
		s.queueControl(msg.data)
	case *frameWritten:
		if msg.w == s.w {
			s.written(ctx, msg)
		}
	case *writerConnected:
		if msg.w == s.w {
			s.connected = true
			clear(s.unreachable)
			// Before anything else it leads: a broadcast that comes
			// later is newer, and merges over it.
			s.leaders.reset()
			s.complete = true
			if f := s.leads.Load(); f != nil {
				s.leaders.merge((*f)())
			}
		}
	case *writerSettled:
		if msg.w == s.w && s.connected {
			s.settled = true
			s.log.Info().Int("failed_dials", s.dialFailures).Msg("connected to raft peer")
			s.dialFailures, s.refusalLogged, s.refusedSince = 0, false, time.Time{}
		}
	case *writerDisconnected:
		if msg.w == s.w {
			if refused, ok := errors.AsType[*RefusedError](msg.err); ok {
				if s.refusedSince.IsZero() {
					s.refusedSince = time.Now()
				}
				refused.Since = s.refusedSince
				if s.opts.OnRefused != nil {
					s.opts.OnRefused(refused)
				}
			}
			s.disconnect(ctx, msg.err)
		}
	case *dialFailed:
		if msg.w == s.w {
			s.dialFailed(msg.err)
		}
	case *actor.Started:
		s.w = newWriter(s.self, s.peer, s.addr, s.opts, s.root, ctx.Self())
		go s.w.run()
	case *actor.Stopping, *actor.Restarting:
		// What is queued or being written is dropped; its groups hear of
		// it like of any other drop — above all a MsgSnap, whose leader
		// otherwise waits forever for its outcome.
		if s.w != nil {
			s.w.close()
		}
		s.connected, s.settled = false, false
		s.dropped = s.queue.drain(s.dropped[:0])
		if job := s.inflight; job != nil {
			s.inflight = nil
			s.dropped = job.lost(s.dropped)
		}
		clear(s.unreachable) // report every group once more
		s.report(ctx, s.dropped, DropDisconnected)
		s.opts.Metrics.drop(DropDisconnected, len(s.control))
		s.control = nil
	}
	s.flush()
	if s.gauge != nil {
		s.gauge.Set(float64(s.queue.bytes))
	}
}

func (s *PeerSender) enqueue(ctx actor.Context, out *Outbound) {
	if !s.connected {
		s.dropped = s.dropped[:0]
		for _, m := range out.Msgs {
			s.dropped = append(s.dropped, queued{group: out.Group, msg: m})
		}
		s.report(ctx, s.dropped, DropDisconnected)
		return
	}
	s.dropped = s.dropped[:0]
	for _, m := range out.Msgs {
		item := queued{group: out.Group, msg: m, size: proto.Size(m)}
		switch tooLarge := singleMessageFrame(item.size) > s.opts.MaxFrameBytes; {
		case tooLarge && m.GetType() == pb.MessageType_MsgSnap:
			st, reason := s.streamSnapshot(item)
			if st == nil {
				s.report(ctx, []queued{item}, reason)
				continue
			}
			item.stream = st
		case tooLarge:
			s.log.Error().Uint64("raft_group", out.Group).Stringer("type", m.GetType()).
				Int("bytes", item.size).Int("max_frame_bytes", s.opts.MaxFrameBytes).
				Msg("raft message larger than the frame limit; dropped")
			s.report(ctx, []queued{item}, DropTooLarge)
			continue
		}
		// Its own frame's body is at least item.size bytes.
		if n := len(m.GetEntries()); n > maxEntries(item.size) {
			s.log.Error().Uint64("raft_group", out.Group).Stringer("type", m.GetType()).
				Int("entries", n).Int("bytes", item.size).
				Msg("raft message with more entries than a frame may carry; dropped")
			s.report(ctx, []queued{item}, DropTooLarge)
			continue
		}
		if isHeartbeat(m.GetType()) {
			s.beatsInTick++
		}
		s.queue.push(item, s.hold)
	}
	s.dropped = s.queue.trim(s.opts.QueueBytes, s.dropped)
	s.report(ctx, s.dropped, DropQueueFull)
}

// streamSnapshot prepares item, a MsgSnap too large for a frame, to be
// streamed in chunks. It returns nil, having logged why, with the reason
// to drop it for when it cannot be: its data is above MaxSnapshotBytes,
// which the peer would refuse by closing the connection, or its header does
// not fit a frame with a chunk.
func (s *PeerSender) streamSnapshot(item queued) (*snapStream, string) {
	data := len(item.msg.GetSnapshot().GetData())
	if data > s.opts.MaxSnapshotBytes {
		if now := time.Now(); now.Sub(s.snapTooLarge[item.group]) >= failureSummaryEvery {
			s.snapTooLarge[item.group] = now
			s.log.Error().Uint64("raft_group", item.group).Int("bytes", data).Int("max_snapshot_bytes", s.opts.MaxSnapshotBytes).
				Msg("raft snapshot larger than the snapshot limit; dropped, the follower cannot catch up")
		}
		return nil, DropTooLarge
	}
	chunk := chunkBytes(s.opts.MaxFrameBytes, s.opts.BulkBytesPerFrame)
	st, err := newSnapStream(item.msg, chunk)
	if err != nil {
		s.log.Error().Err(err).Uint64("raft_group", item.group).Msg("cannot encode raft snapshot header; dropped")
		return nil, DropEncodeFailed
	}
	if envelopeOverhead+chunkOverhead+len(st.header)+chunk > s.opts.MaxFrameBytes {
		s.log.Error().Uint64("raft_group", item.group).Int("header_bytes", len(st.header)).
			Int("max_frame_bytes", s.opts.MaxFrameBytes).Msg("raft snapshot header larger than a frame carries; dropped")
		return nil, DropTooLarge
	}
	return st, ""
}

// queueControl queues one control message, dropping the oldest when
// maxQueuedControl are already waiting.
func (s *PeerSender) queueControl(data []byte) {
	if len(s.control) == maxQueuedControl {
		clear(s.control[:1])
		s.control = s.control[1:]
		s.opts.Metrics.drop(DropControlQueueFull, 1)
		s.log.Warn().Int("queued", maxQueuedControl).Msg("control message queue for raft peer full; dropped the oldest")
	}
	s.control = append(s.control, data)
}

// takeControl removes from the control queue the messages for the next
// frame, as many as fit in it, and returns them with their wire size.
func (s *PeerSender) takeControl() ([][]byte, int) {
	n, size := 0, 0
	for _, c := range s.control {
		if envelopeOverhead+size+controlOverhead+len(c) > s.opts.MaxFrameBytes {
			break
		}
		size += controlOverhead + len(c)
		n++
	}
	if n == 0 {
		return nil, 0
	}
	taken := s.control[:n:n]
	s.control = s.control[n:]
	if len(s.control) == 0 {
		s.control = nil
	}
	return taken, size
}

// flush hands the writer the next frame if it is connected and idle. Control
// messages and leaderships go with the frame's raft messages, or alone when
// there are none; after keepaliveTicks without a frame, an empty one goes.
func (s *PeerSender) flush() {
	if !s.connected || s.inflight != nil {
		return
	}
	control, reserved := s.takeControl()
	leaders := s.leaders.take()
	complete := s.complete && s.leaders.empty()
	reserved += len(appendLeadersComplete(appendLeaders(nil, leaders), complete))
	job := s.queue.nextFrame(s.opts.MaxFrameBytes, reserved, s.opts.BulkBytesPerFrame, s.release, s.index)
	if s.queue.held.len() == 0 {
		s.release = false
	}
	if job == nil && (leaders != nil || control != nil || complete || s.idleTicks >= keepaliveTicks) {
		job = &frameJob{env: &Envelope{}}
	}
	if job == nil {
		return
	}
	s.idleTicks = 0
	job.env.Leaders = leaders
	job.env.LeadersComplete = complete
	s.complete = s.complete && !complete
	job.env.Control = control
	select {
	case s.w.work <- job:
		s.inflight = job
	default:
		// The writer reports every frame before it is given the next one,
		// so work is always empty here; anything else is a bug, and a
		// restart beats a blocked actor.
		panic(fmt.Sprintf("netactor: writer for peer %d still holds a frame", s.peer))
	}
}

func (s *PeerSender) written(ctx actor.Context, msg *frameWritten) {
	if msg.job == s.inflight {
		s.inflight = nil
	}
	if msg.err == nil {
		for _, g := range msg.job.snaps {
			s.tell(ctx, g, &raftactor.SnapshotStatus{To: s.peer})
		}
		return
	}
	lostControl := len(msg.job.env.Control)
	lost := msg.job.lost(make([]queued, 0, msg.job.msgs+1))
	if msg.encode {
		// The connection stays up, but the snapshot lacks a chunk: the
		// next one's header makes the peer drop what it received.
		if s.queue.abort(msg.job.chunkOf) {
			lost = append(lost, *msg.job.chunkOf)
		}
		s.log.Error().Err(msg.err).Int("messages", msg.job.msgs).Msg("cannot encode raft frame; its messages are dropped")
		s.report(ctx, lost, DropEncodeFailed)
		s.opts.Metrics.drop(DropEncodeFailed, lostControl)
		return
	}
	s.disconnect(ctx, msg.err)
	s.report(ctx, lost, DropDisconnected)
	s.opts.Metrics.drop(DropDisconnected, lostControl)
}

// disconnect drops everything queued: raft retransmits once the groups hear
// the peer is unreachable, and old appends would only be rejected anyway.
func (s *PeerSender) disconnect(ctx actor.Context, err error) {
	if !s.connected {
		return
	}
	s.connected = false
	s.dropped = s.queue.drain(s.dropped[:0])
	if s.settled {
		s.settled = false
		s.routine().Err(err).Int("dropped_messages", len(s.dropped)).Msg("lost connection to raft peer; reconnecting")
	} else {
		s.dialFailed(err)
	}
	s.report(ctx, s.dropped, DropDisconnected)
}

// dialFailed counts a failed attempt to connect, or a connection that died
// before it settled, and warns of the first one since the peer was last
// reachable; then at most once per failureSummaryEvery, with the count.
func (s *PeerSender) dialFailed(err error) {
	s.dialFailures++
	now := time.Now()
	_, refused := errors.AsType[*RefusedError](err)
	switch {
	case refused && !s.refusalLogged:
		s.refusalLogged = true
		s.log.Error().Err(err).Msg("raft peer refused this process: another live process has this node id")
	case s.dialFailures == 1:
		s.routine().Err(err).Msg("cannot reach raft peer; redialling with backoff")
	case now.Sub(s.failureLogged) >= failureSummaryEvery:
		s.log.Warn().Err(err).Int("failed_dials", s.dialFailures).Msg("still cannot reach raft peer; redialling with backoff")
	default:
		return
	}
	s.failureLogged = now
}

// routine is the level of the news that the peer went away: info when it
// announced a clean stop (a rolling restart), a warning otherwise. A peer
// still unreachable after failureSummaryEvery is warned of either way.
func (s *PeerSender) routine() *zerolog.Event {
	if s.opts.Liveness.Stopping(s.peer) {
		return s.log.Info()
	}
	return s.log.Warn()
}

// report counts dropped messages and tells their groups: SnapshotStatus for
// each MsgSnap, and Unreachable once per group — once per outage when the
// peer is disconnected. It clears items so the scratch slice holds no
// messages.
func (s *PeerSender) report(ctx actor.Context, items []queued, reason string) {
	if len(items) == 0 {
		return
	}
	s.opts.Metrics.drop(reason, len(items))
	clear(s.groups)
	for _, it := range items {
		if it.msg.GetType() == pb.MessageType_MsgSnap {
			s.tell(ctx, it.group, &raftactor.SnapshotStatus{To: s.peer, Failed: true})
		}
		s.groups[it.group] = struct{}{}
	}
	for g := range s.groups {
		if reason == DropDisconnected {
			if _, done := s.unreachable[g]; done {
				continue
			}
			s.unreachable[g] = struct{}{}
		}
		s.tell(ctx, g, &raftactor.Unreachable{To: s.peer})
	}
	clear(items)
}

func (s *PeerSender) tell(ctx actor.Context, group uint64, msg any) {
	if pid, ok := s.router.Lookup(group); ok {
		ctx.Send(pid, msg)
	}
}
