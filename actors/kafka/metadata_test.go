package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func metadataSource() *testSource {
	return &testSource{
		cluster: Cluster{ClusterID: "c1", ControllerID: 2, Brokers: []Broker{
			{NodeID: 1, Host: "a", Port: 9092}, {NodeID: 2, Host: "b", Port: 9093},
		}},
		topics: []Topic{
			{Name: "zeta", ID: [16]byte{2}, Partitions: []Partition{{Partition: 0, Leader: 2, LeaderEpoch: 3, Replicas: []int32{1, 2}, ISR: []int32{2}}}},
			{Name: "alpha", ID: [16]byte{1}, Partitions: []Partition{{Partition: 0, Leader: -1, Replicas: []int32{1}, Offline: []int32{1}}}},
		},
	}
}

func metadataRequest(version int16, topics ...kmsg.MetadataRequestTopic) *kmsg.MetadataRequest {
	r := kmsg.NewPtrMetadataRequest()
	r.Version = version
	r.Topics = topics
	return r
}

func named(name string) kmsg.MetadataRequestTopic { return kmsg.MetadataRequestTopic{Topic: &name} }

func topicNames(resp *kmsg.MetadataResponse) []string {
	var out []string
	for _, t := range resp.Topics {
		if t.Topic == nil {
			out = append(out, "<null>")
		} else {
			out = append(out, *t.Topic)
		}
	}
	return out
}

// encodes checks the response goes on the wire, as kmsg panics on a nil
// name before v12.
func encodes(t *testing.T, resp kmsg.Response) {
	t.Helper()
	if _, err := encodeResponse(nil, &pending{resp: resp, key: resp.Key(), version: resp.GetVersion()}, func(b []byte, _ int) []byte { return b }); err != nil {
		t.Fatal(err)
	}
}

func TestMetadataAllAndNone(t *testing.T) {
	src := metadataSource()
	cases := []struct {
		name string
		req  *kmsg.MetadataRequest
		want []string
	}{
		{"v0 empty means all", metadataRequest(0, []kmsg.MetadataRequestTopic{}...), []string{"alpha", "zeta"}},
		{"v1 null means all", metadataRequest(1), []string{"alpha", "zeta"}},
		{"v1 empty means none", func() *kmsg.MetadataRequest {
			r := metadataRequest(1)
			r.Topics = []kmsg.MetadataRequestTopic{}
			return r
		}(), nil},
		{"v12 null means all", metadataRequest(12), []string{"alpha", "zeta"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := metadataResponse(tc.req, src)
			got := topicNames(resp)
			if len(got) != len(tc.want) || (len(got) > 0 && (got[0] != tc.want[0] || got[1] != tc.want[1])) {
				t.Fatalf("topics %v, want %v", got, tc.want)
			}
			encodes(t, resp)
		})
	}
}

func TestMetadataBrokersAndCluster(t *testing.T) {
	resp := metadataResponse(metadataRequest(7, named("zeta")), metadataSource())
	if len(resp.Brokers) != 2 || resp.Brokers[1].NodeID != 2 || resp.Brokers[1].Host != "b" || resp.Brokers[1].Port != 9093 {
		t.Fatalf("brokers %+v", resp.Brokers)
	}
	if resp.ClusterID == nil || *resp.ClusterID != "c1" || resp.ControllerID != 2 {
		t.Fatalf("cluster %v, controller %d", resp.ClusterID, resp.ControllerID)
	}
	p := resp.Topics[0].Partitions[0]
	if p.Leader != 2 || p.LeaderEpoch != 3 || len(p.Replicas) != 2 || len(p.ISR) != 1 || p.ErrorCode != 0 {
		t.Fatalf("partition %+v", p)
	}
}

func TestMetadataUnknownAndLeaderless(t *testing.T) {
	resp := metadataResponse(metadataRequest(9, named("alpha"), named("nope"), named("alpha")), metadataSource())
	if got := topicNames(resp); len(got) != 2 || got[0] != "alpha" || got[1] != "nope" {
		t.Fatalf("topics %v, want [alpha nope] (duplicates dropped)", got)
	}
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != codeLeaderNotAvailable || p.Leader != -1 || len(p.OfflineReplicas) != 1 {
		t.Fatalf("leaderless partition %+v", p)
	}
	if resp.Topics[1].ErrorCode != codeUnknownTopicOrPartition {
		t.Fatalf("unknown topic error %d", resp.Topics[1].ErrorCode)
	}
	encodes(t, resp)
}

func TestMetadataAutoCreateFlag(t *testing.T) {
	cases := []struct {
		version int16
		allow   bool
		want    bool
	}{
		{3, false, true}, // before v4 topics are always auto-created
		{4, false, false},
		{4, true, true},
		{12, true, true},
	}
	for _, tc := range cases {
		src := metadataSource()
		req := metadataRequest(tc.version, named("new"))
		req.AllowAutoTopicCreation = tc.allow
		metadataResponse(req, src)
		if q := src.lastQuery(); q.AllowAutoCreate != tc.want || len(q.Names) != 1 || q.All {
			t.Errorf("v%d allow=%v: query %+v, want AllowAutoCreate=%v", tc.version, tc.allow, q, tc.want)
		}
	}
	src := metadataSource()
	req := metadataRequest(9)
	req.AllowAutoTopicCreation = true
	metadataResponse(req, src)
	if q := src.lastQuery(); !q.All || q.AllowAutoCreate {
		t.Errorf("all-topics query %+v auto-creates", q)
	}
}

func TestMetadataTopicIDs(t *testing.T) {
	src := metadataSource()
	req := metadataRequest(12, kmsg.MetadataRequestTopic{TopicID: [16]byte{2}}, kmsg.MetadataRequestTopic{TopicID: [16]byte{7}})
	resp := metadataResponse(req, src)
	if got := topicNames(resp); len(got) != 2 || got[0] != "zeta" || got[1] != "<null>" {
		t.Fatalf("topics %v, want [zeta <null>]", got)
	}
	if resp.Topics[1].ErrorCode != codeUnknownTopicID || resp.Topics[1].TopicID != [16]byte{7} {
		t.Fatalf("unknown id answer %+v", resp.Topics[1])
	}
	encodes(t, resp)

	// Before v12 ids and null names are refused, and the answer still
	// encodes (names are not nullable there).
	req = metadataRequest(10, kmsg.MetadataRequestTopic{TopicID: [16]byte{2}}, kmsg.MetadataRequestTopic{})
	resp = metadataResponse(req, src)
	for _, tp := range resp.Topics {
		if tp.ErrorCode != codeInvalidRequest || tp.Topic == nil {
			t.Fatalf("v10 answer %+v", tp)
		}
	}
	encodes(t, resp)
}

func TestMetadataAuthorizedOperations(t *testing.T) {
	req := metadataRequest(10, named("zeta"))
	req.IncludeClusterAuthorizedOperations = true
	req.IncludeTopicAuthorizedOperations = true
	resp := metadataResponse(req, metadataSource())
	if resp.AuthorizedOperations != clusterAuthorizedOps || resp.Topics[0].AuthorizedOperations != topicAuthorizedOps {
		t.Fatalf("operations %x %x", resp.AuthorizedOperations, resp.Topics[0].AuthorizedOperations)
	}
	resp = metadataResponse(metadataRequest(10, named("zeta")), metadataSource())
	if resp.AuthorizedOperations != -2147483648 || resp.Topics[0].AuthorizedOperations != -2147483648 {
		t.Fatal("operations reported without being asked for")
	}
}

func TestDescribeCluster(t *testing.T) {
	src := metadataSource()
	req := kmsg.NewPtrDescribeClusterRequest()
	req.Version = 1
	req.EndpointType = endpointBrokers
	resp := describeClusterResponse(req, src)
	if resp.ErrorCode != 0 || resp.ClusterID != "c1" || resp.ControllerID != 2 || len(resp.Brokers) != 2 || resp.EndpointType != 1 {
		t.Fatalf("response %+v", resp)
	}
	encodes(t, resp)
	req.EndpointType = endpointControllers
	if resp := describeClusterResponse(req, src); resp.ErrorCode != codeUnsupportedEndpointType {
		t.Fatalf("controllers endpoint: error %d", resp.ErrorCode)
	}
	req.EndpointType = 9
	if resp := describeClusterResponse(req, src); resp.ErrorCode != codeInvalidRequest {
		t.Fatalf("unknown endpoint: error %d", resp.ErrorCode)
	}
}

func TestNewBroker(t *testing.T) {
	b, err := NewBroker(3, "kafka-3.example:9094")
	if err != nil || b.NodeID != 3 || b.Host != "kafka-3.example" || b.Port != 9094 {
		t.Fatalf("%+v %v", b, err)
	}
	if b, err := NewBroker(1, "[::1]:9092"); err != nil || b.Host != "::1" {
		t.Fatalf("ipv6: %+v %v", b, err)
	}
	for _, addr := range []string{"nohost", ":9092", "h:0", "h:65536", "h:x"} {
		if _, err := NewBroker(1, addr); err == nil {
			t.Errorf("accepted %q", addr)
		}
	}
	if _, err := NewBroker(1<<31, "h:1"); err == nil {
		t.Error("accepted a node id above int32")
	}
}
