package debug

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// healthBody is a /healthz answer.
type healthBody struct {
	Status         string          `json:"status"`
	BehindReplicas int             `json:"behind_replicas"`
	Behind         []BehindReplica `json:"behind"`
}

// healthOf serves /healthz from src.
func healthOf(t *testing.T, src Sources) (int, healthBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler(src).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var body healthBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
	}
	return rec.Code, body
}

// TestHealthzReplicasInSync: /healthz answers 200 only once every replica
// of broker 1 is in its leader's ISR (the controller group's too), as its
// leader last broadcast it, and 503 naming the replicas behind otherwise.
// Broker 1 hosts t/0 (it leads it), t/1 (broker 2 leads it), t/2 (alone),
// u/0 (being added there: not counted) and v/0 (being removed from it:
// counted); t/3 is on brokers 2 and 3 only. Only the partitions that
// existed when broker 1 began serving count (t was created at index 4):
// a new partition's replicas start, elect and learn their ISR, which
// turned every topic creation into a second of 503s.
func TestHealthzReplicasInSync(t *testing.T) {
	sm := controller.NewStateMachine(zerolog.Nop())
	for i, c := range []controller.Command{
		{RegisterBroker: &controller.RegisterBroker{NodeID: 1, KafkaAddr: "127.0.0.1:9091", RaftAddr: "127.0.0.1:7001"}},
		{RegisterBroker: &controller.RegisterBroker{NodeID: 2, KafkaAddr: "127.0.0.1:9092", RaftAddr: "127.0.0.1:7002"}},
		{RegisterBroker: &controller.RegisterBroker{NodeID: 3, KafkaAddr: "127.0.0.1:9093", RaftAddr: "127.0.0.1:7003"}},
		{CreateTopic: &controller.CreateTopic{Name: "t", ID: controller.TopicID{1}, Replicas: [][]uint64{{1, 2, 3}, {2, 1, 3}, {1}, {2, 3}}}},
		{CreateTopic: &controller.CreateTopic{Name: "u", ID: controller.TopicID{2}, Replicas: [][]uint64{{2, 3}}}},
		{Reassign: &controller.Reassign{Topic: controller.TopicID{2}, Partition: 0, Target: []uint64{2, 1}}},
		{CreateTopic: &controller.CreateTopic{Name: "v", ID: controller.TopicID{3}, Replicas: [][]uint64{{1, 2}}}},
		{Reassign: &controller.Reassign{Topic: controller.TopicID{3}, Partition: 0, Target: []uint64{2, 3}}},
	} {
		sm.Apply(uint64(i+1), 1, c.Encode())
	}
	sm.MarkCaughtUp()
	view := sm.View()
	group := func(topic string, p int) uint64 { return view.Topics[topic].Partitions[p].Group }
	t0, t1, v0 := group("t", 0), group("t", 1), group("v", 0)

	// healthy: what each replica of broker 1 knows of its leadership, and
	// what the leaders broadcast.
	type setup struct {
		board      map[uint64]*raftactor.GroupStatus
		leaders    map[uint64]netactor.LeaderInfo
		older      map[uint64]bool // peers of a version that never sent the whole set of what they lead
		servedFrom *uint64         // the index broker 1 began serving at
	}
	healthy := func() setup {
		return setup{
			board: map[uint64]*raftactor.GroupStatus{
				controller.ControllerGroup: {Group: controller.ControllerGroup, Name: "controller", Role: "follower", Leader: 2, Term: 1, Voters: []uint64{1, 2, 3}},
				t0:                         {Group: t0, Name: "t/0", Role: "leader", Leader: 1, Term: 2},
				t1:                         {Group: t1, Name: "t/1", Role: "follower", Leader: 2, Term: 3},
				v0:                         {Group: v0, Name: "v/0", Role: "follower", Leader: 2, Term: 1},
			},
			leaders: map[uint64]netactor.LeaderInfo{
				controller.ControllerGroup: {Group: controller.ControllerGroup, Leader: 2, Term: 1, ISR: []uint64{1, 2, 3}},
				t1:                         {Group: t1, Leader: 2, Term: 3, ISR: []uint64{1, 2, 3}},
				v0:                         {Group: v0, Leader: 2, Term: 1, ISR: []uint64{1, 2}},
			},
			older:      map[uint64]bool{},
			servedFrom: new(uint64(8)), // after every entry above
		}
	}
	tests := []struct {
		name   string
		change func(s setup)
		behind string // the first replica shown behind; "" for 200
		reason string
	}{
		{"every replica in its leader's ISR", func(setup) {}, "", ""},
		{"a follower out of its leader's ISR", func(s setup) { s.leaders[t1] = netactor.LeaderInfo{Group: t1, Leader: 2, Term: 3, ISR: []uint64{2, 3}} }, "t/1", "not in its leader's ISR: catching up"},
		{"a replica not started yet", func(s setup) { delete(s.board, t1) }, "t/1", "replica not running yet"},
		{"a replica not started yet, of a topic created when serving", func(s setup) { delete(s.board, t1); *s.servedFrom = 4 }, "t/1", "replica not running yet"},
		{"a replica not started yet, of a topic created since serving", func(s setup) { delete(s.board, t1); *s.servedFrom = 3 }, "", ""},
		{"a partition without a leader, created since serving", func(s setup) {
			s.board[t1] = &raftactor.GroupStatus{Group: t1, Role: "pre-candidate", Term: 3}
			*s.servedFrom = 3
		}, "", ""},
		{"a replica not started yet, serving index unknown", func(s setup) { delete(s.board, t1); *s.servedFrom = 0 }, "t/1", "replica not running yet"},
		{"a partition without a leader", func(s setup) { s.board[t1] = &raftactor.GroupStatus{Group: t1, Role: "pre-candidate", Term: 3} }, "t/1", "no leader"},
		{"a new leader that has not broadcast yet", func(s setup) { s.board[t1] = &raftactor.GroupStatus{Group: t1, Role: "follower", Leader: 3, Term: 4} }, "t/1", "its leader has not told its ISR yet"},
		{"nothing broadcast", func(s setup) { delete(s.leaders, t1) }, "t/1", "its leader has not told its ISR yet"},
		{"a broadcast of a later term", func(s setup) { s.leaders[t1] = netactor.LeaderInfo{Group: t1, Leader: 3, Term: 5, ISR: []uint64{1, 3}} }, "", ""},
		{"a replica being removed, behind", func(s setup) { s.leaders[v0] = netactor.LeaderInfo{Group: v0, Leader: 2, Term: 1, ISR: []uint64{2}} }, "v/0", "not in its leader's ISR: catching up"},
		{"the controller group behind", func(s setup) {
			s.leaders[controller.ControllerGroup] = netactor.LeaderInfo{Group: controller.ControllerGroup, Leader: 2, Term: 1, ISR: []uint64{2, 3}}
		}, "controller", "not in its leader's ISR: catching up"},
		// An older leader broadcasts no controller ISR, or the flapping
		// ISR of its offsets partitions: a rolling upgrade must not wait
		// on it forever.
		{"the controller group led by an older version", func(s setup) {
			delete(s.leaders, controller.ControllerGroup)
			s.older[2] = true
		}, "", ""},
		{"a partition led by an older version still counts", func(s setup) {
			s.leaders[t1] = netactor.LeaderInfo{Group: t1, Leader: 2, Term: 3, ISR: []uint64{2, 3}}
			s.older[2] = true
		}, "t/1", "not in its leader's ISR: catching up"},
		{"a controller learner is not counted", func(s setup) {
			s.board[controller.ControllerGroup].Learners, s.board[controller.ControllerGroup].Voters = []uint64{1}, []uint64{2, 3}
			delete(s.leaders, controller.ControllerGroup)
		}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy()
			tt.change(s)
			board := raftactor.NewStatusBoard()
			for _, st := range s.board {
				board.Publish(st)
			}
			leaders := partition.NewLeaders()
			for _, li := range s.leaders {
				leaders.Note([]netactor.LeaderInfo{li})
			}
			for _, peer := range []uint64{2, 3} {
				if !s.older[peer] {
					leaders.PeerLeads(peer, nil, true)
				}
			}
			code, body := healthOf(t, Sources{NodeID: 1, Board: board, Controller: sm, Leaders: leaders, Gatherer: prometheus.NewRegistry(), Log: zerolog.Nop(),
				ServedFrom: func() uint64 { return *s.servedFrom }})
			if tt.behind == "" {
				if code != http.StatusOK || body.Status != "ok" {
					t.Fatalf("%d %+v, want 200", code, body)
				}
				return
			}
			if code != http.StatusServiceUnavailable || body.Status != "replicas not in their leaders' ISR" || body.BehindReplicas != 1 ||
				len(body.Behind) != 1 || body.Behind[0].Name != tt.behind || body.Behind[0].Reason != tt.reason {
				t.Fatalf("%d %+v, want 503 with %s behind: %s", code, body, tt.behind, tt.reason)
			}
		})
	}
}

// TestHealthzNamesAFewReplicasBehind: a broker with many replicas behind
// names a few and counts them all.
func TestHealthzNamesAFewReplicasBehind(t *testing.T) {
	sm := controller.NewStateMachine(zerolog.Nop())
	replicas := make([][]uint64, 40)
	for i := range replicas {
		replicas[i] = []uint64{2, 1, 3}
	}
	sm.Apply(1, 1, (&controller.Command{CreateTopic: &controller.CreateTopic{Name: "t", ID: controller.TopicID{1}, Replicas: replicas}}).Encode())
	sm.MarkCaughtUp()
	board := raftactor.NewStatusBoard()
	board.Publish(&raftactor.GroupStatus{Group: controller.ControllerGroup, Name: "controller", Role: "leader", Leader: 1, Term: 1, Voters: []uint64{1, 2, 3}})
	leaders := partition.NewLeaders()
	for _, p := range sm.View().Topics["t"].Partitions {
		board.Publish(&raftactor.GroupStatus{Group: p.Group, Name: fmt.Sprintf("t/%d", p.Index), Role: "follower", Leader: 2, Term: 1})
		leaders.Note([]netactor.LeaderInfo{{Group: p.Group, Leader: 2, Term: 1, ISR: []uint64{2, 3}}})
	}
	code, body := healthOf(t, Sources{NodeID: 1, Board: board, Controller: sm, Leaders: leaders, Gatherer: prometheus.NewRegistry(), Log: zerolog.Nop()})
	if code != http.StatusServiceUnavailable || body.BehindReplicas != 40 || len(body.Behind) != healthBehindShown || body.Behind[0].Name != "t/0" || body.Behind[0].Leader != 2 {
		t.Fatalf("%d %+v", code, body)
	}
}

// TestHealthzSingleBroker: a broker alone is healthy as soon as it serves,
// its partitions' groups elected or not: it is each one's whole ISR.
func TestHealthzSingleBroker(t *testing.T) {
	sm := controller.NewStateMachine(zerolog.Nop())
	sm.Apply(1, 1, (&controller.Command{CreateTopic: &controller.CreateTopic{Name: "t", ID: controller.TopicID{1}, Replicas: [][]uint64{{1}, {1}}}}).Encode())
	sm.MarkCaughtUp()
	board := raftactor.NewStatusBoard()
	board.Publish(&raftactor.GroupStatus{Group: controller.ControllerGroup, Name: "controller", Role: "leader", Leader: 1, Term: 1, Voters: []uint64{1}})
	code, body := healthOf(t, Sources{NodeID: 1, Board: board, Controller: sm, Leaders: partition.NewLeaders(), Gatherer: prometheus.NewRegistry(), Log: zerolog.Nop()})
	if code != http.StatusOK || body.Status != "ok" {
		t.Fatalf("%d %+v, want 200", code, body)
	}
}
