package controller

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/raftactor"
)

// How the controller actor carries out membership changes (membership.go
// has the state). Every broker's actor keeps its peer table in step with
// the membership, says hello while it is not a member, asks for the
// removals its config reload requested (and withdraws them when its config
// lists the broker again), and stops when it finds itself removed; the
// controller group's leader's actor adds and promotes members, starts the
// removals a majority of the staying voters asked for, drains and removes
// members, one conf change at a time, and never leaves the controller
// group or a partition without a live majority.

const (
	// helloEveryTicks paces a non-member's hellos and the removal notices.
	helloEveryTicks = 20
	// removedGraceTicks is how long a broker keeps telling a removed peer
	// that it was removed before forgetting it.
	removedGraceTicks = 600
	// confPatienceTicks is how long the leader waits for a conf change it
	// proposed to be applied before it may propose again.
	confPatienceTicks = 100
	// maxDrainMoves bounds the reassignments under way off a draining
	// broker (MaxMovesPerBroker bounds those that run).
	maxDrainMoves = 2 * MaxMovesPerBroker
)

// membership is the controller actor's membership bookkeeping.
type membership struct {
	peersSeen   uint64            // view.Applied of the last peer sync
	configPeers map[uint64]string // the config's peers at the last sync
	removedAt   map[uint64]uint64 // removed id → tick this actor saw it removed
	// wantRemoved are the members whose removal this broker asks for
	// (true: a config reload dropped them) or no longer asks for (false:
	// its config lists them again), until the state shows it so.
	wantRemoved map[uint64]bool
	requesting  map[uint64]bool // RemovalRequest proposals in flight
	starting    map[uint64]bool // RemoveBroker proposals in flight
	// reregistering are members whose new addresses are being registered.
	reregistering map[uint64]bool
	// askers are brokers made peers only to answer their registration
	// queries (probe.go).
	askers map[uint64]asker
	// activeAt is, while this broker leads the controller group, the tick
	// at which each member was last seen active in it (raft's RecentActive),
	// or first looked at.
	activeAt map[uint64]uint64
	// complained are the problems already logged: the checks that find
	// them run every other tick.
	complained map[string]bool
	confSentAt uint64            // tick of the last conf change proposed; 0 for none
	confDone   func(*State) bool // whether that conf change shows in the state
	stopped    bool              // this broker found itself removed
}

// tickMembership runs the membership work due on this tick.
func (c *controllerActor) tickMembership(ctx actor.Context) {
	view := c.o.Machine.View()
	if view.IsRemoved(c.o.NodeID) {
		c.removed(fmt.Sprintf("node %d was removed from cluster %s at controller index %d", c.o.NodeID, view.ClusterID, view.Applied))
		return
	}
	c.syncPeers(view)
	c.noteActive()
	if c.ticks%helloEveryTicks == 0 {
		// A member says hello too, if rarely: one that was down when the
		// cluster removed it would otherwise never hear of it.
		if !inConf(view, c.o.Board.Get(ControllerGroup), c.o.NodeID) || c.ticks%(10*helloEveryTicks) == 0 {
			c.sayHello(ctx, view)
		}
		c.noticeRemoved(ctx, view)
	}
	c.requestRemovals(ctx, view)
	if st := c.o.Board.Get(ControllerGroup); st != nil && st.Role == "leader" {
		c.driveMembership(ctx, view, st)
	}
}

// syncPeers keeps the transport's peer table equal to the registered
// brokers and the config's peers, less this broker and the ids removed
// long enough ago. A registered address wins over the config's.
func (c *controllerActor) syncPeers(view *State) {
	if c.o.Network == nil {
		return
	}
	cfg := c.configPeers()
	if view.Applied == c.mb.peersSeen && maps.Equal(cfg, c.mb.configPeers) && c.ticks%helloEveryTicks != 0 {
		return
	}
	c.mb.peersSeen, c.mb.configPeers = view.Applied, cfg
	want := maps.Clone(cfg)
	if want == nil {
		want = map[uint64]string{}
	}
	for id, b := range view.Brokers {
		if b.RaftAddr != "" {
			want[id] = b.RaftAddr
		}
	}
	for id, a := range c.mb.askers {
		if c.ticks-a.at > askerGraceTicks {
			delete(c.mb.askers, id)
			continue
		}
		if _, ok := want[id]; !ok {
			want[id] = a.addr
		}
	}
	delete(want, c.o.NodeID)
	for _, id := range view.Removed {
		at, ok := c.mb.removedAt[id]
		if !ok {
			c.mb.removedAt[id] = c.ticks
			continue
		}
		if c.ticks-at > removedGraceTicks {
			delete(want, id)
		}
	}
	for id, addr := range want {
		if c.peers[id] == addr {
			continue
		}
		if err := c.o.Network.SetPeer(id, addr); err != nil {
			if c.complainOnce(fmt.Sprintf("peer %d at %s", id, addr)) {
				c.o.Log.Warn().Err(err).Uint64("peer", id).Str("addr", addr).Msg("cannot add peer")
			}
			continue
		}
		c.peers[id] = addr
	}
	for id := range c.peers {
		if _, ok := want[id]; !ok {
			c.o.Network.RemovePeer(id)
			delete(c.peers, id)
		}
	}
}

func (c *controllerActor) configPeers() map[uint64]string {
	if c.o.ConfigPeers == nil {
		return nil
	}
	return c.o.ConfigPeers()
}

// inConf reports whether id is a member of the controller group, in the
// applied state or in raft's own configuration (which a state restored
// from a snapshot older than the membership fields lacks): a voter must
// never be added again as a learner, which would demote it.
func inConf(view *State, st *raftactor.GroupStatus, id uint64) bool {
	return view.IsMember(id) || st != nil && (slices.Contains(st.Voters, id) || slices.Contains(st.Learners, id))
}

// sayHello asks every known peer to let this broker in.
func (c *controllerActor) sayHello(ctx actor.Context, view *State) {
	m := &control{Hello: &hello{NodeID: c.o.NodeID, RaftAddr: c.o.RaftAddr, KafkaAddr: c.o.KafkaAddr, ClusterID: view.ClusterID}}
	for id := range c.peers {
		c.sendControl(ctx, id, m)
	}
}

// noticeRemoved tells recently removed brokers that they were.
func (c *controllerActor) noticeRemoved(ctx actor.Context, view *State) {
	for id, at := range c.mb.removedAt {
		if c.ticks-at <= removedGraceTicks {
			c.sendControl(ctx, id, &control{Removed: &removedNotice{NodeID: id, ClusterID: view.ClusterID}})
		}
	}
}

// movedSilentTicks is how long a member must have been silent at its
// registered addresses (3 s at 50 ms ticks, several election timeouts)
// before a hello naming new addresses for it is believed, or a removal
// counts it dead.
const movedSilentTicks = 60

// activeLately reports whether raft, on this controller leader, has seen
// member id active within movedSilentTicks (a member not looked at yet
// counts as active: this broker may have just become the leader).
func (c *controllerActor) activeLately(id uint64) bool {
	at, seen := c.mb.activeAt[id]
	return !seen || c.ticks-at < movedSilentTicks
}

// noteActive records, while this broker leads the controller group, which
// members raft last saw active: a member that moved answers nothing at its
// old addresses.
func (c *controllerActor) noteActive() {
	st := c.o.Board.Get(ControllerGroup)
	if st == nil || st.Role != "leader" {
		clear(c.mb.activeAt)
		return
	}
	for key, pr := range st.Progress {
		id, err := strconv.ParseUint(key, 10, 64)
		if err != nil {
			continue
		}
		// RecentActive alone is not enough: CheckQuorum clears it every
		// election timeout, and a sample may always fall just after. A
		// follower raft streams to answers; one that stopped answering is
		// probed (the transport reports it unreachable).
		if _, seen := c.mb.activeAt[id]; pr.RecentActive || pr.State == "replicate" || !seen {
			c.mb.activeAt[id] = c.ticks
		}
	}
}

// onHello admits a broker that asks to join, if this broker leads the
// controller group and no other change is under way; a removed id is told
// so instead. The hello comes again every second, so anything not done now
// is done then.
func (c *controllerActor) onHello(ctx actor.Context, h *hello) {
	view := c.o.Machine.View()
	st := c.o.Board.Get(ControllerGroup)
	switch {
	case view.IsRemoved(h.NodeID):
		// It may not be a peer any more: add it back long enough to hear.
		if c.o.Network != nil && c.peers[h.NodeID] == "" && h.RaftAddr != "" {
			if err := c.o.Network.SetPeer(h.NodeID, h.RaftAddr); err == nil {
				c.peers[h.NodeID] = h.RaftAddr
				c.mb.removedAt[h.NodeID] = c.ticks
			}
		}
		c.sendControl(ctx, h.NodeID, &control{Removed: &removedNotice{NodeID: h.NodeID, ClusterID: view.ClusterID}})
	case st == nil || st.Role != "leader", view.ClusterID == "":
	case inConf(view, st, h.NodeID):
		// A member that moved to new addresses is registered anew: its
		// peers would otherwise keep dialling the old ones, and it could
		// never hear a leader to register itself.
		b, ok := view.Brokers[h.NodeID]
		if h.RaftAddr == "" || (ok && b.RaftAddr == h.RaftAddr && b.KafkaAddr == h.KafkaAddr) || c.mb.reregistering[h.NodeID] {
			return
		}
		id := h.NodeID
		// A member that answers at its registered addresses has not moved:
		// the hello comes from a second process started with its node id.
		// Registering that one's addresses would send clients and peers to
		// it (Kafka refuses it with DUPLICATE_BROKER_REGISTRATION).
		if c.activeLately(id) {
			if c.complainOnce(fmt.Sprintf("duplicate %d at %s", id, h.RaftAddr)) {
				c.o.Log.Error().Uint64("node_id", id).Str("its_raft_addr", h.RaftAddr).Str("its_kafka_addr", h.KafkaAddr).
					Str("raft_addr", b.RaftAddr).Str("kafka_addr", b.KafkaAddr).
					Msg("a second process claims the node id of a member that answers at its registered addresses; ignored")
			}
			return
		}
		c.mb.reregistering[id] = true
		c.o.Log.Info().Uint64("node_id", id).Str("raft_addr", h.RaftAddr).Str("kafka_addr", h.KafkaAddr).Msg("a member has new addresses; registering them")
		c.propose(ctx, &Command{RegisterBroker: &RegisterBroker{NodeID: id, KafkaAddr: h.KafkaAddr, RaftAddr: h.RaftAddr}}, func(*raftactor.Proposed) {
			delete(c.mb.reregistering, id)
		})
	case h.ClusterID != "" && h.ClusterID != view.ClusterID:
		if c.complainOnce(fmt.Sprintf("hello from %d of cluster %s", h.NodeID, h.ClusterID)) {
			c.o.Log.Warn().Uint64("node_id", h.NodeID).Str("its_cluster", h.ClusterID).Str("cluster", view.ClusterID).Msg("a broker of another cluster asks to join; ignored")
		}
	case h.NodeID == 0 || h.RaftAddr == "":
	default:
		ctxb, _ := json.Marshal(JoinContext{NodeID: h.NodeID, RaftAddr: h.RaftAddr, KafkaAddr: h.KafkaAddr})
		id := h.NodeID
		c.proposeConfChange(ctx, pb.ConfChangeAddLearnerNode, id, ctxb, func(s *State) bool { return s.IsMember(id) })
	}
}

// proposeConfChange proposes one membership change of the controller group
// unless another is still waiting to show in the state.
func (c *controllerActor) proposeConfChange(ctx actor.Context, typ pb.ConfChangeType, id uint64, context []byte, done func(*State) bool) {
	if c.confPending() {
		return
	}
	c.mb.confSentAt, c.mb.confDone = c.ticks, done
	cc := &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(id)}}, Context: context}
	c.o.Log.Info().Str("change", typ.String()).Uint64("node_id", id).Msg("proposing a controller membership change")
	ctx.Send(c.o.Raft, &raftactor.ProposeConfChange{Change: cc})
}

func (c *controllerActor) confPending() bool {
	if c.mb.confSentAt == 0 {
		return false
	}
	if c.mb.confDone(c.o.Machine.View()) || c.ticks-c.mb.confSentAt > confPatienceTicks {
		c.mb.confSentAt, c.mb.confDone = 0, nil
		return false
	}
	return true
}

// requestRemovals keeps this broker's removal requests in the state in
// step with what it wants: RequestRemoval's ids are asked for, and a
// request stands only while the config leaves the broker out. A reload
// that lists it again (the operator changed their mind, or the file read
// before was cut short) withdraws the request, as does a restart with such
// a config. Each is proposed until the state shows it, from a caught-up
// state only: a broker that has just started may not have applied the
// membership yet.
func (c *controllerActor) requestRemovals(ctx actor.Context, view *State) {
	if !c.o.Machine.CaughtUp() {
		return
	}
	cfg := c.configPeers()
	for id, by := range view.RemovalRequests {
		if _, listed := cfg[id]; listed && slices.Contains(by, c.o.NodeID) {
			c.mb.wantRemoved[id] = false
		}
	}
	for id, want := range c.mb.wantRemoved {
		if _, listed := cfg[id]; listed && want {
			want, c.mb.wantRemoved[id] = false, false
		}
		if !want && view.IsDraining(id) && c.complainOnce(fmt.Sprintf("withdraw %d", id)) {
			c.o.Log.Warn().Uint64("node_id", id).Msg("the config lists a broker again whose removal has started: it cannot be undone")
		}
		if id == c.o.NodeID || !view.IsMember(id) || view.IsDraining(id) || slices.Contains(view.RemovalRequests[id], c.o.NodeID) == want {
			delete(c.mb.wantRemoved, id)
			continue
		}
		if c.mb.requesting[id] || !view.IsMember(c.o.NodeID) {
			continue // a request from a broker not yet a member is ignored
		}
		c.mb.requesting[id] = true
		c.propose(ctx, &Command{RemovalRequest: &RemovalRequest{NodeID: id, By: c.o.NodeID, Withdraw: !want}}, func(p *raftactor.Proposed) {
			delete(c.mb.requesting, id)
			if p.Err != nil {
				c.o.Log.Debug().Err(p.Err).Uint64("node_id", id).Msg("removal request not applied; retrying")
			}
		})
	}
}

// driveMembership is the controller leader's part: promote caught-up
// learners, start the removals agreed on, then drain and remove the
// brokers leaving.
func (c *controllerActor) driveMembership(ctx actor.Context, view *State, st *raftactor.GroupStatus) {
	if c.confPending() {
		return
	}
	for _, id := range view.Learners {
		pr, ok := st.Progress[strconv.FormatUint(id, 10)]
		if ok && caughtUp(pr, st) && !view.IsDraining(id) {
			c.proposeConfChange(ctx, pb.ConfChangeAddNode, id, nil, func(s *State) bool { return slices.Contains(s.Voters, id) })
			return
		}
	}
	c.startRemovals(ctx, view)
	for _, id := range view.Draining {
		if c.drain(ctx, view, id) {
			continue
		}
		// Checked again: a voter may have died during the drain.
		if err := view.removalQuorum(id, c.removalLive); err != nil {
			if c.complainOnce("remove " + err.Error()) {
				c.o.Log.Warn().Err(err).Uint64("node_id", id).Msg("broker drained; its removal waits until the voters that remain are a live majority")
			}
			continue
		}
		if id == c.o.NodeID {
			// A leader removing itself would lead a group it is not in
			// until the change applies: hand the group over first.
			if to := c.successor(view, st); to != 0 {
				ctx.Send(c.o.Raft, &raftactor.TransferLeader{To: to})
			}
			return
		}
		c.proposeConfChange(ctx, pb.ConfChangeRemoveNode, id, nil, func(s *State) bool { return !s.IsMember(id) })
		return
	}
}

// startRemovals proposes RemoveBroker, which starts the drain, for each
// member whose removal a majority of the voters that stay asked for
// (State.RemovalAgreed) while the controller group would keep a live
// quorum without it (State.removalQuorum); a removal that waits says once
// what for.
func (c *controllerActor) startRemovals(ctx actor.Context, view *State) {
	for _, id := range slices.Sorted(maps.Keys(view.RemovalRequests)) {
		if c.mb.starting[id] || !view.IsMember(id) || view.IsDraining(id) {
			continue
		}
		if agreed, missing := view.RemovalAgreed(id); !agreed {
			if c.complainOnce(fmt.Sprintf("removal of %d waits for %v", id, missing)) {
				c.o.Log.Info().Uint64("node_id", id).Uints64("asked_by", view.RemovalRequests[id]).Uints64("not_asked_by", missing).
					Msg("broker removal waits until a majority of the voters that stay ask for it (drop it from their peers and send them SIGHUP)")
			}
			continue
		}
		if err := view.removalQuorum(id, c.removalLive); err != nil {
			if c.complainOnce("start " + err.Error()) {
				c.o.Log.Warn().Err(err).Uint64("node_id", id).Msg("broker removal waits until the voters that remain are a live majority")
			}
			continue
		}
		c.mb.starting[id] = true
		c.o.Log.Info().Uint64("node_id", id).Uints64("asked_by", view.RemovalRequests[id]).Msg("starting a broker removal: draining it")
		c.propose(ctx, &Command{RemoveBroker: &RemoveBroker{NodeID: id}}, func(p *raftactor.Proposed) {
			delete(c.mb.starting, id)
			if p.Err != nil {
				c.o.Log.Debug().Err(p.Err).Uint64("node_id", id).Msg("removal start not applied; retrying")
			}
		})
	}
}

// removalLive is the liveness a removal is checked with: the brokers'
// liveness (heard from within the session timeout, 9 s by default) and, as
// this actor leads the controller group when it drives a removal, raft's
// own view of it: a member not active in the group for movedSilentTicks
// (3 s) counts as dead sooner. A removal that counted a voter dead a moment
// ago as alive could leave the controller or a partition without a quorum.
func (c *controllerActor) removalLive(id uint64) bool {
	if c.o.Alive != nil && !c.o.Alive(id) {
		return false
	}
	return id == c.o.NodeID || c.activeLately(id)
}

// caughtUp reports whether the leader's view of a member says it has the
// whole committed log and takes appends as they come. (RecentActive is no
// help in a published status: CheckQuorum clears it every election
// timeout, and the status may be published just after.)
func caughtUp(pr raftactor.Progress, st *raftactor.GroupStatus) bool {
	return pr.Match >= st.Commit && pr.State == "replicate"
}

// successor picks the voter the leader hands the controller to: one caught
// up, not draining.
func (c *controllerActor) successor(view *State, st *raftactor.GroupStatus) uint64 {
	for _, id := range view.Voters {
		pr, ok := st.Progress[strconv.FormatUint(id, 10)]
		if id != c.o.NodeID && ok && caughtUp(pr, st) && !view.IsDraining(id) {
			return id
		}
	}
	return 0
}

// drain starts moving replicas off broker id, a few at a time; it reports
// whether id still hosts any replica (or moves touching it are under way).
// A reassignment under way whose target names id gets a new target; one
// already taking id away is left to finish.
func (c *controllerActor) drain(ctx actor.Context, view *State, id uint64) bool {
	moving := movesOff(view, id) + len(c.drainMoves)
	busy := false
	load := replicaCounts(view)
	for _, name := range view.TopicNames() {
		t := view.Topics[name]
		for _, p := range t.Partitions {
			if !slices.Contains(p.Replicas, id) {
				continue
			}
			busy = true
			if c.drainMoves[p.Group] || (p.Reassigning() && !slices.Contains(p.Target(), id)) {
				continue
			}
			if !p.Reassigning() && moving >= maxDrainMoves {
				continue
			}
			target, err := c.replacement(view, t, p, id, load)
			if err != nil {
				if c.complainOnce(fmt.Sprintf("drain %d of group %d", id, p.Group)) {
					c.o.Log.Warn().Err(err).Str("topic", t.Name).Int32("partition", p.Index).Uint64("node_id", id).Msg("cannot drain")
				}
				continue
			}
			if !p.Reassigning() {
				moving++
			}
			group := p.Group
			c.drainMoves[group] = true
			c.propose(ctx, &Command{Reassign: &Reassign{Topic: t.ID, Partition: p.Index, Target: target}}, func(*raftactor.Proposed) {
				delete(c.drainMoves, group)
			})
		}
	}
	return busy
}

// movesOff counts the reassignments under way of partitions broker id
// hosts: a drain starts more only while they are few. Moves elsewhere do
// not count, so that moves stuck on some other broker (a dead target) do
// not hold the drain.
func movesOff(view *State, id uint64) int {
	n := 0
	for _, ref := range view.Reassignments() {
		if slices.Contains(ref.Partition.Replicas, id) {
			n++
		}
	}
	return n
}

// replacement returns p's target with id replaced by the live placeable
// broker that hosts the fewest replicas and none of p's; without one, the
// target without id, unless that leaves none, fewer replicas than the
// topic's min.insync.replicas (acks=all could never succeed again), or
// replicas of which no majority is alive (the partition's group would have
// no quorum once id left it, for good if the dead never come back).
func (c *controllerActor) replacement(view *State, t *Topic, p Partition, id uint64, load map[uint64]int) ([]uint64, error) {
	var best uint64
	for _, b := range view.livePlaceable(c.o.Alive) {
		if slices.Contains(p.Replicas, b.NodeID) {
			continue
		}
		if best == 0 || load[b.NodeID] < load[best] {
			best = b.NodeID
		}
	}
	target := p.Target()
	out := make([]uint64, 0, len(target))
	for _, r := range target {
		switch {
		case r != id:
			out = append(out, r)
		case best != 0:
			out = append(out, best)
			load[best]++
		}
	}
	if best == 0 {
		minISR := t.Configs["min.insync.replicas"]
		if minISR == "" {
			minISR, _ = TopicConfigDefault("min.insync.replicas")
		}
		if n, _ := strconv.Atoi(minISR); len(out) == 0 || len(out) < n {
			return nil, fmt.Errorf("no broker can take broker %d's replica, and the partition would keep %d, below min.insync.replicas %s; add a broker or delete the topic", id, len(out), minISR)
		}
		if live := liveOf(out, c.removalLive); 2*len(live) <= len(out) {
			return nil, fmt.Errorf("no broker can take broker %d's replica, and of the replicas %v the partition would keep only %v are alive, no majority; waiting for them", id, out, live)
		}
	}
	return out, nil
}

// replicaCounts returns how many replicas each broker hosts.
func replicaCounts(view *State) map[uint64]int {
	n := map[uint64]int{}
	for _, t := range view.Topics {
		for _, p := range t.Partitions {
			for _, r := range p.Replicas {
				n[r]++
			}
		}
	}
	return n
}

// complainOnce reports whether the problem named what is new, and
// remembers it.
func (c *controllerActor) complainOnce(what string) bool {
	if c.mb.complained[what] {
		return false
	}
	if len(c.mb.complained) >= 1024 {
		clear(c.mb.complained) // bounded, whatever peers send
	}
	c.mb.complained[what] = true
	return true
}

// removed stops this broker for good: its id left the cluster.
func (c *controllerActor) removed(reason string) {
	if c.mb.stopped {
		return
	}
	c.mb.stopped = true
	c.o.Log.Warn().Str("reason", reason).Msg("this broker was removed from the cluster; stopping")
	if c.o.OnRemoved != nil {
		c.o.OnRemoved(reason)
	}
}
