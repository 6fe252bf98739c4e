package debug

import (
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/netactor"
)

// healthHaltedShown is how many halted groups /healthz names: a broker whose
// disk filled up may have halted hundreds, and the count says the rest.
const healthHaltedShown = 5

// healthBehindShown is how many replicas behind their leaders /healthz
// names: a restarted broker may host thousands, and the count says the
// rest.
const healthBehindShown = 5

// HaltedGroup is a halted raft group as /healthz shows it.
type HaltedGroup struct {
	Name   string `json:"name"`
	Group  uint64 `json:"raft_group"`
	Reason string `json:"reason"`
}

// BehindReplica is a replica of this broker that /healthz finds out of its
// leader's ISR.
type BehindReplica struct {
	Name   string `json:"name"` // topic/partition, or controller
	Group  uint64 `json:"raft_group"`
	Leader uint64 `json:"leader"` // as this broker knows it; 0: none
	Reason string `json:"reason"`
}

// serveHealth answers 200 while the broker serves Kafka clients, no raft
// group of it has halted and every replica it hosts is in its leader's
// ISR; 503 with the reason otherwise. A halted group takes no part in raft
// until the broker restarts, so the broker needs a restart (after its
// storage is fixed). Until the broker has caught up with the controller's
// state its Kafka listener accepts no client, and while no controller
// leader is known no metadata can change: a rolling restart that moved on
// to the next broker then could leave the cluster without a quorum. So
// could one that moved on while a replica here still catches up: each
// partition would be left with its leader and a replica that cannot
// acknowledge yet, and commit nothing until it has caught up. That is
// Kafka's "no under-replicated partitions" as far as this broker's
// replicas go.
func serveHealth(w http.ResponseWriter, src Sources) {
	var halted []HaltedGroup
	n := 0
	for _, st := range src.Board.All() {
		if st.Halted == "" {
			continue
		}
		n++
		if len(halted) < healthHaltedShown {
			halted = append(halted, HaltedGroup{Name: st.Name, Group: st.Group, Reason: st.Halted})
		}
	}
	if n > 0 {
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "raft groups halted; restart the broker", "halted_groups": n, "halted": halted})
		return
	}
	st := src.Board.Get(controller.ControllerGroup)
	switch {
	case st == nil:
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "controller group not running"})
		return
	case src.Controller != nil && !src.Controller.CaughtUp():
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "catching up with the controller; not serving Kafka clients yet", "controller_leader": st.Leader, "role": st.Role})
		return
	case !closed(src.Serving):
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "learning from its peers which partitions they lead; not serving Kafka clients yet", "controller_leader": st.Leader, "role": st.Role})
		return
	case st.Leader == 0:
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "no controller leader", "role": st.Role})
		return
	}
	if n, behind := behindReplicas(src); n > 0 {
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "replicas not in their leaders' ISR", "behind_replicas": n, "behind": behind,
			"controller_leader": st.Leader, "role": st.Role})
		return
	}
	writeJSON(w, map[string]any{"status": "ok", "controller_leader": st.Leader, "role": st.Role})
}

// behindReplicas counts the replicas of this broker that are not in their
// leader's ISR, and returns the first healthBehindShown of them: the
// controller group's (when this broker is one of its voters), then every
// partition's and offsets partition's the controller state assigns here,
// a replica not started yet included, of the partitions that existed when
// this broker began serving (ServedFrom): a rolling restart waits for a
// restarted broker's replicas to catch up with what they missed, and a
// partition created since had nothing to catch up on. Kafka starts a new
// partition with every replica in its ISR (ReplicationControlManager.
// createTopic); here its replicas start, elect and learn their ISR over a
// second or so, and counting them made every topic creation turn the
// /healthz of every broker hosting it 503 meanwhile. A replica being added by a
// reassignment is not counted (it is a raft learner, whose lag stalls no
// commit, as Kafka leaves adding replicas out of its under-replicated
// count); one being removed is, since it votes until it is gone. A
// partition whose only replica is this broker is always in sync, so a
// single broker is healthy as soon as it serves.
func behindReplicas(src Sources) (int, []BehindReplica) {
	n := 0
	var shown []BehindReplica
	note := func(name string, group, leader uint64, reason string) {
		if reason == "" {
			return
		}
		n++
		if len(shown) < healthBehindShown {
			shown = append(shown, BehindReplica{Name: name, Group: group, Leader: leader, Reason: reason})
		}
	}
	if st := src.Board.Get(controller.ControllerGroup); st != nil && slices.Contains(st.Voters, src.NodeID) && len(st.Voters) > 1 {
		leader, reason := src.replicaBehind(controller.ControllerGroup, true)
		note("controller", controller.ControllerGroup, leader, reason)
	}
	if src.Controller == nil {
		return n, shown
	}
	view := src.Controller.View()
	var from uint64
	if src.ServedFrom != nil {
		from = src.ServedFrom()
	}
	for _, name := range slices.Sorted(maps.Keys(view.Topics)) {
		t := view.Topics[name]
		for _, p := range t.Partitions {
			if !slices.Contains(p.Replicas, src.NodeID) || slices.Contains(p.Adding, src.NodeID) {
				continue
			}
			if from != 0 && max(t.CreatedAt, p.AddedAt) > from {
				continue // created since this broker serves
			}
			if len(p.Replicas)-len(p.Adding) == 1 {
				continue // this broker alone: its own ISR
			}
			leader, reason := src.replicaBehind(p.Group, name == controller.OffsetsTopic)
			note(fmt.Sprintf("%s/%d", name, p.Index), p.Group, leader, reason)
		}
	}
	return n, shown
}

// replicaBehind tells whether this broker's replica of group is in its
// leader's ISR: reason is empty if it is, and says why not otherwise;
// leader is the leader it goes by (0: none). A leader knows its own ISR
// (it is in it); a follower learns it from what its leader broadcasts
// (Leaders), which counts once it is of the term and leader the replica
// follows, or of a later term: after a leader change the replica waits for
// the new leader's word (a partition's leader gives it as it begins to
// serve, the controller group's within half a second), since a new leader's ISR
// starts over. A leader that is stopping still counts: its leadership
// moves to a caught-up voter, and the replica's log does not change with
// it. A partition with no leader (its majority down, or an election under
// way) counts as behind: stopping this broker could only delay its
// election.
//
// newISR marks the groups whose leaders broadcast a time-rule ISR only
// since the version that sent the whole set of its leaderships when a peer
// connects (the controller group, which older versions did not broadcast
// at all, and offsets partitions, whose older ISR flapped): led by a peer
// that never sent that set, an older version in a rolling upgrade, the
// replica counts as in sync, or the upgrade would wait forever.
func (src Sources) replicaBehind(group uint64, newISR bool) (leader uint64, reason string) {
	st := src.Board.Get(group)
	switch {
	case st == nil:
		return 0, "replica not running yet"
	case st.Leader == src.NodeID:
		return src.NodeID, ""
	case newISR && st.Leader != 0 && src.Leaders != nil && !src.Leaders.Complete(st.Leader):
		return st.Leader, ""
	}
	var isr []uint64
	li, ok := src.leaderInfo(group)
	switch {
	case ok && li.Term > st.Term:
		leader, isr = li.Leader, li.ISR
	case st.Leader == 0:
		return 0, "no leader"
	case !ok || li.Term < st.Term || li.Leader != st.Leader:
		return st.Leader, "its leader has not told its ISR yet"
	default:
		leader, isr = st.Leader, li.ISR
	}
	if !slices.Contains(isr, src.NodeID) {
		return leader, "not in its leader's ISR: catching up"
	}
	return leader, ""
}

// leaderInfo is what the leader of group last broadcast; ok false when
// nothing is known (or the endpoint has no board of leaderships).
func (src Sources) leaderInfo(group uint64) (netactor.LeaderInfo, bool) {
	if src.Leaders == nil {
		return netactor.LeaderInfo{}, false
	}
	return src.Leaders.Get(group)
}

// closed reports whether c is closed; a nil c counts as closed.
func closed(c <-chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}
