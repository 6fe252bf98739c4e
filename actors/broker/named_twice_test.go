package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/partition"
)

// Requests that name one partition twice, answered as Kafka answers them.

// TestDeleteRecordsNamesPartitionTwice: a request naming a topic twice and
// a partition in both gets one topic and one answer per partition, the
// partition deleted to its last offset, as Kafka keys the request by
// partition (KafkaApis.handleDeleteRecordsRequest).
func TestDeleteRecordsNamesPartitionTwice(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "twice"
	cl := twoPartitionsOfTen(ctx, t, c, topic)
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 5000
	for _, parts := range [][][2]int64{{{0, 3}, {1, 2}}, {{0, 5}}} {
		rt := kmsg.NewDeleteRecordsRequestTopic()
		rt.Topic = topic
		for _, po := range parts {
			rp := kmsg.NewDeleteRecordsRequestTopicPartition()
			rp.Partition, rp.Offset = int32(po[0]), po[1]
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl.Broker(int(c.cfgs[0].NodeID))) // as it is: a kgo.Client would shard and merge it
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].Topic != topic || len(resp.Topics[0].Partitions) != 2 {
		t.Fatalf("answered %+v; want one topic with partitions 0 and 1", resp.Topics)
	}
	want := map[int32]int64{0: 5, 1: 2}
	for _, rp := range resp.Topics[0].Partitions {
		if rp.ErrorCode != 0 || rp.LowWatermark != want[rp.Partition] {
			t.Errorf("partition %d: error %d, low watermark %d; want %d", rp.Partition, rp.ErrorCode, rp.LowWatermark, want[rp.Partition])
		}
		if v := c.replicaView(0, partition.TopicPartition{Topic: topic, Partition: rp.Partition}); v == nil || v.LogStart != want[rp.Partition] {
			t.Errorf("partition %d: replica %+v; want its log start at %d", rp.Partition, v, want[rp.Partition])
		}
	}
}

// TestListOffsetsNamesPartitionTwice: ListOffsets answers INVALID_REQUEST
// for every mention of a partition named twice, and the others as usual
// (KafkaApis.handleListOffsetRequestV1AndAbove).
func TestListOffsetsNamesPartitionTwice(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "twice"
	cl := twoPartitionsOfTen(ctx, t, c, topic)
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	for _, parts := range [][]int32{{0, 1}, {0}} {
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for _, p := range parts {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp = p, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl.Broker(int(c.cfgs[0].NodeID)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			got = append(got, fmt.Sprintf("%d:%d/%d", rp.Partition, rp.ErrorCode, rp.Offset))
		}
	}
	want := fmt.Sprintf("[0:%d/-1 1:0/10 0:%d/-1]", kerr.InvalidRequest.Code, kerr.InvalidRequest.Code)
	if fmt.Sprint(got) != want {
		t.Fatalf("answered %v; want %s (partition:error/offset)", got, want)
	}
}

// twoPartitionsOfTen creates topic with two partitions on c and produces
// ten records to each; it returns the producing client.
func twoPartitionsOfTen(ctx context.Context, t *testing.T, c *testCluster, topic string) *kgo.Client {
	t.Helper()
	c.createTopic(ctx, c.client(), topic, 2, 1, nil)
	cl := c.client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range int32(2) {
		for i := range 10 {
			if err := cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "%d", i)}).FirstErr(); err != nil {
				t.Fatalf("produce %d to partition %d: %v", i, p, err)
			}
		}
	}
	return cl
}
