package raftactor

import (
	"sort"
	"strconv"
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"
)

// GroupStatus is what the debug endpoint and the metrics show of one group.
// Values are immutable once published.
type GroupStatus struct {
	Group    uint64              `json:"group"`
	Name     string              `json:"name"`
	Role     string              `json:"role"`
	Term     uint64              `json:"term"`
	Vote     uint64              `json:"vote"`
	Leader   uint64              `json:"leader"`
	Commit   uint64              `json:"commit"`
	Applied  uint64              `json:"applied"`
	Voters   []uint64            `json:"voters"`
	Learners []uint64            `json:"learners,omitempty"`
	Progress map[string]Progress `json:"progress,omitempty"`
	// Halted is why the group halted (Role "halted"): its durable state is
	// no longer known, and it takes no part in raft until the broker
	// restarts.
	Halted string `json:"halted,omitempty"`
	// Outgoing is, while a transfer of the leadership is under way and
	// this replica knows no leader, the leader handing it over, and
	// OutgoingTerm its term (outgoing.go): the leader until the next one
	// is known.
	Outgoing     uint64 `json:"outgoing_leader,omitempty"`
	OutgoingTerm uint64 `json:"outgoing_term,omitempty"`
	// Quiet is set while the group does not tick raft (quiesce.go).
	Quiet bool `json:"quiet,omitempty"`
	// SnapshotWithheld is, on a leader with a cold log (tiered.go), why a
	// follower behind its start waits for a snapshot that cannot be sent:
	// "boundary unknown" or "no snapshot at the boundary".
	SnapshotWithheld string `json:"snapshot_withheld,omitempty"`
	// SnapshotsWithheld counts the snapshot requests withheld since the
	// replica started (across actor restarts).
	SnapshotsWithheld uint64 `json:"snapshots_withheld,omitempty"`
}

// Leading is the leader the status names and its term: while a transfer
// of the leadership is under way and the replica knows no leader yet, the
// outgoing one, at its term; otherwise Leader (0 for none) and Term.
func (s *GroupStatus) Leading() (leader, term uint64) {
	if s.Leader == 0 && s.Outgoing != 0 {
		return s.Outgoing, s.OutgoingTerm
	}
	return s.Leader, s.Term
}

// Progress is the leader's view of one follower.
type Progress struct {
	Match        uint64 `json:"match"`
	Next         uint64 `json:"next"`
	State        string `json:"state"`
	RecentActive bool   `json:"recent_active"`
}

// StatusBoard holds the latest published status of every group of a broker.
// Each group's actor publishes; readers (debug endpoint, metrics, controller)
// only ever see whole immutable values.
type StatusBoard struct {
	groups sync.Map // uint64 → *GroupStatus
}

// NewStatusBoard returns an empty board.
func NewStatusBoard() *StatusBoard { return &StatusBoard{} }

// Get returns the latest status of group, or nil.
func (b *StatusBoard) Get(group uint64) *GroupStatus {
	v, ok := b.groups.Load(group)
	if !ok {
		return nil
	}
	return v.(*GroupStatus)
}

// All returns every group's status ordered by group id.
func (b *StatusBoard) All() []*GroupStatus {
	var out []*GroupStatus
	b.groups.Range(func(_, v any) bool {
		out = append(out, v.(*GroupStatus))
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}

// Publish replaces a group's status: the group's actor calls it (tests may too).
func (b *StatusBoard) Publish(s *GroupStatus) { b.groups.Store(s.Group, s) }

// PublishStopped marks a group whose actor stopped without being asked to
// (its supervisor gave up on it after repeated panics) as halted. Its own
// status leaves the board as it stops, which would make a broker with a
// dead replica look healthy; only a restart brings the replica back.
func (b *StatusBoard) PublishStopped(group uint64, name string) {
	b.Publish(&GroupStatus{Group: group, Name: name, Role: "halted",
		Halted: "raft actor stopped after repeated failures; restart the broker"})
}
func (b *StatusBoard) remove(group uint64) { b.groups.Delete(group) }

// RoleName is the role as the debug endpoint spells it.
func RoleName(st raft.StateType) string {
	switch st {
	case raft.StateLeader:
		return "leader"
	case raft.StateCandidate:
		return "candidate"
	case raft.StatePreCandidate:
		return "pre-candidate"
	default:
		return "follower"
	}
}

func progressState(s tracker.StateType) string {
	switch s {
	case tracker.StateProbe:
		return "probe"
	case tracker.StateReplicate:
		return "replicate"
	case tracker.StateSnapshot:
		return "snapshot"
	}
	return s.String()
}

func statusOf(group uint64, name string, st raft.Status) *GroupStatus {
	gs := &GroupStatus{
		Group:   group,
		Name:    name,
		Role:    RoleName(st.RaftState),
		Term:    st.HardState.GetTerm(),
		Vote:    st.HardState.GetVote(),
		Leader:  st.Lead,
		Commit:  st.HardState.GetCommit(),
		Applied: st.Applied,
	}
	for id := range st.Config.Voters.IDs() {
		gs.Voters = append(gs.Voters, id)
	}
	sort.Slice(gs.Voters, func(i, j int) bool { return gs.Voters[i] < gs.Voters[j] })
	for id := range st.Config.Learners {
		gs.Learners = append(gs.Learners, id)
	}
	sort.Slice(gs.Learners, func(i, j int) bool { return gs.Learners[i] < gs.Learners[j] })
	if st.RaftState == raft.StateLeader {
		gs.Progress = make(map[string]Progress, len(st.Progress))
		for id, pr := range st.Progress {
			if id == st.ID {
				continue
			}
			gs.Progress[strconv.FormatUint(id, 10)] = Progress{
				Match: pr.Match, Next: pr.Next, State: progressState(pr.State), RecentActive: pr.RecentActive,
			}
		}
	}
	return gs
}
