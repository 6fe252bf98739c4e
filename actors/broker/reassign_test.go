package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/group"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/raftactor"
)

// TestReassignPartitions: four brokers, a topic on brokers 1-3; while an
// acks=all producer keeps writing, partition 0 (led by broker 2) and
// partition 1 (led by broker 1, which must hand its leadership over before
// it is removed) move to brokers 2, 3, 4. The raft groups end with voters
// {2,3,4}, the controller completes the moves, broker 1 stops its replicas
// and deletes their files, and broker 4 holds every acknowledged record.
func TestReassignPartitions(t *testing.T) {
	c := newTestCluster(t, 4)
	c.waitReady()

	const topic = "moving"
	created := ask[*controller.CreateTopicsDone](c, 0, c.brokers[0].ControllerActor(), func(r *actor.PID) any {
		return &controller.CreateTopics{ReplyTo: r, TimeoutTicks: 500, Topics: []controller.TopicSpec{{
			Name: topic, Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{{2, 3, 1}, {1, 2, 3}},
		}}}
	})
	if err := created.Results[0].Err; err != nil {
		t.Fatalf("create topic: %v", err)
	}
	for p, lead := range []int{1, 0} { // brokers 2 and 1, the preferred replicas
		c.waitFor(20*time.Second, fmt.Sprintf("partition %d led by broker %d", p, lead+1), func() bool {
			r := c.brokers[lead].Replicas().Get(partition.TopicPartition{Topic: topic, Partition: int32(p)})
			return r != nil && r.Machine.View().Leader
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MetadataMinAge(100*time.Millisecond))
	p := startProducer(ctx, cl, topic, 2)
	p.waitAcked(t, 0, 50)
	p.waitAcked(t, 1, 50)

	target := []uint64{2, 3, 4}
	for part := range 2 {
		c.reassign(topic, int32(part), target)
	}
	for part := range 2 {
		c.checkVoters(partition.TopicPartition{Topic: topic, Partition: int32(part)}, target)
	}
	for part := range 2 {
		c.waitMoved(topic, int32(part), target)
	}
	// Keep writing to the new replicas for a while, then stop.
	p.waitAcked(t, 0, p.count(0)+50)
	p.waitAcked(t, 1, p.count(1)+50)
	acked := p.stop(t)

	for part := range 2 {
		tp := partition.TopicPartition{Topic: topic, Partition: int32(part)}
		c.waitFor(10*time.Second, fmt.Sprintf("broker 1 stops partition %d and deletes its files", part), func() bool {
			return c.brokers[0].Replicas().Get(tp) == nil && !c.partitionDirExists(0, topic, int32(part))
		})
		c.checkVoters(tp, target)
		c.checkHolds(3, tp, acked[part])
	}
}

// reassign proposes a move of topic's partition to target through the
// controller group and waits until it is applied.
func (c *testCluster) reassign(topic string, part int32, target []uint64) {
	c.t.Helper()
	lead := c.leader()
	id := c.brokers[lead].Controller().View().Topics[topic].ID
	cmd := &controller.Command{Reassign: &controller.Reassign{Topic: id, Partition: part, Target: target}}
	res := ask[*raftactor.Proposed](c, lead, c.brokers[lead].RaftGroup(), func(r *actor.PID) any {
		return &raftactor.Propose{Data: cmd.Encode(), ReplyTo: r}
	})
	if res.Err != nil {
		c.t.Fatalf("propose reassignment of %s/%d: %v", topic, part, res.Err)
	}
}

// waitMoved waits until every running broker's controller state has the
// partition on target with no reassignment under way.
func (c *testCluster) waitMoved(topic string, part int32, target []uint64) {
	c.t.Helper()
	var last controller.Partition
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for _, b := range c.brokers {
			if b == nil {
				continue
			}
			last = b.Controller().View().Topics[topic].Partitions[part]
			done = done && slices.Equal(last.Replicas, target) && !last.Reassigning()
		}
		if done {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("%s/%d: replicas %v adding %v removing %v; want %v, no reassignment under way", topic, part, last.Replicas, last.Adding, last.Removing, target)
}

// partitionDirExists reports whether broker i has a directory for the
// partition.
func (c *testCluster) partitionDirExists(i int, topic string, part int32) bool {
	dirs, err := filepath.Glob(filepath.Join(c.cfgs[i].DataDir, "partitions", topic+"-"+strconv.Itoa(int(part))+"-g*"))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			return true
		}
	}
	return false
}

// checkVoters checks that the partition's raft group has exactly want as
// voters and no learners, on its leader.
func (c *testCluster) checkVoters(tp partition.TopicPartition, want []uint64) {
	c.t.Helper()
	group := c.brokers[want[0]-1].Controller().View().Topics[tp.Topic].Partitions[tp.Partition].Group
	c.waitFor(60*time.Second, fmt.Sprintf("%s/%d: a leader whose voters are %v", tp.Topic, tp.Partition, want), func() bool {
		for _, id := range want {
			st := c.brokers[id-1].Board().Get(group)
			if st != nil && st.Role == "leader" {
				return slices.Equal(st.Voters, want) && len(st.Learners) == 0
			}
		}
		return false
	})
}

// checkHolds checks that broker i's replica of tp holds every acknowledged
// record at its offset, byte for byte.
func (c *testCluster) checkHolds(i int, tp partition.TopicPartition, acked map[int64][]byte) {
	c.t.Helper()
	var end int64
	for off := range acked {
		end = max(end, off+1)
	}
	var v *partition.View
	c.waitFor(10*time.Second, fmt.Sprintf("broker %d's replica of %s/%d reaches offset %d", i+1, tp.Topic, tp.Partition, end), func() bool {
		r := c.brokers[i].Replicas().Get(tp)
		if r == nil {
			return false
		}
		v = r.Machine.View()
		return v.HighWatermark >= end
	})
	if v.LogStart != 0 {
		c.t.Fatalf("broker %d's replica of %s/%d starts at offset %d, want 0", i+1, tp.Topic, tp.Partition, v.LogStart)
	}
	got := decodeRecords(c.t, readLog(c.t, v.Log, 0, v.HighWatermark))
	for off, want := range acked {
		if g, ok := got[off]; !ok || string(g) != string(want) {
			c.t.Fatalf("broker %d's replica of %s/%d: offset %d holds %q, acknowledged %q", i+1, tp.Topic, tp.Partition, off, g, want)
		}
	}
}

// decodeRecords returns the values of the records in uncompressed stored
// batches by offset.
func decodeRecords(t *testing.T, b []byte) map[int64][]byte {
	t.Helper()
	batches, err := partition.SplitBatches(b)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][]byte{}
	for _, raw := range batches {
		var batch kmsg.RecordBatch
		if err := batch.ReadFrom(raw); err != nil {
			t.Fatalf("decode batch: %v", err)
		}
		if batch.Attributes&0x07 != 0 {
			t.Fatalf("compressed batch at %d", batch.FirstOffset)
		}
		recs := batch.Records
		for range batch.NumRecords {
			n, size := binary.Varint(recs)
			if size <= 0 || int(n)+size > len(recs) {
				t.Fatalf("batch at %d: bad record length", batch.FirstOffset)
			}
			var r kmsg.Record
			if err := r.ReadFrom(recs[:size+int(n)]); err != nil {
				t.Fatalf("batch at %d: %v", batch.FirstOffset, err)
			}
			out[batch.FirstOffset+int64(r.OffsetDelta)] = r.Value
			recs = recs[size+int(n):]
		}
	}
	return out
}

// producer writes to every partition of a topic, one acks=all record per
// partition at a time, until stopped (or 20000 records per partition),
// and records what was acknowledged.
type producer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  []map[int64][]byte // per partition: offset → value
	err    error
}

func startProducer(ctx context.Context, cl *kgo.Client, topic string, partitions int) *producer {
	ctx, cancel := context.WithCancel(ctx)
	p := &producer{cancel: cancel, acked: make([]map[int64][]byte, partitions)}
	for part := range partitions {
		p.acked[part] = map[int64][]byte{}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for i := 0; i < 20000 && ctx.Err() == nil; i++ {
				r := &kgo.Record{Topic: topic, Partition: int32(part), Value: fmt.Appendf(nil, "p%d-%06d", part, i)}
				err := cl.ProduceSync(ctx, r).FirstErr()
				p.mu.Lock()
				if err == nil {
					p.acked[part][r.Offset] = r.Value
				} else if ctx.Err() == nil && p.err == nil {
					p.err = fmt.Errorf("partition %d, record %d: %w", part, i, err)
				}
				p.mu.Unlock()
			}
		}()
	}
	return p
}

func (p *producer) count(part int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked[part])
}

// waitAcked waits until n records of part are acknowledged.
func (p *producer) waitAcked(t *testing.T, part, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p.count(part) < n {
		if time.Now().After(deadline) {
			t.Fatalf("partition %d: %d records acknowledged, want %d", part, p.count(part), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends the producer and returns what was acknowledged; any produce
// error fails the test (the client retries leadership moves itself).
func (p *producer) stop(t *testing.T) []map[int64][]byte {
	t.Helper()
	p.cancel()
	p.wg.Wait()
	if p.err != nil {
		t.Fatalf("produce: %v", p.err)
	}
	return p.acked
}

// TestReassignOffsetsPartition: an offsets-topic partition moves off its
// preferred replica (its coordinator) onto the broker that did not host it;
// the committed offsets move with it, and the new preferred replica becomes
// the coordinator.
func TestReassignOffsetsPartition(t *testing.T) {
	c := newTestCluster(t, 4)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client()
	adm := kadm.NewClient(cl)
	c.createTopic(ctx, cl, "consumed", 1, 3, nil)

	const groupID = "reassigned-group"
	commit := kadm.Offsets{}
	commit.AddOffset("consumed", 0, 42, -1)
	c.waitFor(30*time.Second, "offsets committed", func() bool {
		res, err := adm.CommitOffsets(ctx, groupID, commit)
		return err == nil && res.Ok()
	})
	offsets := c.brokers[0].Controller().View().Topics[controller.OffsetsTopic]
	part := group.PartitionFor(groupID, int32(len(offsets.Partitions)))
	was := offsets.Partitions[part].Replicas
	var newcomer uint64
	for id := uint64(1); id <= 4; id++ {
		if !slices.Contains(was, id) {
			newcomer = id
		}
	}
	target := []uint64{newcomer, was[1], was[2]}
	c.reassign(controller.OffsetsTopic, part, target)
	sorted := slices.Sorted(slices.Values(target))
	c.checkVoters(partition.TopicPartition{Topic: controller.OffsetsTopic, Partition: part}, sorted)
	c.waitMoved(controller.OffsetsTopic, part, target)

	c.waitFor(10*time.Second, fmt.Sprintf("broker %d stops its offsets replica", was[0]), func() bool {
		return c.brokers[was[0]-1].coords.Get(part) == nil
	})
	c.waitFor(20*time.Second, fmt.Sprintf("broker %d coordinates the group with its offsets", newcomer), func() bool {
		co := c.brokers[newcomer-1].coords.Get(part)
		if co == nil || !co.Machine.Leadership().Leader {
			return false
		}
		got, err := adm.FetchOffsets(ctx, groupID)
		if err != nil {
			return false
		}
		o, ok := got.Lookup("consumed", 0)
		return ok && o.Err == nil && o.At == 42
	})
}

// TestReassignShrinkWithReplicaDown: with broker 3 down (fenced: out of
// Metadata's brokers), kadm moves a partition of [1 2 3] to [1] alone. As
// in Kafka, where the target is in sync at once and the move completes,
// the partition stays available: its raft group removes the dead voter
// before the live one (removing 2 first would leave voters {1, 3}, whose
// quorum needs the dead broker), and acks=all produces keep succeeding.
func TestReassignShrinkWithReplicaDown(t *testing.T) {
	c := newTestCluster(t, 3, shortSession)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cl := c.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MetadataMinAge(100*time.Millisecond))
	adm := kadm.NewClient(cl)
	const topic = "shrinking"
	created := ask[*controller.CreateTopicsDone](c, 0, c.brokers[0].ControllerActor(), func(r *actor.PID) any {
		return &controller.CreateTopics{ReplyTo: r, TimeoutTicks: 500, Topics: []controller.TopicSpec{{
			Name: topic, Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{{1, 2, 3}},
		}}}
	})
	if err := created.Results[0].Err; err != nil {
		t.Fatalf("create topic: %v", err)
	}
	tp := partition.TopicPartition{Topic: topic, Partition: 0}
	c.waitFor(20*time.Second, "partition led by broker 1", func() bool {
		r := c.brokers[0].Replicas().Get(tp)
		return r != nil && r.Machine.View().Leader
	})
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	c.crash(2)
	c.waitFor(15*time.Second, "broker 3 fenced", func() bool {
		md := metadataOf(ctx, t, cl, 1, topic)
		return len(md.Brokers) == 2 && slices.Equal(md.Topics[0].Partitions[0].OfflineReplicas, []int32{3})
	})

	var move kadm.AlterPartitionAssignmentsReq
	move.Assign(topic, 0, []int32{1})
	resp, err := adm.AlterPartitionAssignments(ctx, move)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("AlterPartitionReassignments: %v", err)
	}
	group := c.brokers[0].Controller().View().Topics[topic].Partitions[0].Group
	c.waitFor(20*time.Second, "broker 1 leads with voters [1]", func() bool {
		st := c.brokers[0].Board().Get(group)
		return st != nil && st.Role == "leader" && slices.Equal(st.Voters, []uint64{1}) && len(st.Learners) == 0
	})
	c.waitFor(10*time.Second, "no reassignment listed", func() bool {
		ls, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{topic: {0: {}}})
		return err == nil && len(ls) == 0
	})
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	if err := cl.ProduceSync(pctx, &kgo.Record{Topic: topic, Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("produce after the move: %v", err)
	}
}

// TestReassignStuckShrinkListed: a partition on [1 2 3] with broker 2 down
// is shrunk to [1 2]. Kafka completes a move that only removes replicas
// once every replica it keeps is in the ISR
// (PartitionReassignmentReplicas.maybeCompleteReassignment); 2 is not, so
// Kafka keeps removing [3] listed, and a cancel reverts it at once. Here
// the shrink is stuck too (removing 3 would leave voters {1, 2}, one of
// them dead): it is listed, and the cancel ends it.
func TestReassignStuckShrinkListed(t *testing.T) {
	c := newTestCluster(t, 3, shortSession)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client(kgo.MetadataMinAge(100 * time.Millisecond))
	adm := kadm.NewClient(cl)
	const topic = "shrink-stuck"
	created := ask[*controller.CreateTopicsDone](c, 0, c.brokers[0].ControllerActor(), func(r *actor.PID) any {
		return &controller.CreateTopics{ReplyTo: r, TimeoutTicks: 500, Topics: []controller.TopicSpec{{
			Name: topic, Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{{1, 2, 3}},
		}}}
	})
	if err := created.Results[0].Err; err != nil {
		t.Fatalf("create topic: %v", err)
	}
	c.crash(1)
	c.waitFor(15*time.Second, "broker 2 fenced", func() bool {
		md := metadataOf(ctx, t, cl, 1, topic)
		return len(md.Brokers) == 2 && slices.Equal(md.Topics[0].Partitions[0].OfflineReplicas, []int32{2})
	})
	alter := func(what string, req kadm.AlterPartitionAssignmentsReq) { alterAssignments(ctx, t, adm, what, req) }
	var shrink kadm.AlterPartitionAssignmentsReq
	shrink.Assign(topic, 0, []int32{1, 2})
	alter("shrink to [1 2]", shrink)
	// Each live broker lists it, as each may answer.
	for _, id := range []int32{1, 3} {
		c.waitFor(10*time.Second, fmt.Sprintf("the stuck shrink listed by broker %d", id), func() bool {
			req := kmsg.NewPtrListPartitionReassignmentsRequest()
			resp, err := cl.Broker(int(id)).Request(ctx, req)
			if err != nil {
				return false
			}
			ts := resp.(*kmsg.ListPartitionReassignmentsResponse).Topics
			return len(ts) == 1 && len(ts[0].Partitions) == 1 && slices.Equal(ts[0].Partitions[0].RemovingReplicas, []int32{3}) &&
				len(ts[0].Partitions[0].AddingReplicas) == 0
		})
	}
	if p := c.brokers[0].Controller().View().Topics[topic].Partitions[0]; !p.Reassigning() {
		t.Fatalf("the shrink finished with broker 2 down: %+v", p)
	}
	var undo kadm.AlterPartitionAssignmentsReq
	undo.CancelAssign(topic, 0)
	alter("cancel the stuck shrink", undo)
	c.waitFor(10*time.Second, "the cancelled shrink back on [1 2 3]", func() bool {
		p := c.brokers[0].Controller().View().Topics[topic].Partitions[0]
		return !p.Reassigning() && slices.Equal(p.Replicas, []uint64{1, 2, 3})
	})
}

// TestReassignPastMovesStuckOnDeadBroker: four brokers, broker 4 down but
// registered. Four moves to broker 4 are accepted (as Kafka accepts a dead
// registered target) and wait for it; a move from broker 1 to broker 2
// asked after them does not wait for them (before, at most four moves ran
// across the cluster, the oldest first, and it waited until an operator
// cancelled them). Cancelling the stuck ones ends them for Kafka at once:
// ListPartitionReassignments shows nothing as soon as the cancel is
// answered, as Kafka's controller drops the adding replicas in the
// cancelling record, and they end back on broker 1.
func TestReassignPastMovesStuckOnDeadBroker(t *testing.T) {
	c := newTestCluster(t, 4, shortSession)
	c.waitReady()
	c.waitFor(15*time.Second, "every broker at cluster level 2", func() bool {
		for _, b := range c.brokers {
			if b.Controller().View().ClusterLevel != controller.CommandLevel {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client(kgo.MetadataMinAge(100 * time.Millisecond))
	adm := kadm.NewClient(cl)
	const topic = "stuck"
	created := ask[*controller.CreateTopicsDone](c, 0, c.brokers[0].ControllerActor(), func(r *actor.PID) any {
		return &controller.CreateTopics{ReplyTo: r, TimeoutTicks: 500, Topics: []controller.TopicSpec{{
			Name: topic, Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{{1}, {1}, {1}, {1}, {1}},
		}}}
	})
	if err := created.Results[0].Err; err != nil {
		t.Fatalf("create topic: %v", err)
	}
	c.crash(3)
	c.waitFor(15*time.Second, "broker 4 fenced", func() bool {
		return len(metadataOf(ctx, t, cl, 1, topic).Brokers) == 3
	})

	alter := func(what string, req kadm.AlterPartitionAssignmentsReq) { alterAssignments(ctx, t, adm, what, req) }
	var stuck kadm.AlterPartitionAssignmentsReq
	for p := range int32(controller.MaxMovesPerBroker) {
		stuck.Assign(topic, p, []int32{4})
	}
	alter("moves to dead broker 4", stuck)
	var live kadm.AlterPartitionAssignmentsReq
	live.Assign(topic, 4, []int32{2})
	alter("move to broker 2", live)
	c.waitMoved(topic, 4, []uint64{2})
	c.checkVoters(partition.TopicPartition{Topic: topic, Partition: 4}, []uint64{2})

	all := kadm.TopicsSet{}
	for p := range int32(5) {
		all.Add(topic, p)
	}
	listed, err := adm.ListPartitionReassignments(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	if got := listed.Sorted(); len(got) != controller.MaxMovesPerBroker || !slices.Equal(got[0].AddingReplicas, []int32{4}) {
		t.Fatalf("listed %+v, want the %d moves to broker 4", got, controller.MaxMovesPerBroker)
	}

	var cancelStuck kadm.AlterPartitionAssignmentsReq
	for p := range int32(controller.MaxMovesPerBroker) {
		cancelStuck.CancelAssign(topic, p)
	}
	alter("cancel the moves to broker 4", cancelStuck)
	if listed, err = adm.ListPartitionReassignments(ctx, all); err != nil || len(listed.Sorted()) != 0 {
		t.Fatalf("listed after the cancel: %+v %v", listed.Sorted(), err)
	}
	for p := range int32(controller.MaxMovesPerBroker) {
		c.waitMoved(topic, p, []uint64{1})
	}
}

// alterAssignments asks for the reassignments of req with kadm and fails
// t, naming what, if the request or any partition of it fails.
func alterAssignments(ctx context.Context, t *testing.T, adm *kadm.Client, what string, req kadm.AlterPartitionAssignmentsReq) {
	t.Helper()
	resp, err := adm.AlterPartitionAssignments(ctx, req)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
