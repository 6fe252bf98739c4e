package group

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// state is a group's state, as Kafka names them.
type state int8

const (
	stateEmpty state = iota
	statePreparingRebalance
	stateCompletingRebalance
	stateStable
)

func (s state) String() string {
	return [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable"}[s]
}

// caller is a request waiting for its answer.
type caller struct {
	ref uint64
	to  *actor.PID
}

func (c *caller) answer(ctx actor.Context, resp any) {
	ctx.Send(c.to, &Answer{Ref: c.ref, Resp: resp})
}

// member is one member of a live group.
type member struct {
	id                 string
	instance           *string
	clientID, host     string
	sessionTimeoutMs   int32
	rebalanceTimeoutMs int32
	protocols          []kmsg.JoinGroupRequestProtocol
	assignment         []byte
	deadline           uint64 // session expiry, in ticks

	join    *caller // a JoinGroup waiting for the rebalance to complete
	joinReq *kmsg.JoinGroupRequest
	sync    *caller // a SyncGroup waiting for the leader's assignment
	syncReq *kmsg.SyncGroupRequest
}

// fail answers whatever the member has waiting with code.
func (mb *member) fail(ctx actor.Context, code int16) {
	if mb.join != nil {
		resp := mb.joinReq.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode, resp.Generation, resp.MemberID = code, -1, mb.id
		mb.join.answer(ctx, resp)
		mb.join, mb.joinReq = nil, nil
	}
	if mb.sync != nil {
		resp := mb.syncReq.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = code
		mb.sync.answer(ctx, resp)
		mb.sync, mb.syncReq = nil, nil
	}
}

func (mb *member) metadata(protocol string) []byte {
	for _, p := range mb.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

func (mb *member) sameProtocols(ps []kmsg.JoinGroupRequestProtocol) bool {
	return slices.EqualFunc(mb.protocols, ps, func(a, b kmsg.JoinGroupRequestProtocol) bool {
		return a.Name == b.Name && bytes.Equal(a.Metadata, b.Metadata)
	})
}

// group is a group as its coordinator runs it.
type group struct {
	name         string
	state        state
	protocolType string
	protocol     string
	generation   int32
	leader       string
	members      map[string]*member
	static       map[string]string // instance id → member id
	// pending are KIP-394 member ids handed out and not yet used to join,
	// with the tick they expire at.
	pending map[string]uint64

	// PreparingRebalance: the rebalance completes when every member has
	// rejoined or at rebalanceDeadline; initialDelay extends the first
	// rebalance of an empty group (group.initial.rebalance.delay.ms).
	rebalanceDeadline uint64
	initialDelay      bool
	rebalanceStart    uint64
	// CompletingRebalance: members that still have to SyncGroup, by
	// syncDeadline; storing is set while the leader's assignment is being
	// written.
	awaitingSync map[string]bool
	syncDeadline uint64
	storing      bool
	// deleting is set while a DeleteGroups write is in flight: the group
	// is Kafka's Dead, and takes no members or commits meanwhile.
	deleting bool
	// emptySince is when the live group last became Empty (unix ms, by
	// the leader's clock): Kafka's in-memory currentStateTimestamp, from
	// which offsets retention counts. Until the Empty membership is
	// applied, or for good if its write fails, the store holds an earlier
	// generation's, stamped at the SyncGroup that wrote it, possibly days
	// before. 0 for a group that has not become Empty under this
	// coordinator: the stored time is its own.
	emptySince int64
}

func newGroup(name string) *group {
	return &group{name: name, members: map[string]*member{}, static: map[string]string{}, pending: map[string]uint64{}}
}

// load builds the live groups of a new coordinator from the store.
func (m *Machine) load() {
	m.groups = map[string]*group{}
	for name := range m.store {
		m.live(name, false)
	}
}

// live returns the named live group. A group the coordinator does not run
// yet is built from the store — back in the state it was last written in,
// its members with a fresh session (the ones that died meanwhile expire as
// usual) — or, if create, made empty.
func (m *Machine) live(name string, create bool) *group {
	if g := m.groups[name]; g != nil {
		return g
	}
	s := m.store[name]
	if s == nil && !create {
		return nil
	}
	g := newGroup(name)
	m.groups[name] = g
	if s == nil || s.meta == nil {
		return g
	}
	v := s.meta
	g.protocolType, g.generation = v.ProtocolType, v.Generation
	if v.Protocol != nil {
		g.protocol = *v.Protocol
	}
	if v.Leader != nil {
		g.leader = *v.Leader
	}
	for _, vm := range v.Members {
		mb := &member{id: vm.MemberID, instance: vm.InstanceID, clientID: vm.ClientID, host: vm.ClientHost,
			sessionTimeoutMs: vm.SessionTimeoutMillis, rebalanceTimeoutMs: vm.RebalanceTimeoutMillis,
			protocols:  []kmsg.JoinGroupRequestProtocol{{Name: g.protocol, Metadata: vm.Subscription}},
			assignment: vm.Assignment}
		mb.deadline = m.ticks + m.msTicks(mb.sessionTimeoutMs)
		g.members[mb.id] = mb
		if mb.instance != nil {
			g.static[*mb.instance] = mb.id
		}
	}
	if len(g.members) > 0 {
		g.state = stateStable
	}
	return g
}

// forget drops a live group that has nothing left to remember. A commit
// in flight is something: once applied, it makes the group one that
// ListGroups shows.
func (m *Machine) forget(g *group) {
	if g.state == stateEmpty && len(g.members) == 0 && len(g.pending) == 0 && m.store[g.name] == nil &&
		len(m.committing[g.name]) == 0 {
		delete(m.groups, g.name)
	}
}

// newMemberID returns a new member id: Kafka's client id (or group
// instance id) and a random suffix. The prefix is cut, at a character
// boundary, so that the id fits a record (a client id may be 32767 bytes
// long already): only the suffix makes it unique.
func newMemberID(clientID string, instance *string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	prefix := clientID
	if instance != nil {
		prefix = *instance
	}
	suffix := "-" + hex.EncodeToString(b[:])
	if n := maxRecordString - len(suffix); len(prefix) > n {
		for n > 0 && !utf8.RuneStart(prefix[n]) {
			n--
		}
		prefix = prefix[:n]
	}
	return prefix + suffix
}

func (m *Machine) join(ctx actor.Context, c *caller, call *Call, req *kmsg.JoinGroupRequest) {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation = -1
	fail := func(code int16) {
		resp.ErrorCode = code
		c.answer(ctx, resp)
	}
	if req.Version == 0 {
		req.RebalanceTimeoutMillis = req.SessionTimeoutMillis
	}
	s := m.o.Settings
	if st := int64(req.SessionTimeoutMillis); st < s.MinSessionTimeout.Milliseconds() || st > s.MaxSessionTimeout.Milliseconds() {
		fail(kerr.InvalidSessionTimeout.Code)
		return
	}
	g := m.live(call.Group, true)
	if !g.accepts(req.ProtocolType, req.Protocols) {
		fail(kerr.InconsistentGroupProtocol.Code)
		m.forget(g)
		return
	}
	if req.MemberID == "" {
		if req.InstanceID != nil {
			if old, ok := g.static[*req.InstanceID]; ok {
				m.replaceStatic(ctx, g, g.members[old], c, call, req)
				return
			}
		}
		id := newMemberID(call.ClientID, req.InstanceID)
		// KIP-394: a dynamic member first learns its id and joins with it,
		// so a client that times out and retries does not leave a ghost
		// member behind for a whole session.
		if req.Version >= 4 && req.InstanceID == nil {
			g.pending[id] = m.ticks + m.msTicks(req.SessionTimeoutMillis)
			resp.MemberID = id
			fail(kerr.MemberIDRequired.Code)
			return
		}
		m.addMember(ctx, g, id, c, call, req)
		return
	}
	if req.InstanceID != nil {
		if code := g.checkInstance(req.InstanceID, req.MemberID); code != 0 {
			fail(code)
			return
		}
	}
	if _, ok := g.pending[req.MemberID]; ok {
		delete(g.pending, req.MemberID)
		m.addMember(ctx, g, req.MemberID, c, call, req)
		return
	}
	mb := g.members[req.MemberID]
	if mb == nil {
		fail(kerr.UnknownMemberID.Code)
		return
	}
	switch g.state {
	case stateCompletingRebalance, stateStable:
		// A member that already has this generation's membership with the
		// same protocols gets it again (its join answer was lost); the
		// leader rejoining, or any change, starts a rebalance.
		if mb.sameProtocols(req.Protocols) && (g.state == stateCompletingRebalance || g.leader != mb.id) {
			m.fillJoin(g, mb.id, resp)
			mb.deadline = m.ticks + m.msTicks(mb.sessionTimeoutMs)
			c.answer(ctx, resp)
			return
		}
	case stateEmpty:
		fail(kerr.UnknownMemberID.Code)
		return
	}
	m.updateMember(ctx, g, mb, c, call, req)
	m.rebalance(ctx, g)
}

// accepts reports whether a member with these protocols may join g: the
// group's protocol type, and at least one protocol every member supports.
func (g *group) accepts(protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	if protocolType == "" || len(protocols) == 0 {
		return false
	}
	if len(g.members) == 0 {
		return true
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		if g.supportedByAll(p.Name) {
			return true
		}
	}
	return false
}

func (g *group) supportedByAll(protocol string) bool {
	for _, mb := range g.members {
		if !slices.ContainsFunc(mb.protocols, func(p kmsg.JoinGroupRequestProtocol) bool { return p.Name == protocol }) {
			return false
		}
	}
	return true
}

func (g *group) checkInstance(instance *string, memberID string) int16 {
	known, ok := g.static[*instance]
	switch {
	case !ok:
		return kerr.UnknownMemberID.Code
	case known != memberID:
		return kerr.FencedInstanceID.Code
	}
	return 0
}

func (m *Machine) addMember(ctx actor.Context, g *group, id string, c *caller, call *Call, req *kmsg.JoinGroupRequest) {
	if len(g.members) == 0 {
		g.protocolType = req.ProtocolType
	}
	mb := &member{id: id, instance: req.InstanceID, clientID: call.ClientID, host: call.ClientHost}
	g.members[id] = mb
	if mb.instance != nil {
		g.static[*mb.instance] = id
	}
	m.updateMember(ctx, g, mb, c, call, req)
	if g.state == statePreparingRebalance && g.initialDelay {
		// Every member that joins during the initial delay extends it, up
		// to the rebalance timeout from the start of the rebalance.
		g.rebalanceDeadline = min(m.ticks+m.ticksOf(m.o.Settings.InitialRebalanceDelay), g.rebalanceStart+m.msTicks(g.maxRebalanceTimeout()))
	}
	m.rebalance(ctx, g)
}

// updateMember records a member's join and makes it wait for the rebalance.
func (m *Machine) updateMember(ctx actor.Context, g *group, mb *member, c *caller, call *Call, req *kmsg.JoinGroupRequest) {
	if mb.join != nil {
		// A second join before the first was answered: the first one's
		// client has given up on it.
		old := mb.joinReq.ResponseKind().(*kmsg.JoinGroupResponse)
		old.ErrorCode, old.Generation, old.MemberID = kerr.RebalanceInProgress.Code, -1, mb.id
		mb.join.answer(ctx, old)
	}
	mb.protocols = req.Protocols
	mb.sessionTimeoutMs, mb.rebalanceTimeoutMs = req.SessionTimeoutMillis, req.RebalanceTimeoutMillis
	mb.clientID, mb.host = call.ClientID, call.ClientHost
	mb.join, mb.joinReq = c, req
}

// replaceStatic serves a static member that rejoins without its member id
// (KIP-345): it gets a new id, the old one is fenced, and a stable group
// rebalances only if the group would now choose another protocol, as
// Kafka's updateStaticMemberAndRebalance decides. A restarted consumer's
// metadata differs from its old one's (it owns no partitions yet, and a
// coordinator that moved kept only the chosen protocol), so comparing the
// protocols would rebalance on every restart, which static membership is
// there to avoid.
func (m *Machine) replaceStatic(ctx actor.Context, g *group, old *member, c *caller, call *Call, req *kmsg.JoinGroupRequest) {
	id := newMemberID(call.ClientID, req.InstanceID)
	if old == nil {
		delete(g.static, *req.InstanceID)
		m.addMember(ctx, g, id, c, call, req)
		return
	}
	old.fail(ctx, kerr.FencedInstanceID.Code)
	delete(g.members, old.id)
	mb := &member{id: id, instance: req.InstanceID, clientID: call.ClientID, host: call.ClientHost, assignment: old.assignment,
		protocols: req.Protocols, sessionTimeoutMs: req.SessionTimeoutMillis, rebalanceTimeoutMs: req.RebalanceTimeoutMillis}
	g.members[id] = mb
	g.static[*req.InstanceID] = id
	if g.leader == old.id {
		g.leader = id
	}
	if g.state == stateStable && g.chooseProtocol() == g.protocol {
		mb.deadline = m.ticks + m.msTicks(mb.sessionTimeoutMs)
		// The new member id is written before the member gets it, so that
		// it survives a coordinator move; if the write fails, the old
		// member is back (as Kafka reverts it).
		m.storeGroup(ctx, g, func(ctx actor.Context, err error) {
			resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
			if err != nil {
				if m.groups[g.name] == g && g.members[id] == mb {
					delete(g.members, id)
					g.members[old.id], g.static[*req.InstanceID] = old, old.id
					if g.leader == id {
						g.leader = old.id
					}
				}
				resp.ErrorCode, resp.Generation = writeCode(err), -1
				c.answer(ctx, resp)
				return
			}
			m.fillJoin(g, id, resp)
			if resp.LeaderID == id {
				if req.Version >= 9 {
					// KIP-814: the leader need not run its assignor again.
					resp.SkipAssignment = true
				} else {
					// An older leader would run its assignor, and a
					// stable group would ignore the result: Kafka names
					// the old member the leader instead.
					resp.LeaderID, resp.Members = old.id, nil
				}
			}
			c.answer(ctx, resp)
		})
		return
	}
	mb.join, mb.joinReq = c, req
	m.rebalance(ctx, g)
}

func (g *group) maxRebalanceTimeout() int32 {
	var t int32
	for _, mb := range g.members {
		t = max(t, mb.rebalanceTimeoutMs)
	}
	return t
}

// rebalance moves g to PreparingRebalance (or restarts its wait there).
func (m *Machine) rebalance(ctx actor.Context, g *group) {
	if g.state == stateCompletingRebalance {
		for _, mb := range g.members {
			mb.assignment = nil
			if mb.sync != nil {
				resp := mb.syncReq.ResponseKind().(*kmsg.SyncGroupResponse)
				resp.ErrorCode = kerr.RebalanceInProgress.Code
				mb.sync.answer(ctx, resp)
				mb.sync, mb.syncReq = nil, nil
			}
		}
		g.awaitingSync, g.storing = nil, false
	}
	if g.state != statePreparingRebalance {
		g.initialDelay = g.state == stateEmpty && m.o.Settings.InitialRebalanceDelay > 0
		if g.initialDelay {
			g.rebalanceDeadline = m.ticks + min(m.ticksOf(m.o.Settings.InitialRebalanceDelay), m.msTicks(g.maxRebalanceTimeout()))
		} else {
			g.rebalanceDeadline = m.ticks + m.msTicks(g.maxRebalanceTimeout())
		}
		g.state, g.rebalanceStart = statePreparingRebalance, m.ticks
	}
	m.maybeCompleteJoin(ctx, g)
}

// maybeCompleteJoin ends the join phase once every member rejoined (and
// the initial delay, if any, is over).
func (m *Machine) maybeCompleteJoin(ctx actor.Context, g *group) {
	if g.state != statePreparingRebalance {
		return
	}
	if g.initialDelay && m.ticks < g.rebalanceDeadline {
		return
	}
	if m.ticks < g.rebalanceDeadline {
		// Kafka's hasAllMembersJoined: every member rejoined and no
		// member id handed out (KIP-394) is still to be used.
		if len(g.pending) > 0 {
			return
		}
		for _, mb := range g.members {
			if mb.join == nil {
				return
			}
		}
	}
	m.completeJoin(ctx, g)
}

// completeJoin starts the next generation with the members that rejoined:
// it picks the protocol and the leader, and answers every join.
func (m *Machine) completeJoin(ctx actor.Context, g *group) {
	for id, mb := range g.members {
		// Kafka drops the dynamic members that did not rejoin; a static
		// one keeps its place (KIP-345), and learns of the new generation
		// from its next heartbeat: it must sync it in time, as the others.
		if mb.join == nil && mb.instance == nil {
			m.removeMember(ctx, g, mb)
			delete(g.members, id)
		}
	}
	g.initialDelay = false
	if len(g.members) > 0 && !slices.ContainsFunc(slices.Collect(maps.Values(g.members)), func(mb *member) bool { return mb.join != nil }) {
		// Only static members are left and none rejoined: as Kafka's
		// onCompleteJoin, the rebalance waits another rebalance timeout
		// (while a member's heartbeats tell it to rejoin) until one does
		// or their sessions expire.
		g.rebalanceDeadline = m.ticks + m.msTicks(g.maxRebalanceTimeout())
		return
	}
	g.generation++
	if g.generation < 0 {
		g.generation = 1
	}
	if len(g.members) == 0 {
		g.state, g.protocol, g.leader = stateEmpty, "", ""
		g.emptySince = m.o.Now().UnixMilli()
		gen := g.generation
		m.storeGroup(ctx, g, func(ctx actor.Context, err error) {
			// As Kafka, no retry: the members stored with the last
			// generation expire under a later coordinator, and retention
			// here counts from emptySince meanwhile.
			if err != nil && !errors.Is(err, errNotCoordinator) {
				m.o.Log.Warn().Err(err).Str("consumer_group", g.name).Int32("generation", gen).
					Msg("write of an empty group failed")
			}
		})
		return
	}
	g.state = stateCompletingRebalance
	g.protocol = g.chooseProtocol()
	if l := g.members[g.leader]; l == nil || l.join == nil {
		var joined []string
		for id, mb := range g.members {
			if mb.join != nil {
				joined = append(joined, id)
			}
		}
		g.leader = slices.Min(joined)
	}
	// Every member of the generation must sync it within the rebalance
	// timeout, a static one that did not rejoin too (Kafka's
	// onCompleteJoin adds them all to its pending syncs), or it is
	// removed and the group rebalances without it.
	g.awaitingSync = map[string]bool{}
	g.syncDeadline = m.ticks + m.msTicks(g.maxRebalanceTimeout())
	for _, mb := range g.members {
		g.awaitingSync[mb.id] = true
		if mb.join == nil {
			continue // a static member that did not rejoin
		}
		resp := mb.joinReq.ResponseKind().(*kmsg.JoinGroupResponse)
		m.fillJoin(g, mb.id, resp)
		mb.join.answer(ctx, resp)
		mb.join, mb.joinReq = nil, nil
		mb.deadline = m.ticks + m.msTicks(mb.sessionTimeoutMs)
	}
}

// chooseProtocol is Kafka's vote: among the protocols every member
// supports, each member votes for the first of its own list.
func (g *group) chooseProtocol() string {
	votes := map[string]int{}
	for _, mb := range g.members {
		for _, p := range mb.protocols {
			if g.supportedByAll(p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best, n := "", -1
	for _, name := range slices.Sorted(maps.Keys(votes)) {
		if votes[name] > n {
			best, n = name, votes[name]
		}
	}
	return best
}

func (m *Machine) fillJoin(g *group, id string, resp *kmsg.JoinGroupResponse) {
	resp.Generation = g.generation
	resp.ProtocolType = kmsg.StringPtr(g.protocolType)
	resp.Protocol = kmsg.StringPtr(g.protocol)
	resp.LeaderID = g.leader
	resp.MemberID = id
	resp.Members = nil
	if g.leader == id {
		for _, mid := range slices.Sorted(maps.Keys(g.members)) {
			mb := g.members[mid]
			resp.Members = append(resp.Members, kmsg.JoinGroupResponseMember{MemberID: mb.id, InstanceID: mb.instance, ProtocolMetadata: mb.metadata(g.protocol)})
		}
	}
}

// removeMember forgets a member's static id and answers what it has
// waiting; the caller deletes it from g.members.
func (m *Machine) removeMember(ctx actor.Context, g *group, mb *member) {
	mb.fail(ctx, kerr.UnknownMemberID.Code)
	if mb.instance != nil && g.static[*mb.instance] == mb.id {
		delete(g.static, *mb.instance)
	}
	delete(g.awaitingSync, mb.id)
}

func (m *Machine) sync(ctx actor.Context, c *caller, call *Call, req *kmsg.SyncGroupRequest) {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	fail := func(code int16) {
		resp.ErrorCode = code
		c.answer(ctx, resp)
	}
	g := m.live(call.Group, false)
	if g == nil {
		fail(kerr.UnknownMemberID.Code)
		return
	}
	if req.InstanceID != nil {
		if code := g.checkInstance(req.InstanceID, req.MemberID); code != 0 {
			fail(code)
			return
		}
	}
	mb := g.members[req.MemberID]
	switch {
	case mb == nil:
		fail(kerr.UnknownMemberID.Code)
		return
	case req.Generation != g.generation:
		fail(kerr.IllegalGeneration.Code)
		return
	case req.ProtocolType != nil && *req.ProtocolType != g.protocolType,
		req.Protocol != nil && *req.Protocol != g.protocol:
		fail(kerr.InconsistentGroupProtocol.Code)
		return
	}
	mb.deadline = m.ticks + m.msTicks(mb.sessionTimeoutMs)
	switch g.state {
	case statePreparingRebalance:
		fail(kerr.RebalanceInProgress.Code)
	case stateStable:
		delete(g.awaitingSync, mb.id)
		resp.ProtocolType, resp.Protocol = kmsg.StringPtr(g.protocolType), kmsg.StringPtr(g.protocol)
		resp.MemberAssignment = mb.assignment
		c.answer(ctx, resp)
	case stateCompletingRebalance:
		if mb.sync != nil {
			old := mb.syncReq.ResponseKind().(*kmsg.SyncGroupResponse)
			old.ErrorCode = kerr.RebalanceInProgress.Code
			mb.sync.answer(ctx, old)
		}
		mb.sync, mb.syncReq = c, req
		delete(g.awaitingSync, mb.id)
		if mb.id != g.leader || g.storing {
			return
		}
		// The leader's assignment is written before anyone gets it, so
		// that a new coordinator knows this generation.
		assignments := map[string][]byte{}
		for _, a := range req.GroupAssignment {
			assignments[a.MemberID] = a.MemberAssignment
		}
		for _, other := range g.members {
			other.assignment = assignments[other.id]
			if len(other.assignment) == 0 && g.protocolType == "consumer" {
				other.assignment = emptyConsumerAssignment
			}
		}
		g.storing = true
		gen := g.generation
		m.storeGroup(ctx, g, func(ctx actor.Context, err error) {
			if m.groups[g.name] != g || g.generation != gen || g.state != stateCompletingRebalance {
				return // a new rebalance began meanwhile; it answered the syncs
			}
			g.storing = false
			if errors.Is(err, errNotCoordinator) {
				return // resigning: every member's waiting call is answered there
			}
			if err != nil {
				for _, other := range g.members {
					if other.sync != nil {
						resp := other.syncReq.ResponseKind().(*kmsg.SyncGroupResponse)
						resp.ErrorCode = writeCode(err)
						other.sync.answer(ctx, resp)
						other.sync, other.syncReq = nil, nil
					}
				}
				m.rebalance(ctx, g)
				return
			}
			g.state = stateStable // awaitingSync still bounds the members that have not synced
			for _, other := range g.members {
				if other.sync != nil {
					resp := other.syncReq.ResponseKind().(*kmsg.SyncGroupResponse)
					resp.ProtocolType, resp.Protocol = kmsg.StringPtr(g.protocolType), kmsg.StringPtr(g.protocol)
					resp.MemberAssignment = other.assignment
					other.sync.answer(ctx, resp)
					other.sync, other.syncReq = nil, nil
				}
			}
		})
	default:
		fail(kerr.UnknownMemberID.Code)
	}
}

// emptyConsumerAssignment is a consumer-protocol assignment of nothing, so
// that a member the leader left out can still decode its assignment.
var emptyConsumerAssignment = func() []byte {
	a := kmsg.NewConsumerMemberAssignment()
	return a.AppendTo(nil)
}()

func (m *Machine) heartbeat(ctx actor.Context, c *caller, call *Call, req *kmsg.HeartbeatRequest) {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	resp.ErrorCode = m.heartbeatCode(call.Group, req)
	c.answer(ctx, resp)
}

func (m *Machine) heartbeatCode(name string, req *kmsg.HeartbeatRequest) int16 {
	g := m.live(name, false)
	if g == nil {
		return kerr.UnknownMemberID.Code
	}
	if req.InstanceID != nil {
		if code := g.checkInstance(req.InstanceID, req.MemberID); code != 0 {
			return code
		}
	}
	mb := g.members[req.MemberID]
	switch {
	case mb == nil:
		return kerr.UnknownMemberID.Code
	case req.Generation != g.generation:
		return kerr.IllegalGeneration.Code
	}
	mb.deadline = m.ticks + m.msTicks(mb.sessionTimeoutMs)
	switch g.state {
	case statePreparingRebalance:
		return kerr.RebalanceInProgress.Code
	case stateCompletingRebalance, stateStable:
		return 0
	}
	return kerr.UnknownMemberID.Code
}

func (m *Machine) leave(ctx actor.Context, c *caller, call *Call, req *kmsg.LeaveGroupRequest) {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	g := m.live(call.Group, false)
	removed := false
	for _, lm := range leaving {
		// Each member is answered as it was asked for, an admin's removal
		// by instance id alone included (Kafka's memberLeaveError): the
		// Java client matches the answers to its request by both ids.
		r := kmsg.NewLeaveGroupResponseMember()
		r.MemberID, r.InstanceID = lm.MemberID, lm.InstanceID
		id := lm.MemberID
		switch {
		case g == nil:
			r.ErrorCode = kerr.UnknownMemberID.Code
		case lm.InstanceID != nil:
			known, ok := g.static[*lm.InstanceID]
			switch {
			case !ok:
				r.ErrorCode = kerr.UnknownMemberID.Code
			case id != "" && id != known:
				r.ErrorCode = kerr.FencedInstanceID.Code
			default:
				id = known
			}
		}
		if r.ErrorCode == 0 {
			if mb := g.members[id]; mb != nil {
				m.removeMember(ctx, g, mb)
				delete(g.members, id)
				removed = true
			} else if _, ok := g.pending[id]; ok {
				delete(g.pending, id)
			} else {
				r.ErrorCode = kerr.UnknownMemberID.Code
			}
		}
		resp.Members = append(resp.Members, r)
	}
	if req.Version < 3 {
		resp.ErrorCode, resp.Members = resp.Members[0].ErrorCode, nil
	}
	c.answer(ctx, resp)
	if removed {
		m.rebalance(ctx, g)
	}
}

// expire runs g's deadlines: sessions, the pending member ids, the join
// and sync phases of a rebalance.
func (m *Machine) expire(ctx actor.Context, g *group) {
	for id, deadline := range g.pending {
		if m.ticks >= deadline {
			delete(g.pending, id)
		}
	}
	gone := false
	for id, mb := range g.members {
		// A member waiting in JoinGroup or SyncGroup is alive: its
		// session is the rebalance's business (Kafka's shouldKeepAlive).
		if mb.join == nil && mb.sync == nil && m.ticks >= mb.deadline {
			m.o.Log.Info().Str("consumer_group", g.name).Str("member", id).Msg("group member session expired")
			m.removeMember(ctx, g, mb)
			delete(g.members, id)
			gone = true
		}
	}
	switch g.state {
	case statePreparingRebalance:
		// As Kafka's removeMemberAndUpdateGroup: a member gone during a
		// rebalance may let its join complete now, and that is all; the
		// generation it makes is the one the others sync.
		m.maybeCompleteJoin(ctx, g)
	case stateCompletingRebalance, stateStable:
		if m.ticks >= g.syncDeadline && len(g.awaitingSync) > 0 {
			// Members that never synced this generation go, as Kafka's
			// pending-sync timeout removes them, even once the group is
			// stable.
			for id := range g.awaitingSync {
				if mb := g.members[id]; mb != nil {
					m.removeMember(ctx, g, mb)
					delete(g.members, id)
				}
			}
			gone = true
		}
		if gone {
			m.rebalance(ctx, g)
		}
	}
	m.forget(g)
}

// storeGroup writes g's membership; done (if not nil) runs once it is
// applied or failed.
func (m *Machine) storeGroup(ctx actor.Context, g *group, done func(ctx actor.Context, err error)) {
	var w recordWriter
	w.group(g.name, g.value(m.o.Now().UnixMilli()))
	if done == nil {
		done = func(actor.Context, error) {}
	}
	m.propose(ctx, &w, done)
}

// value is g's membership as Kafka writes it to the offsets topic.
func (g *group) value(now int64) *kmsg.GroupMetadataValue {
	v := kmsg.NewGroupMetadataValue()
	v.ProtocolType, v.Generation, v.CurrentStateTimestamp = g.protocolType, g.generation, now
	if g.protocol != "" {
		v.Protocol = kmsg.StringPtr(g.protocol)
	}
	if g.leader != "" {
		v.Leader = kmsg.StringPtr(g.leader)
	}
	for _, id := range slices.Sorted(maps.Keys(g.members)) {
		mb := g.members[id]
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID, vm.InstanceID, vm.ClientID, vm.ClientHost = mb.id, mb.instance, mb.clientID, mb.host
		vm.RebalanceTimeoutMillis, vm.SessionTimeoutMillis = mb.rebalanceTimeoutMs, mb.sessionTimeoutMs
		vm.Subscription, vm.Assignment = mb.metadata(g.protocol), mb.assignment
		v.Members = append(v.Members, vm)
	}
	return &v
}
