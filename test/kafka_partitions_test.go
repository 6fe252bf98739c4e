package test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// TestCreatePartitions: a real broker grows a topic with kadm and with an
// explicit assignment, answers each wrong CreatePartitions request with
// Kafka's error for it (changing nothing), serves the request to an older
// client (a non-flexible version), and the new partitions take records
// that a consumer reads back.
func TestCreatePartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	adm := nd.admin(t)
	cl := nd.client(t)
	const topic = "widen"
	createTopic(t, adm, topic, 1, nil)

	type topicReq struct {
		name       string
		count      int32
		assignment [][]int32 // nil: none
	}
	request := func(cl *kgo.Client, validateOnly bool, topics ...topicReq) map[string]kmsg.CreatePartitionsResponseTopic {
		t.Helper()
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.TimeoutMillis, req.ValidateOnly = 10_000, validateOnly
		for _, tr := range topics {
			rt := kmsg.NewCreatePartitionsRequestTopic()
			rt.Topic, rt.Count = tr.name, tr.count
			for _, rs := range tr.assignment {
				a := kmsg.NewCreatePartitionsRequestTopicAssignment()
				a.Replicas = rs
				rt.Assignment = append(rt.Assignment, a)
			}
			if tr.assignment != nil && rt.Assignment == nil {
				rt.Assignment = []kmsg.CreatePartitionsRequestTopicAssignment{}
			}
			req.Topics = append(req.Topics, rt)
		}
		resp := brokerRequest[*kmsg.CreatePartitionsResponse](t, cl, nd, req)
		out := map[string]kmsg.CreatePartitionsResponseTopic{}
		for _, rt := range resp.Topics {
			if _, dup := out[rt.Topic]; dup {
				t.Fatalf("two answers for %q: %+v", rt.Topic, resp.Topics)
			}
			out[rt.Topic] = rt
		}
		return out
	}
	partitions := func() int {
		t.Helper()
		return len(topicMetadata(t, cl, topic).Partitions)
	}

	for _, tc := range []struct {
		name         string
		topics       []topicReq
		validateOnly bool
		want         map[string]int16
	}{
		{"unknown, same count, repeated", []topicReq{{"missing", 2, nil}, {topic, 1, nil}, {"twice", 2, nil}, {"twice", 3, nil}}, false,
			map[string]int16{"missing": kerr.UnknownTopicOrPartition.Code, topic: kerr.InvalidPartitions.Code, "twice": kerr.InvalidRequest.Code}},
		{"fewer", []topicReq{{topic, 0, nil}}, false, map[string]int16{topic: kerr.InvalidPartitions.Code}},
		{"too few assignments", []topicReq{{topic, 3, [][]int32{{1}}}}, false, map[string]int16{topic: kerr.InvalidReplicaAssignment.Code}},
		{"empty assignment", []topicReq{{topic, 2, [][]int32{}}}, false, map[string]int16{topic: kerr.InvalidReplicaAssignment.Code}},
		{"unknown broker", []topicReq{{topic, 2, [][]int32{{7}}}}, false, map[string]int16{topic: kerr.InvalidReplicaAssignment.Code}},
		{"repeated broker", []topicReq{{topic, 2, [][]int32{{1, 1}}}}, false, map[string]int16{topic: kerr.InvalidReplicaAssignment.Code}},
		{"validate only", []topicReq{{topic, 4, nil}}, true, map[string]int16{topic: 0}},
		{"validate only: invalid", []topicReq{{topic, 3, [][]int32{{9}, {1}}}}, true, map[string]int16{topic: kerr.InvalidReplicaAssignment.Code}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := request(cl, tc.validateOnly, tc.topics...)
			if len(got) != len(tc.want) {
				t.Fatalf("answers %+v, want one each for %v", got, tc.want)
			}
			for name, code := range tc.want {
				if rt := got[name]; rt.ErrorCode != code || (code != 0) != (rt.ErrorMessage != nil) {
					t.Errorf("%s: %s (%v), want %s", name, codeName(rt.ErrorCode), rt.ErrorMessage, codeName(code))
				}
			}
			if n := partitions(); n != 1 {
				t.Fatalf("after a request that adds nothing, %s has %d partitions", topic, n)
			}
		})
	}

	// A client of Kafka 2.0 speaks CreatePartitions v1, before flexible
	// versions.
	old := nd.client(t, kgo.MaxVersions(kversion.V2_0_0()))
	if rt := request(old, true, topicReq{topic, 2, nil})[topic]; rt.ErrorCode != 0 {
		t.Fatalf("validate-only v1 request: %s", codeName(rt.ErrorCode))
	}

	// kadm adds one partition, an explicit assignment another.
	ctx := testCtx(t, 60*time.Second)
	rs, err := adm.CreatePartitions(ctx, 1, topic)
	if err != nil || rs[topic].Err != nil {
		t.Fatalf("kadm CreatePartitions: %v / %+v", err, rs)
	}
	if rt := request(cl, false, topicReq{topic, 3, [][]int32{{int32(nd.id)}}})[topic]; rt.ErrorCode != 0 {
		t.Fatalf("grow with an assignment: %s (%v)", codeName(rt.ErrorCode), rt.ErrorMessage)
	}
	waitTopicReady(t, adm, topic, 3)

	// Records to each partition are read back from each.
	producer := nd.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for p := range int32(3) {
		for i := range 5 {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte{byte(p), byte(i)}})
		}
	}
	produceAll(t, ctx, producer, recs)
	checkRoundTrip(t, recs, consumeAll(t, ctx, nd, topic, len(recs)), 3)
}
