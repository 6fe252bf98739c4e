package kafka

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// newKgoClient is a franz-go client for b, logging through the test.
func newKgoClient(t *testing.T, b *testBroker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(b.addr),
		kgo.DisableIdempotentWrite(), // no InitProducerID: the test handler does not serve it
		kgo.ProducerLinger(0),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestKgoNegotiatesAndReadsMetadata: franz-go connects, negotiates versions
// (it opens with ApiVersions v5, which we answer per KIP-511), and reads the
// brokers and topics from Metadata and DescribeCluster.
func TestKgoNegotiatesAndReadsMetadata(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	b := startBroker(t, func(o *Options) { o.Metrics = m })
	cl := newKgoClient(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if n := metricValue(t, m.requests.WithLabelValues("ApiVersions", OutcomeUnsupported)); n == 0 {
		t.Fatal("kgo's ApiVersions v5 was not answered with the KIP-511 fallback")
	}

	meta := kmsg.NewPtrMetadataRequest() // null topics: all of them
	resp, err := meta.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	if resp.Version != 13 {
		t.Errorf("metadata negotiated v%d, want our max v13", resp.Version)
	}
	if len(resp.Brokers) != 1 || resp.Brokers[0].NodeID != 1 || resp.Brokers[0].Host != "127.0.0.1" ||
		resp.Brokers[0].Port != b.source.cluster.Brokers[0].Port {
		t.Fatalf("brokers %+v", resp.Brokers)
	}
	if resp.ClusterID == nil || *resp.ClusterID != "test-cluster" || resp.ControllerID != 1 {
		t.Fatalf("cluster %v controller %d", resp.ClusterID, resp.ControllerID)
	}
	names := topicNames(resp)
	if !slices.Equal(names, []string{"audit", "orders"}) {
		t.Fatalf("topics %v", names)
	}
	orders := resp.Topics[1]
	if orders.TopicID != [16]byte{1} || len(orders.Partitions) != 2 || orders.Partitions[0].LeaderEpoch != 4 {
		t.Fatalf("orders %+v", orders)
	}
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != codeLeaderNotAvailable || len(p.OfflineReplicas) != 1 {
		t.Fatalf("audit partition %+v", p)
	}

	meta = kmsg.NewPtrMetadataRequest()
	meta.Topics = []kmsg.MetadataRequestTopic{named("missing")}
	if resp, err = meta.RequestWith(ctx, cl); err != nil {
		t.Fatalf("metadata: %v", err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != codeUnknownTopicOrPartition {
		t.Fatalf("missing topic answered %+v", resp.Topics)
	}

	dc, err := kmsg.NewPtrDescribeClusterRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("describe cluster: %v", err)
	}
	if dc.ErrorCode != 0 || dc.ClusterID != "test-cluster" || len(dc.Brokers) != 1 {
		t.Fatalf("describe cluster %+v", dc)
	}
}

// TestKgoProduces: franz-go finds the partition leader through Metadata and
// produces with the version we advertise, through the handler.
func TestKgoProduces(t *testing.T) {
	b := startBroker(t, nil)
	var mu sync.Mutex
	var versions []int16
	b.handler.inline = func(r *Request) *Response {
		mu.Lock()
		versions = append(versions, r.Msg.GetVersion())
		mu.Unlock()
		return produceResponse(r)
	}
	cl := newKgoClient(t, b, kgo.DefaultProduceTopic("orders"), kgo.RequiredAcks(kgo.LeaderAck()))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for i := range 5 {
		rec := &kgo.Record{Value: []byte{byte(i)}, Partition: int32(i % 2)}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(versions) == 0 {
		t.Fatal("the handler saw no Produce")
	}
	for _, v := range versions {
		if v != 11 {
			t.Fatalf("Produce v%d, want v11, our max", v)
		}
	}
}
