package main

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLeadersReady: a topic is ready when every partition has a leader,
// and, when the preferred leader is asked for, when that leader is the
// first replica.
func TestLeadersReady(t *testing.T) {
	part := func(id, leader int32, replicas ...int32) kmsg.MetadataResponseTopicPartition {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition, p.Leader, p.Replicas = id, leader, replicas
		return p
	}
	resp := func(ps ...kmsg.MetadataResponseTopicPartition) *kmsg.MetadataResponse {
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic = kmsg.StringPtr("t")
		rt.Partitions = ps
		r := kmsg.NewPtrMetadataResponse()
		r.Topics = append(r.Topics, rt)
		return r
	}
	notAvailable := part(1, -1, 2, 3, 1)
	notAvailable.ErrorCode = kerr.LeaderNotAvailable.Code
	tests := []struct {
		name       string
		resp       *kmsg.MetadataResponse
		partitions int32
		preferred  bool
		ready      bool
	}{
		{"preferred leaders", resp(part(0, 1, 1, 2, 3), part(1, 2, 2, 3, 1)), 2, true, true},
		{"a leader that is not preferred", resp(part(0, 1, 1, 2, 3), part(1, 3, 2, 3, 1)), 2, true, false},
		{"any leader will do", resp(part(0, 1, 1, 2, 3), part(1, 3, 2, 3, 1)), 2, false, true},
		{"no leader", resp(part(0, 1, 1, 2, 3), part(1, -1, 2, 3, 1)), 2, false, false},
		{"leader not available", resp(part(0, 1, 1, 2, 3), notAvailable), 2, false, false},
		{"a partition missing", resp(part(0, 1, 1, 2, 3)), 2, false, false},
		{"no replicas listed", resp(part(0, 1)), 1, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := leadersReady(tt.resp, "t", tt.partitions, tt.preferred)
			if (err == nil) != tt.ready {
				t.Fatalf("leadersReady = %v, want ready %t", err, tt.ready)
			}
		})
	}
}

// TestStreamReady: the stream is ready when it has a leader and every
// follower is current, and then the leader's URL is returned.
func TestStreamReady(t *testing.T) {
	servers := []*natsServer{{name: "n1", url: "nats://a"}, {name: "n2", url: "nats://b"}, {name: "n3", url: "nats://c"}}
	peer := func(name string, current bool) *jetstream.PeerInfo {
		return &jetstream.PeerInfo{Name: name, Current: current}
	}
	tests := []struct {
		name    string
		cluster *jetstream.ClusterInfo
		url     string
	}{
		{"ready", &jetstream.ClusterInfo{Leader: "n2", Replicas: []*jetstream.PeerInfo{peer("n1", true), peer("n3", true)}}, "nats://b"},
		{"a follower behind", &jetstream.ClusterInfo{Leader: "n2", Replicas: []*jetstream.PeerInfo{peer("n1", true), peer("n3", false)}}, ""},
		{"a follower missing", &jetstream.ClusterInfo{Leader: "n2", Replicas: []*jetstream.PeerInfo{peer("n1", true)}}, ""},
		{"no leader", &jetstream.ClusterInfo{Replicas: []*jetstream.PeerInfo{peer("n1", true), peer("n3", true)}}, ""},
		{"not clustered", nil, ""},
		{"unknown leader", &jetstream.ClusterInfo{Leader: "n9", Replicas: []*jetstream.PeerInfo{peer("n1", true), peer("n3", true)}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, ok := streamReady(&jetstream.StreamInfo{Cluster: tt.cluster}, servers)
			if url != tt.url || ok != (tt.url != "") {
				t.Fatalf("streamReady = %q, %t; want %q", url, ok, tt.url)
			}
		})
	}
}
