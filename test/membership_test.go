package test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// writeConfig (re)writes nd's config with peers as its peers list, and
// the other sections given (YAML, none of them kafka or raft).
func writeConfig(t *testing.T, nd *node, bootstrap bool, peers []*node, sections ...string) {
	t.Helper()
	var list strings.Builder
	for _, p := range peers {
		fmt.Fprintf(&list, "  - {id: %d, addr: %q}\n", p.id, p.raft)
	}
	cfg := fmt.Sprintf(`node_id: %d
data_dir: %q
bootstrap: %v
kafka: {listen: %q, %s}
raft: {listen: %q}
debug: {listen: %q}
log: {level: info, format: json}
peers:
%s%s`, nd.id, nd.dir, bootstrap, nd.kafka, groupSettings, nd.raft, nd.debug, list.String(), strings.Join(sections, ""))
	if err := os.WriteFile(nd.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// controllerMembers returns the controller group's voters and learners as
// nd's debug endpoint shows them.
func controllerMembers(nd *node) (voters, learners []uint64, ok bool) {
	var st struct {
		Groups []struct {
			Name     string   `json:"name"`
			Voters   []uint64 `json:"voters"`
			Learners []uint64 `json:"learners"`
		} `json:"groups"`
	}
	if err := getJSON("http://"+nd.debug+"/debug/raft", &st); err != nil {
		return nil, nil, false
	}
	for _, g := range st.Groups {
		if g.Name == "controller" {
			return g.Voters, g.Learners, true
		}
	}
	return nil, nil, false
}

// ackLog records what a producer had acknowledged: every record's value is
// its sequence number.
type ackLog struct {
	mu     sync.Mutex
	sent   int
	acked  map[uint64]kgo.Record
	failed int
}

// record is a produce promise: it notes the record's outcome.
func (l *ackLog) record(r *kgo.Record, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed++
		return
	}
	l.acked[binary.BigEndian.Uint64(r.Value)] = *r
}

// ackProducer produces in a goroutine of its own, which reports to the
// test through finish rather than calling t itself.
type ackProducer struct {
	log    *ackLog
	stop   chan struct{} // closed by halt: produce no more
	halted sync.Once
	done   chan struct{} // closed when every record sent is answered
	err    error         // the flush's, once done
}

// startAckProducer produces to topic with acks=all until halted or n
// records went out, paced at about rate records/s. If the test ends before
// finish, its cleanup stops the producer, abandoning what is unanswered,
// and waits for it.
func startAckProducer(t *testing.T, seeds []string, topic string, n, rate int) *ackProducer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.MetadataMinAge(100*time.Millisecond),
		kgo.RecordDeliveryTimeout(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	p := &ackProducer{log: &ackLog{acked: map[uint64]kgo.Record{}}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer cl.Close()
		start := time.Now()
	produce:
		for seq := 0; seq < n; seq++ {
			if seq%100 == 0 {
				due := time.NewTimer(time.Until(start.Add(time.Duration(seq) * time.Second / time.Duration(rate))))
				select {
				case <-p.stop:
					due.Stop()
					break produce
				case <-due.C:
				}
			}
			v := binary.BigEndian.AppendUint64(nil, uint64(seq))
			cl.Produce(ctx, &kgo.Record{Key: v, Value: v}, p.log.record)
			p.log.sent++
		}
		p.err = cl.Flush(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		p.halt()
		<-p.done
	})
	return p
}

// halt stops producing; records sent are still answered.
func (p *ackProducer) halt() { p.halted.Do(func() { close(p.stop) }) }

// finish stops producing, waits until every record sent is answered and
// returns the log; a flush that failed fails the test.
func (p *ackProducer) finish(t *testing.T) *ackLog {
	t.Helper()
	p.halt()
	<-p.done
	if p.err != nil {
		t.Fatalf("flush: %v", p.err)
	}
	return p.log
}

// checkAcked reads topic back from the start and checks that every
// acknowledged record is there at its offset, and that within each
// partition sequence numbers only grow.
func checkAcked(t *testing.T, seeds []string, topic string, partitions int, log *ackLog) {
	t.Helper()
	if len(log.acked) == 0 {
		t.Fatalf("no record acknowledged (%d failed): nothing to check", log.failed)
	}
	ends := endOffsets(t, clusterAdmin(t, seeds), topic, partitions)
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want := 0
	for _, e := range ends {
		want += int(e)
	}
	got := map[int32][]*kgo.Record{}
	n := 0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for n < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			got[r.Partition] = append(got[r.Partition], r)
			n++
		})
	}
	missing := 0
	for seq, a := range log.acked {
		rs := got[a.Partition]
		i, ok := slices.BinarySearchFunc(rs, a.Offset, func(r *kgo.Record, off int64) int { return int(r.Offset - off) })
		if !ok || binary.BigEndian.Uint64(rs[i].Value) != seq {
			missing++
		}
	}
	reordered := 0
	for _, rs := range got {
		for i := 1; i < len(rs); i++ {
			if binary.BigEndian.Uint64(rs[i].Value) < binary.BigEndian.Uint64(rs[i-1].Value) {
				reordered++
			}
		}
	}
	t.Logf("%d acknowledged (%d failed), %d read back", len(log.acked), log.failed, n)
	if missing > 0 || reordered > 0 {
		t.Fatalf("%d acknowledged records missing, %d out of order", missing, reordered)
	}
}

// TestGrowAndShrinkByConfig: three brokers take produce (acks=all) and a
// consumer group without pause while brokers 4 and 5 are added by config,
// the topic is reassigned over all five, and brokers 1 and 2 are removed
// by config; nothing acknowledged is lost or reordered, the group keeps
// consuming, and a removed broker refuses to start again.
func TestGrowAndShrinkByConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const topic, partitions = "grow", 10
	nodes := newClusterWith(t, 5, groupSettings)
	founders := nodes[:3]
	for _, nd := range founders {
		writeConfig(t, nd, true, founders)
		nd.start(t)
	}
	waitLeader(t, 15*time.Second, founders)
	seeds := []string{nodes[0].kafka, nodes[1].kafka, nodes[2].kafka, nodes[3].kafka, nodes[4].kafka}
	adm := clusterAdmin(t, seeds)
	createReplicated(t, adm, topic, partitions)

	producer := startAckProducer(t, seeds, topic, 400_000, 2000)
	d := newDeliveries()
	var lastMu sync.Mutex
	last, maxGap := time.Now(), time.Duration(0)
	startMember(t, seeds, "grow-group", topic, d)
	// The gap watcher: the longest time no record was delivered while
	// producing.
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		seen := 0
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-producer.stop:
				return
			case <-tick.C:
			}
			d.mu.Lock()
			n := d.count
			d.mu.Unlock()
			lastMu.Lock()
			if n != seen {
				seen, last = n, time.Now()
			} else if gap := time.Since(last); gap > maxGap {
				maxGap = gap
			}
			lastMu.Unlock()
		}
	}()

	// Add brokers 4 and 5: every config lists all five; the new ones
	// join by themselves, the running ones reload.
	for _, nd := range nodes {
		writeConfig(t, nd, nd.id <= 3, nodes)
	}
	for _, nd := range founders {
		nd.signal(syscall.SIGHUP)
	}
	nodes[3].start(t)
	nodes[4].start(t)
	waitFor(t, 60*time.Second, "brokers 4 and 5 voters", func() bool {
		checkStarted(t, nodes[3], nodes[4])
		v, l, ok := controllerMembers(nodes[0])
		return ok && len(l) == 0 && slices.Equal(v, []uint64{1, 2, 3, 4, 5})
	})
	waitBrokers(t, seeds, []int32{1, 2, 3, 4, 5})

	// Spread the topic over all five.
	req := kadm.AlterPartitionAssignmentsReq{}
	for p := range int32(partitions) {
		req.Assign(topic, p, []int32{p%5 + 1, (p+1)%5 + 1, (p+2)%5 + 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	resp, err := adm.AlterPartitionAssignments(ctx, req)
	cancel()
	if err != nil {
		t.Fatalf("alter partition assignments: %v", err)
	}
	if err := resp.Error(); err != nil {
		t.Fatalf("alter partition assignments: %v", err)
	}
	waitReplicas(t, adm, topic, func(p int32, replicas []int32) bool {
		return slices.Equal(replicas, []int32{p%5 + 1, (p+1)%5 + 1, (p+2)%5 + 1})
	})

	// Remove broker 1, then broker 2, by config.
	for _, gone := range []int{0, 1} {
		rest := nodes[gone+1:]
		for _, nd := range rest {
			writeConfig(t, nd, nd.id <= 3, rest)
			nd.signal(syscall.SIGHUP)
		}
		if code := nodes[gone].wait(90 * time.Second); code != 3 {
			t.Fatalf("removed broker %d exited with %d, want 3", nodes[gone].id, code)
		}
		waitFor(t, 30*time.Second, fmt.Sprintf("broker %d out of the controller", nodes[gone].id), func() bool {
			v, l, ok := controllerMembers(rest[0])
			return ok && len(l) == 0 && !slices.Contains(v, nodes[gone].id) && len(v) == len(rest)
		})
		id := int32(nodes[gone].id)
		waitReplicas(t, adm, topic, func(_ int32, replicas []int32) bool { return !slices.Contains(replicas, id) && len(replicas) == 3 })
	}

	waitBrokers(t, seeds[2:], []int32{3, 4, 5})

	// A removed broker refuses to start with its old config.
	nodes[0].start(t)
	if code := nodes[0].wait(20 * time.Second); code == 0 || code == -1 {
		t.Fatalf("removed broker 1 restarted: exit %d", code)
	}
	if !strings.Contains(nodes[0].tail(4000), "was removed") {
		t.Fatalf("removed broker 1 did not say why it refused to start:\n%s", nodes[0].tail(2000))
	}
	// Nor with an empty data dir: its id is never reused.
	if err := os.RemoveAll(nodes[0].dir); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, nodes[0], false, append([]*node{nodes[0]}, nodes[2:]...))
	nodes[0].start(t)
	if code := nodes[0].wait(30 * time.Second); code != 3 {
		t.Fatalf("broker 1 with a fresh data dir: exit %d, want 3 (its id was removed)", code)
	}

	log := producer.finish(t)
	<-watchDone
	// Produce ran all along at 2000 records/s, without pause: nearly all
	// of what went out is acknowledged, through every change.
	if len(log.acked) < 1000 || len(log.acked) < log.sent*9/10 {
		t.Fatalf("%d of %d records acknowledged (%d failed) while the cluster grew and shrank", len(log.acked), log.sent, log.failed)
	}
	checkAcked(t, seeds[2:], topic, partitions, log)
	redelivered := waitAllDelivered(t, clusterAdmin(t, seeds[2:]), topic, partitions, len(log.acked), d)
	lastMu.Lock()
	t.Logf("group: %d redelivered, longest pause in deliveries %v", redelivered, maxGap)
	if maxGap > 20*time.Second {
		t.Errorf("the group stopped consuming for %v", maxGap)
	}
	lastMu.Unlock()
}

// waitBrokers waits until Metadata and DescribeCluster both list exactly
// the brokers want.
func waitBrokers(t *testing.T, seeds []string, want []int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("brokers: %s", last)
		}
	}()
	waitFor(t, 30*time.Second, fmt.Sprintf("brokers %v in Metadata and DescribeCluster", want), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		md, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
		if err != nil {
			last = err.Error()
			return false
		}
		dc, err := kmsg.NewPtrDescribeClusterRequest().RequestWith(ctx, cl)
		if err != nil {
			last = err.Error()
			return false
		}
		var inMD, inDC []int32
		for _, b := range md.Brokers {
			inMD = append(inMD, b.NodeID)
		}
		for _, b := range dc.Brokers {
			inDC = append(inDC, b.NodeID)
		}
		slices.Sort(inMD)
		slices.Sort(inDC)
		last = fmt.Sprintf("metadata %v, describe cluster %v", inMD, inDC)
		return slices.Equal(inMD, want) && slices.Equal(inDC, want)
	})
	t.Logf("brokers: %s", last)
}

// waitReplicas waits until Metadata shows every partition of topic with
// replicas that ok accepts.
func waitReplicas(t *testing.T, adm *kadm.Client, topic string, ok func(p int32, replicas []int32) bool) {
	t.Helper()
	var last string
	waitFor(t, 120*time.Second, "replicas of "+topic, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			last = err.Error()
			return false
		}
		td, found := md.Topics[topic]
		if !found || len(td.Partitions) == 0 {
			return false
		}
		last = ""
		good := true
		for p, pd := range td.Partitions {
			last += fmt.Sprintf("%d:%v ", p, pd.Replicas)
			good = good && ok(p, pd.Replicas)
		}
		return good
	})
	t.Logf("%s replicas: %s", topic, last)
}

// TestReassignmentSurvivesLeaderKill: a partition moving from brokers
// {1,2} to {2,3} has its leader SIGKILLed while the move cannot finish
// (broker 3 is down); once both are back the move completes and every
// acknowledged record is on the new replicas.
func TestReassignmentSurvivesLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const topic = "moving"
	nodes, seeds := startCluster(t, 3)
	adm := clusterAdmin(t, seeds)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, 20*time.Second, "topic created on brokers 1 and 2", func() bool {
		req := kmsg.NewPtrCreateTopicsRequest()
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
		ra := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		ra.Partition, ra.Replicas = 0, []int32{1, 2}
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, ra)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		return err == nil && (resp.Topics[0].ErrorCode == 0 || resp.Topics[0].ErrorCode == 36)
	})

	// Enough data that the new replica takes a while to catch up.
	log := &ackLog{acked: map[uint64]kgo.Record{}}
	value := make([]byte, 1024)
	for seq := range 50_000 {
		v := binary.BigEndian.AppendUint64(nil, uint64(seq))
		rec := &kgo.Record{Key: v, Value: append(v, value...)}
		cl.Produce(ctx, rec, log.record)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Nothing is down yet: every record is acknowledged.
	if len(log.acked) != 50_000 || log.failed != 0 {
		t.Fatalf("%d of 50000 records acknowledged, %d failed, before any kill", len(log.acked), log.failed)
	}
	replicaDirs := filepath.Join(nodes[0].dir, "partitions", topic+"-0-g*")
	if dirs, err := filepath.Glob(replicaDirs); err != nil || len(dirs) != 1 {
		t.Fatalf("broker 1's replica of %s-0 before the move: %v %v", topic, dirs, err)
	}

	// Broker 3, the new replica, is down: the move starts and cannot finish.
	nodes[2].kill()
	req := kadm.AlterPartitionAssignmentsReq{}
	req.Assign(topic, 0, []int32{2, 3})
	resp, err := adm.AlterPartitionAssignments(ctx, req)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("alter partition assignments: %v", err)
	}
	listed, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{topic: {0: {}}})
	if err != nil || len(listed) != 1 {
		t.Fatalf("the move is not listed in progress: %v %v", listed, err)
	}
	leader := partitionLeader(t, adm, topic, 0)
	victim := nodes[leader-1]
	victim.kill()
	t.Logf("SIGKILLed broker %d, the leader of the moving partition, while broker 3 was down", victim.id)
	victim.start(t)
	nodes[2].start(t)
	waitReplicas(t, adm, topic, func(_ int32, replicas []int32) bool { return slices.Equal(replicas, []int32{2, 3}) })
	listed, err = adm.ListPartitionReassignments(ctx, kadm.TopicsSet{topic: {0: {}}})
	if err != nil {
		t.Fatalf("list reassignments: %v", err)
	}
	if n := len(listed); n != 0 {
		t.Fatalf("reassignments still listed after completion: %v", listed)
	}
	checkAcked(t, seeds, topic, 1, log)
	waitFor(t, 30*time.Second, "broker 1's replica deleted", func() bool {
		dirs, err := filepath.Glob(replicaDirs)
		return err == nil && len(dirs) == 0
	})
}

// partitionLeader returns the leader of topic's partition p, once it has one.
func partitionLeader(t *testing.T, adm *kadm.Client, topic string, p int32) int32 {
	t.Helper()
	var leader int32 = -1
	waitFor(t, 20*time.Second, "partition leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return false
		}
		leader = md.Topics[topic].Partitions[p].Leader
		return leader > 0
	})
	return leader
}
