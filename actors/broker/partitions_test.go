package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
)

// TestCreatePartitions: kadm grows an RF=3 topic from 2 to 5 partitions.
// Every broker's Metadata lists the new partitions with leaders; a
// producer that was running picks them up when it refreshes its metadata;
// records produced to every partition are read back by a consumer group,
// whose committed offsets cover the new partitions; the new replicas and
// preferred leaders are spread evenly over the brokers. Shrinking is
// refused and a validate-only request changes nothing.
func TestCreatePartitions(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const topic = "grow"
	cl := c.client()
	adm := kadm.NewClient(cl)
	c.createTopic(ctx, cl, topic, 2, 3, nil)

	// A keyed producer that knows the topic with two partitions.
	early := c.client(kgo.MetadataMinAge(100*time.Millisecond), kgo.MetadataMaxAge(time.Second))
	if err := early.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("early")}).FirstErr(); err != nil {
		t.Fatalf("produce before growing: %v", err)
	}

	if rs, err := adm.ValidateUpdatePartitions(ctx, 5, topic); err != nil || rs[topic].Err != nil {
		t.Fatalf("validate-only grow: %v / %+v", err, rs)
	}
	if n := len(c.brokers[0].Controller().View().Topics[topic].Partitions); n != 2 {
		t.Fatalf("validate-only request left %d partitions, want 2", n)
	}
	rs, err := adm.UpdatePartitions(ctx, 5, topic)
	if err != nil || rs[topic].Err != nil {
		t.Fatalf("grow to 5: %v / %+v", err, rs)
	}
	rs, err = adm.UpdatePartitions(ctx, 4, topic)
	if err != nil || !errors.Is(rs[topic].Err, kerr.InvalidPartitions) {
		t.Fatalf("shrink to 4: %v / %+v, want INVALID_PARTITIONS", err, rs)
	}

	// Every broker answers Metadata with five led partitions.
	for i, b := range c.brokers {
		id := c.cfgs[i].NodeID
		c.waitFor(20*time.Second, fmt.Sprintf("broker %d lists 5 led partitions", id), func() bool {
			req := kmsg.NewPtrMetadataRequest()
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(topic)
			req.Topics = append(req.Topics, rt)
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			defer rcancel()
			resp, err := req.RequestWith(rctx, cl.Broker(int(id)))
			if err != nil || len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 || len(resp.Topics[0].Partitions) != 5 {
				return false
			}
			for _, p := range resp.Topics[0].Partitions {
				if p.ErrorCode != 0 || p.Leader < 0 || len(p.Replicas) != 3 {
					return false
				}
			}
			return b.Controller().View().Topics[topic] != nil
		})
	}

	// The running producer's keys reach the new partitions once it has
	// refreshed its metadata.
	early.ForceMetadataRefresh()
	round := 0
	c.waitFor(20*time.Second, "the running producer writes to a new partition", func() bool {
		round++
		var recs []*kgo.Record
		for k := range 20 {
			recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%d-%d", round, k), Value: []byte("keyed")})
		}
		res := early.ProduceSync(ctx, recs...)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("keyed produce: %v", err)
		}
		for _, r := range res {
			if r.Record.Partition >= 2 {
				return true
			}
		}
		return false
	})

	// Ten records to each partition, new ones included.
	manual := c.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for p := range int32(5) {
		for i := range 10 {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "p%d-%d", p, i)})
		}
	}
	if err := manual.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce to every partition: %v", err)
	}

	// A consumer group reads everything back and commits offsets for all
	// five partitions.
	consumer := c.client(kgo.ConsumerGroup("grow-readers"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	// A leader may be moving to its preferred replica: kadm does not retry
	// a partition's LEADER_NOT_AVAILABLE, the test does.
	var ends kadm.ListedOffsets
	c.waitFor(20*time.Second, "end offsets of every partition", func() bool {
		var err error
		ends, err = adm.ListEndOffsets(ctx, topic)
		return err == nil && ends.Error() == nil
	})
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	if len(want) != 5 {
		t.Fatalf("end offsets of %d partitions, want 5: %v", len(want), want)
	}
	got := map[int32]int64{}
	seen := map[string]bool{}
	done := func() bool {
		for p, end := range want {
			if got[p] < end {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read back: %v (have %v, want %v)", ctx.Err(), got, want)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch partition %d: %v", p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = max(got[r.Partition], r.Offset+1)
			seen[string(r.Value)] = true
		})
	}
	for _, r := range recs {
		if !seen[string(r.Value)] {
			t.Fatalf("record %s was not read back", r.Value)
		}
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	committed, err := adm.FetchOffsets(ctx, "grow-readers")
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range want {
		if o, ok := committed.Lookup(topic, p); !ok || o.Err != nil || o.At != end {
			t.Fatalf("committed offset of partition %d: %+v, want %d", p, o, end)
		}
	}

	// Replicas and preferred leaders are spread evenly; once each
	// partition is led by its preferred replica, so are the leaders.
	parts := c.brokers[0].Controller().View().Topics[topic].Partitions
	preferred := map[uint64]int{}
	for _, p := range parts {
		if rs := slices.Sorted(slices.Values(p.Replicas)); !slices.Equal(rs, []uint64{1, 2, 3}) {
			t.Fatalf("partition %d replicas %v, want one on each broker", p.Index, p.Replicas)
		}
		preferred[p.Replicas[0]]++
	}
	for id := uint64(1); id <= 3; id++ {
		if n := preferred[id]; n < 1 || n > 2 {
			t.Fatalf("preferred leaders per broker %v, want 1 or 2 each of 5", preferred)
		}
	}
	c.waitFor(20*time.Second, "every partition led by its preferred replica", func() bool {
		for _, p := range parts {
			r := c.brokers[p.Replicas[0]-1].Replicas().Get(partition.TopicPartition{Topic: topic, Partition: p.Index})
			if r == nil || !r.Machine.View().Leader {
				return false
			}
		}
		return true
	})

	// A follower of the controller group takes the request too: raft
	// forwards its proposal to the leader.
	c.waitFor(10*time.Second, "a controller leader", func() bool { return c.leader() >= 0 })
	follower := (c.leader() + 1) % 3
	viaFollower := ask[*controller.CreatePartitionsDone](c, follower, c.brokers[follower].ControllerActor(), func(r *actor.PID) any {
		return &controller.CreatePartitions{Ref: 9, ReplyTo: r, TimeoutTicks: 500, Topics: []controller.PartitionsSpec{{Name: topic, Count: 6}}}
	})
	if viaFollower.Ref != 9 || len(viaFollower.Results) != 1 || viaFollower.Results[0].Err != nil {
		t.Fatalf("grow through a follower: %+v", viaFollower)
	}
	if n := len(c.brokers[follower].Controller().View().Topics[topic].Partitions); n != 6 {
		t.Fatalf("after growing through a follower: %d partitions, want 6", n)
	}
}

// TestCreatePartitionsAnswersOnceLed: CreatePartitions answers once every
// new partition has a leader, not only those its broker hosts, and no
// broker hides the grown topic meanwhile. With RF 1 on three brokers, the
// answering broker used to list new partitions hosted elsewhere without a
// leader, and a broker that had not yet answered Metadata for the topic
// answered the whole topic LEADER_NOT_AVAILABLE, which makes the Java
// client drop the partitions it was using.
func TestCreatePartitionsAnswersOnceLed(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const topic = "grow-led"
	cl := c.client()
	c.createTopic(ctx, cl, topic, 1, 1, nil)
	metadata := func(broker int32) kmsg.MetadataResponseTopic {
		t.Helper()
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl.Broker(int(broker)))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0]
	}
	c.waitFor(20*time.Second, "broker 2 lists the topic led", func() bool {
		mt := metadata(2)
		return mt.ErrorCode == 0 && mt.Partitions[0].Leader > 0
	})
	req := kmsg.NewPtrCreatePartitionsRequest()
	req.TimeoutMillis = 20_000
	rt := kmsg.NewCreatePartitionsRequestTopic()
	rt.Topic, rt.Count = topic, 6
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl.Broker(2))
	if err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("grow to 6 partitions: %v %+v", err, resp)
	}
	mt := metadata(2)
	if mt.ErrorCode != 0 || len(mt.Partitions) != 6 {
		t.Fatalf("broker 2 right after answering: topic error %d, %d partitions", mt.ErrorCode, len(mt.Partitions))
	}
	for _, p := range mt.Partitions {
		if p.Leader < 0 {
			t.Errorf("broker 2 answered the grow but lists partition %d without a leader", p.Partition)
		}
	}
	for _, b := range []int32{1, 3} {
		if mt := metadata(b); mt.ErrorCode != 0 {
			t.Errorf("broker %d right after the grow: the whole topic is %v", b, kerr.ErrorForCode(mt.ErrorCode))
		}
	}
}

// TestCreatePartitionsWaitsOnlyForNewPartitions: a partition that lost
// its leader long ago does not make CreatePartitions time out; only the
// new partitions are waited for, as Kafka does.
func TestCreatePartitionsWaitsOnlyForNewPartitions(t *testing.T) {
	c := newTestCluster(t, 3, shortSession)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client()
	createOn(ctx, t, cl, "half", 1, 3)
	c.stop(2) // broker 3: half/0, on [1 3], cannot elect
	c.waitFor(20*time.Second, "broker 1 finds broker 3 dead and half/0 leaderless", func() bool {
		md := metadataOf(ctx, t, cl, 1, "half")
		return !slices.ContainsFunc(md.Brokers, func(b kmsg.MetadataResponseBroker) bool { return b.NodeID == 3 }) &&
			md.Topics[0].Partitions[0].Leader == -1
	})
	cp := kmsg.NewPtrCreatePartitionsRequest()
	cp.TimeoutMillis = 10_000
	ct := kmsg.NewCreatePartitionsRequestTopic()
	ct.Topic, ct.Count = "half", 2
	cp.Topics = append(cp.Topics, ct)
	resp, err := cp.RequestWith(ctx, cl.Broker(1))
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.Topics[0].ErrorCode; code != 0 {
		t.Fatalf("CreatePartitions answered %v; its new partition is on live brokers", kerr.ErrorForCode(code))
	}
}

// TestCreateTopicsZeroTimeoutAnswersAtOnce: a timeout <= 0 asks for the
// creation and an answer without waiting for leaders (Kafka's protocol
// doc); the topic it created used to be answered REQUEST_TIMED_OUT.
func TestCreateTopicsZeroTimeoutAnswersAtOnce(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "zero", 6, 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 0
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.Topics[0].ErrorCode; code != 0 {
		t.Fatalf("CreateTopics with timeout 0 answered %v for a topic it created", kerr.ErrorForCode(code))
	}
	c.waitFor(10*time.Second, "the topic answered as created shows on every broker", func() bool {
		for _, b := range c.brokers {
			if _, ok := b.Controller().View().Topics["zero"]; !ok {
				return false
			}
		}
		return true
	})
}
