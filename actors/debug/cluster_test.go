package debug

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// TestClusterShowsMembershipAndReassignments: /debug/cluster and the page
// show the config's peers, the controller's membership and a reassignment
// of a partition this broker does not host, with the leader it learnt of.
func TestClusterShowsMembershipAndReassignments(t *testing.T) {
	sm := controller.NewStateMachine(zerolog.Nop())
	for i, c := range []controller.Command{
		{RegisterBroker: &controller.RegisterBroker{NodeID: 1, KafkaAddr: "127.0.0.1:9091", RaftAddr: "127.0.0.1:7001", Level: 1}},
		{RegisterBroker: &controller.RegisterBroker{NodeID: 2, KafkaAddr: "127.0.0.1:9092", RaftAddr: "127.0.0.1:7002", Level: controller.CommandLevel}},
		{RegisterBroker: &controller.RegisterBroker{NodeID: 3, KafkaAddr: "127.0.0.1:9093", RaftAddr: "127.0.0.1:7003", Level: controller.CommandLevel}},
		{CreateTopic: &controller.CreateTopic{Name: "orders", ID: controller.TopicID{1}, Replicas: [][]uint64{{1, 2}, {2, 1}}}},
		{Reassign: &controller.Reassign{Topic: controller.TopicID{1}, Partition: 1, Target: []uint64{2, 3}}},
	} {
		sm.Apply(uint64(i+1), 1, c.Encode())
	}
	// Voters 1 to 3, and broker 1 asks for broker 3's removal.
	three := []*pb.ConfChangeSingle{{Type: pb.ConfChangeAddNode.Enum(), NodeId: new(uint64(3))}}
	sm.ApplyConfChange(6, 1, &pb.ConfChangeV2{Changes: three}, &pb.ConfState{Voters: []uint64{1, 2, 3}})
	sm.Apply(7, 1, (&controller.Command{RemovalRequest: &controller.RemovalRequest{NodeID: 3, By: 1}}).Encode())
	group := sm.View().Topics["orders"].Partitions[1].Group
	leaders := partition.NewLeaders()
	leaders.Note([]netactor.LeaderInfo{{Group: group, Leader: 2, Term: 4}})
	sys := actors.NewSystem(zerolog.Nop())
	defer sys.Shutdown()
	peers := map[uint64]string{1: "127.0.0.1:7001", 2: "127.0.0.1:7002", 3: "127.0.0.1:7003"}
	// Broker 2 was heard from 1.5 s ago, broker 3 never, and the grace
	// period after start is over.
	now := time.Unix(1000, 0)
	liveness := netactor.NewLiveness(1, time.Second, func() time.Time { return now })
	now = now.Add(500 * time.Millisecond)
	liveness.Heard(2)
	now = now.Add(1500 * time.Millisecond)
	src := Sources{
		NodeID: 1, Actors: sys, Board: raftactor.NewStatusBoard(), Controller: sm, Leaders: leaders,
		ConfigPeers: func() map[uint64]string { return peers }, Liveness: liveness, Gatherer: prometheus.NewRegistry(), Log: zerolog.Nop(),
	}
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()

	var v ClusterView
	if err := json.Unmarshal(get(t, srv.URL+"/debug/cluster"), &v); err != nil {
		t.Fatal(err)
	}
	// Broker 1, at level 1, holds the cluster's level back.
	if v.ClusterLevel != 1 || v.CommandLevel != controller.CommandLevel {
		t.Errorf("cluster level %d, this broker's %d; want 1, %d", v.ClusterLevel, v.CommandLevel, controller.CommandLevel)
	}
	if !reflect.DeepEqual(v.ConfigPeers, peers) {
		t.Errorf("config peers %v", v.ConfigPeers)
	}
	if want := map[uint64]PeerHealth{2: {Alive: false, HeardMsAgo: 1500}, 3: {Alive: false, HeardMsAgo: -1}}; !reflect.DeepEqual(v.Health, want) {
		t.Errorf("peer health %+v, want %+v", v.Health, want)
	}
	page := string(get(t, srv.URL+"/"))
	if !strings.Contains(page, fmt.Sprintf("<td>127.0.0.1:7002</td><td>2</td><td>%d</td><td><b>dead</b>, 1500 ms ago</td>", controller.CommandLevel)) {
		t.Errorf("the page does not show broker 2 dead, heard from 1500 ms ago")
	}
	if !strings.Contains(page, "<td>127.0.0.1:7001</td><td>1</td><td>1</td><td>this broker</td>") {
		t.Errorf("the page does not show broker 1 as this broker")
	}
	want := []ReassignmentView{{
		Topic: "orders", Partition: 1, Group: group, Replicas: []uint64{2, 3, 1}, Adding: []uint64{3}, Removing: []uint64{1}, Leader: 2,
	}}
	if !reflect.DeepEqual(v.Reassignments, want) {
		t.Errorf("reassignments %+v, want %+v", v.Reassignments, want)
	}
	if v.Membership.Voters == nil || len(v.Membership.Removed) != 0 {
		t.Errorf("membership %+v", v.Membership)
	}
	if want := []RemovalRequestView{{NodeID: 3, RequestedBy: []uint64{1}, NotRequestedBy: []uint64{2}}}; !reflect.DeepEqual(v.Membership.RemovalRequests, want) {
		t.Errorf("removal requests %+v, want %+v", v.Membership.RemovalRequests, want)
	}
	page = string(get(t, srv.URL+"/"))
	for _, s := range []string{fmt.Sprintf("command level 1 (this broker's: %d)", controller.CommandLevel), "Reassignments in progress", "orders/1", "see broker 2", "3 (127.0.0.1:7003)", "3: asked by [1], not yet by [2]"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}

	// Without the config's peers (a broker that does not wire them) the
	// view still renders.
	src.ConfigPeers = nil
	rec := httptest.NewRecorder()
	Handler(src).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/cluster", nil))
	if b := rec.Body.String(); rec.Code != http.StatusOK || !strings.Contains(b, `"config_peers": {}`) {
		t.Errorf("without config peers: %d %s", rec.Code, b)
	}
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}
