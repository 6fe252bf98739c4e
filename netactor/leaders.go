package netactor

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Leadership dissemination rides on the raft transport: every frame may
// carry what its sender leads (envelope.proto):
//
//	message Envelope   { ... repeated LeaderInfo leaders = 4; bool leaders_complete = 7; }
//	message LeaderInfo { uint64 group = 1; uint64 leader = 2; uint64 term = 3; repeated uint64 isr = 4 [packed]; }
//
// so that every broker can answer Metadata for partitions it does not host.
// A receiver keeps, per group, the information with the highest term.
//
// Each manager of raft groups on a node broadcasts, every half second, the
// groups it leads (Peers.Broadcast), and a replica that begins to serve as
// leader says so at once, alone; a PeerSender merges what it is given
// into its next frame (pendingLeaders), so that a burst of them costs a
// few frames. A PeerSender that connects first sends
// its peer everything the node leads at that moment (Peers.Leads), and
// marks the frame that carries the last of it (leaders_complete): a broker
// that restarts learns who leads what from each peer as soon as that peer
// reconnects, instead of at its next broadcast (which would also lack what
// the peer took over since its last one), and knows when it has heard
// everything a peer leads (LeaderBoard). A receiver from before
// leaders_complete skips the field.

// LeaderBoard keeps what peers say they lead. The Listener's readers hand
// it the leaderships of each frame that a peer claims for itself; complete
// is set on the frame that ends the whole set a peer sends when it
// connects, after which the board knows everything the peer led then. It
// must be safe for concurrent use.
type LeaderBoard interface {
	PeerLeads(peer uint64, infos []LeaderInfo, complete bool)
}

// LeaderInfo says who leads a raft group, in which term, and (for a
// partition) which replicas are in sync.
type LeaderInfo struct {
	Group, Leader, Term uint64
	ISR                 []uint64
}

// ISRWith is li's ISR with leader in it, sorted, in a new slice: what a
// broker answers for a later leader of the group before that leader's own
// word, as a clean election keeps the ISR.
func (li LeaderInfo) ISRWith(leader uint64) []uint64 {
	isr := append(slices.Clone(li.ISR), leader)
	slices.Sort(isr)
	return slices.Compact(isr)
}

const (
	fieldEnvelopeLeaders         protowire.Number = 4
	fieldEnvelopeLeadersComplete protowire.Number = 7

	fieldLeaderGroup  protowire.Number = 1
	fieldLeaderLeader protowire.Number = 2
	fieldLeaderTerm   protowire.Number = 3
	fieldLeaderISR    protowire.Number = 4
)

// pendingLeaders are the leaderships a PeerSender has yet to send, oldest
// first, at most one per group. Leaders come in bursts, one message each
// (a topic's new partitions, or a dead broker's, all ready at once), and
// every one merges in constant time.
type pendingLeaders struct {
	infos []LeaderInfo
	// at is the position of each group's leadership in infos, plus base:
	// the number taken from its front since at was last emptied.
	at   map[uint64]int
	base int
}

// merge adds next: a group's leadership replaces the one waiting, unless
// that one is of a later term. The managers' periodic broadcasts and the
// replicas' announcements (a new leader's, at once) come from different
// actors, and a broadcast read before a leadership of this node ended may
// arrive after its successor's announcement; the peer would keep the
// later term anyway, if it saw both.
func (p *pendingLeaders) merge(next []LeaderInfo) {
	if p.at == nil {
		p.at = make(map[uint64]int, len(next))
	}
	for _, li := range next {
		if i, ok := p.at[li.Group]; ok {
			if cur := &p.infos[i-p.base]; li.Term >= cur.Term {
				*cur = li
			}
			continue
		}
		p.at[li.Group] = p.base + len(p.infos)
		p.infos = append(p.infos, li)
	}
}

// take removes and returns the leaderships for the next frame (takeLeaders).
func (p *pendingLeaders) take() []LeaderInfo {
	next, rest := takeLeaders(p.infos)
	taken := len(p.infos) - len(rest)
	if rest == nil {
		p.reset()
		return next
	}
	for _, li := range p.infos[:taken] {
		delete(p.at, li.Group)
	}
	p.infos, p.base = rest, p.base+taken
	return next
}

// empty reports whether nothing waits.
func (p *pendingLeaders) empty() bool { return len(p.infos) == 0 }

// reset drops everything waiting.
func (p *pendingLeaders) reset() {
	p.infos, p.base = nil, 0
	clear(p.at)
}

// takeLeaders splits pending into the leaderships for the next frame, as
// many as a frame may carry (limits.go), and the rest, nil when none are
// left. A leadership with more replica ids than a frame may carry, which
// no replica set comes near, can never be sent and is dropped.
func takeLeaders(pending []LeaderInfo) (next, rest []LeaderInfo) {
	for len(pending) > 0 && len(pending[0].ISR) > maxFrameISR {
		pending = pending[1:]
	}
	n, ids := 0, 0
	for _, li := range pending {
		if n == maxFrameLeaders || ids+len(li.ISR) > maxFrameISR {
			break
		}
		n++
		ids += len(li.ISR)
	}
	switch {
	case n == 0:
		return nil, nil
	case n == len(pending):
		return pending, nil
	}
	return pending[:n:n], pending[n:]
}

// appendLeadersComplete marks a frame as the end of a connect-time set.
func appendLeadersComplete(dst []byte, complete bool) []byte {
	if !complete {
		return dst
	}
	dst = protowire.AppendTag(dst, fieldEnvelopeLeadersComplete, protowire.VarintType)
	return protowire.AppendVarint(dst, 1)
}

func appendLeaders(dst []byte, infos []LeaderInfo) []byte {
	for _, li := range infos {
		var body []byte
		body = protowire.AppendTag(body, fieldLeaderGroup, protowire.VarintType)
		body = protowire.AppendVarint(body, li.Group)
		body = protowire.AppendTag(body, fieldLeaderLeader, protowire.VarintType)
		body = protowire.AppendVarint(body, li.Leader)
		body = protowire.AppendTag(body, fieldLeaderTerm, protowire.VarintType)
		body = protowire.AppendVarint(body, li.Term)
		if len(li.ISR) > 0 {
			var packed []byte
			for _, id := range li.ISR {
				packed = protowire.AppendVarint(packed, id)
			}
			body = protowire.AppendTag(body, fieldLeaderISR, protowire.BytesType)
			body = protowire.AppendBytes(body, packed)
		}
		dst = protowire.AppendTag(dst, fieldEnvelopeLeaders, protowire.BytesType)
		dst = protowire.AppendBytes(dst, body)
	}
	return dst
}

// decodeLeader decodes one leadership, charging fb for its replica ids.
func decodeLeader(b []byte, fb *frameBudget) (LeaderInfo, error) {
	var li LeaderInfo
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return li, malformed("leader tag", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldLeaderGroup && typ == protowire.VarintType:
			li.Group, n = protowire.ConsumeVarint(b)
		case num == fieldLeaderLeader && typ == protowire.VarintType:
			li.Leader, n = protowire.ConsumeVarint(b)
		case num == fieldLeaderTerm && typ == protowire.VarintType:
			li.Term, n = protowire.ConsumeVarint(b)
		case num == fieldLeaderISR && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				// One id per varint, whose last byte alone has the
				// high bit clear.
				ids := 0
				for _, c := range v {
					if c < 0x80 {
						ids++
					}
				}
				if err := spend(&fb.isr, ids, "leadership replica ids"); err != nil {
					return li, err
				}
				li.ISR = slices.Grow(li.ISR, ids)
			}
			for len(v) > 0 && n >= 0 {
				id, m := protowire.ConsumeVarint(v)
				if m < 0 {
					return li, malformed("leader isr", protowire.ParseError(m))
				}
				li.ISR = append(li.ISR, id)
				v = v[m:]
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return li, malformed(fmt.Sprintf("leader field %d", num), protowire.ParseError(n))
		}
		b = b[n:]
	}
	return li, nil
}
