package debug

import (
	"maps"
	"slices"
	"strconv"

	"github.com/flotilla/flotilla/actors/controller"
)

// ClusterView is what /debug/cluster shows: the membership this broker's
// config names, the membership the controller committed, and the partition
// reassignments under way.
type ClusterView struct {
	NodeID    uint64 `json:"node_id"`
	ClusterID string `json:"cluster_id"`
	Applied   uint64 `json:"applied"`
	Leader    uint64 `json:"controller_leader"`
	// ClusterLevel is the command level every member registered (the
	// rules that need it are on from it; the controller logs which
	// members hold it back), and CommandLevel this broker's own.
	ClusterLevel int `json:"cluster_level"`
	CommandLevel int `json:"command_level"`
	// Voters is the controller group's configuration as this broker's raft
	// node has it (it may run ahead of the applied state's).
	Voters  []uint64            `json:"controller_voters"`
	Brokers []controller.Broker `json:"brokers"`
	// ConfigPeers is the peers list of the config this broker runs with
	// (changed by SIGHUP): node id → raft address.
	ConfigPeers map[uint64]string `json:"config_peers"`
	// Health is, for every other registered broker, whether this broker
	// counts it alive (kafka.broker_session_timeout_ms): Metadata answers
	// a dead one as fenced.
	Health map[uint64]PeerHealth `json:"peer_health"`
	// Membership is the controller's committed membership.
	Membership    Membership         `json:"membership"`
	Reassignments []ReassignmentView `json:"reassignments"`
}

// PeerHealth is what this broker's raft transport has heard of a peer:
// HeardMsAgo is how long ago its last frame arrived, -1 if none ever has;
// Stopping, that it announced a clean stop and has not connected since
// (Metadata answers it as fenced, and no leadership is handed to it);
// Restarts, how many times it came back as a new process since this broker
// started (its replicas then leave the ISRs this broker leads until they
// catch up).
type PeerHealth struct {
	Alive      bool   `json:"alive"`
	HeardMsAgo int64  `json:"heard_ms_ago"`
	Stopping   bool   `json:"stopping,omitempty"`
	Restarts   uint64 `json:"restarts,omitempty"`
}

// Membership is the controller group's membership as the applied state
// records it.
type Membership struct {
	Voters   []uint64 `json:"voters"`
	Learners []uint64 `json:"learners"`
	Draining []uint64 `json:"draining"`
	Removed  []uint64 `json:"removed"`
	// RemovalRequests are the members whose removal was asked for and
	// has not started, by id.
	RemovalRequests []RemovalRequestView `json:"removal_requests"`
}

// RemovalRequestView is a member whose removal was asked for and has not
// started: the brokers that asked, and the voters that stay without it
// that have not. The removal starts once a majority of those voters asked
// (Agreed) and they are a live majority.
type RemovalRequestView struct {
	NodeID         uint64   `json:"node_id"`
	RequestedBy    []uint64 `json:"requested_by"`
	NotRequestedBy []uint64 `json:"not_requested_by"`
	Agreed         bool     `json:"agreed"`
}

// ReassignmentView is one partition being reassigned. Leader is what this
// broker knows of its leader (0: unknown). Where this broker leads it,
// Commit is the leader's commit index and Progress each replica's raft
// match; elsewhere only the leader's id is known (its debug address is
// not), and LeadHere is false.
type ReassignmentView struct {
	Topic     string   `json:"topic"`
	Partition int32    `json:"partition"`
	Group     uint64   `json:"group"`
	Replicas  []uint64 `json:"replicas"`
	Adding    []uint64 `json:"adding"`
	Removing  []uint64 `json:"removing"`
	Leader    uint64   `json:"leader"`
	LeadHere  bool     `json:"lead_here"`
	// The raft configuration of the partition's group, as this broker's
	// replica has it (absent when it hosts none).
	RaftVoters   []uint64          `json:"raft_voters,omitempty"`
	RaftLearners []uint64          `json:"raft_learners,omitempty"`
	Commit       uint64            `json:"commit,omitempty"`
	Progress     []ReplicaProgress `json:"progress,omitempty"`
}

// ReplicaProgress is a leader's view of one replica of a partition being
// reassigned: Behind is how far its match trails the leader's commit.
type ReplicaProgress struct {
	NodeID  uint64 `json:"node_id"`
	Adding  bool   `json:"adding"`
	Learner bool   `json:"learner"`
	Match   uint64 `json:"match"`
	Behind  uint64 `json:"behind"`
	State   string `json:"state"`
}

func clusterView(src Sources) ClusterView {
	st := src.Controller.View()
	v := ClusterView{
		NodeID: src.NodeID, ClusterID: st.ClusterID, Applied: st.Applied, Brokers: st.BrokerList(),
		ClusterLevel: st.ClusterLevel, CommandLevel: controller.CommandLevel,
		ConfigPeers: map[uint64]string{}, Health: map[uint64]PeerHealth{},
		Membership: Membership{
			Voters: nonNil(st.Voters), Learners: nonNil(st.Learners),
			Draining: nonNil(st.Draining), Removed: nonNil(st.Removed),
		},
		Reassignments: []ReassignmentView{},
	}
	v.Membership.RemovalRequests = []RemovalRequestView{}
	for _, id := range slices.Sorted(maps.Keys(st.RemovalRequests)) {
		agreed, missing := st.RemovalAgreed(id)
		v.Membership.RemovalRequests = append(v.Membership.RemovalRequests, RemovalRequestView{
			NodeID: id, RequestedBy: nonNil(st.RemovalRequests[id]), NotRequestedBy: nonNil(missing), Agreed: agreed,
		})
	}
	if g := src.Board.Get(controller.ControllerGroup); g != nil {
		v.Leader, v.Voters = g.Leader, g.Voters
	}
	if src.ConfigPeers != nil {
		if peers := src.ConfigPeers(); peers != nil {
			v.ConfigPeers = peers
		}
	}
	if src.Liveness != nil {
		for id := range st.Brokers {
			if id == src.NodeID {
				continue
			}
			v.Health[id] = PeerHealth{Alive: src.Liveness.Alive(id), HeardMsAgo: src.Liveness.HeardMsAgo(id), Stopping: src.Liveness.Stopping(id), Restarts: src.Liveness.Restarts(id)}
		}
	}
	for _, ref := range st.Reassignments() {
		v.Reassignments = append(v.Reassignments, reassignmentView(src, ref))
	}
	return v
}

func reassignmentView(src Sources, ref controller.PartitionRef) ReassignmentView {
	p := ref.Partition
	rv := ReassignmentView{
		Topic: ref.Topic.Name, Partition: p.Index, Group: p.Group,
		Replicas: nonNil(p.Replicas), Adding: nonNil(p.Adding), Removing: nonNil(p.Removing),
	}
	var term uint64
	if g := src.Board.Get(p.Group); g != nil {
		rv.Leader, term = g.Leader, g.Term
		rv.RaftVoters, rv.RaftLearners = g.Voters, g.Learners
		if g.Role == "leader" {
			rv.LeadHere, rv.Commit = true, g.Commit
			for _, id := range p.Replicas {
				pr, ok := g.Progress[strconv.FormatUint(id, 10)]
				if !ok {
					continue // itself, or not yet added to the group
				}
				rv.Progress = append(rv.Progress, ReplicaProgress{
					NodeID: id, Adding: slices.Contains(p.Adding, id), Learner: slices.Contains(g.Learners, id),
					Match: pr.Match, Behind: g.Commit - min(pr.Match, g.Commit), State: pr.State,
				})
			}
		}
	}
	if src.Leaders != nil {
		if li, ok := src.Leaders.Get(p.Group); ok && li.Term > term {
			rv.Leader = li.Leader
		}
	}
	return rv
}

// nonNil shows an empty list as [] rather than null.
func nonNil(ids []uint64) []uint64 {
	if ids == nil {
		return []uint64{}
	}
	return ids
}
