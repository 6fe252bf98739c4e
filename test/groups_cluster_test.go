package test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// deliveries counts what a group's consumers processed: partition →
// offset → times delivered.
type deliveries struct {
	mu    sync.Mutex
	seen  map[int32]map[int64]int
	count int // deliveries so far
}

func newDeliveries() *deliveries { return &deliveries{seen: map[int32]map[int64]int{}} }

func (d *deliveries) add(r *kgo.Record) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen[r.Partition] == nil {
		d.seen[r.Partition] = map[int64]int{}
	}
	d.seen[r.Partition][r.Offset]++
	d.count++
}

// missing counts the offsets below ends not delivered yet, and returns the
// redeliveries so far. Ends without a partition, or with a negative end
// (kadm's offset for a partition that answered an error), are an error:
// they would check nothing.
func (d *deliveries) missing(ends map[int32]int64) (missing, redelivered int, err error) {
	if len(ends) == 0 {
		return 0, 0, errors.New("no partition ends to check deliveries against")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for p, end := range ends {
		if end < 0 {
			return 0, 0, fmt.Errorf("partition %d ends at %d", p, end)
		}
		for o := int64(0); o < end; o++ {
			if n := d.seen[p][o]; n == 0 {
				missing++
			} else {
				redelivered += n - 1
			}
		}
	}
	return missing, redelivered, nil
}

// member is one franz-go group consumer, polling in its own goroutine.
type member struct {
	cl   *kgo.Client
	stop context.CancelFunc
	done chan struct{}
}

func startMember(t *testing.T, seeds []string, group, topic string, d *deliveries, opts ...kgo.Opt) *member {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	m := &member{cl: cl, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(d.add)
		}
	}()
	t.Cleanup(func() { m.leave(t) })
	return m
}

// leave commits what the member processed and leaves the group.
func (m *member) leave(t *testing.T) {
	select {
	case <-m.done:
		return
	default:
	}
	m.stop()
	<-m.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Logf("final commit: %v", err)
	}
	m.cl.Close()
}

// clusterAdmin returns a kadm client seeded with every broker.
func clusterAdmin(t *testing.T, seeds []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// startCluster starts n brokers with the group settings and waits for the
// controller; it returns them and their Kafka addresses.
func startCluster(t *testing.T, n int) ([]*node, []string) {
	t.Helper()
	return startClusterWith(t, n, groupSettings)
}

// startClusterWith is startCluster with kafkaExtra in each broker's kafka
// section (newClusterWith) instead of the group settings.
func startClusterWith(t *testing.T, n int, kafkaExtra string) ([]*node, []string) {
	t.Helper()
	nodes := newClusterWith(t, n, kafkaExtra)
	var seeds []string
	for _, nd := range nodes {
		nd.start(t)
		seeds = append(seeds, nd.kafka)
	}
	waitLeader(t, 15*time.Second, nodes)
	return nodes, seeds
}

func createReplicated(t *testing.T, adm *kadm.Client, topic string, partitions int32) {
	t.Helper()
	createReplicatedWith(t, adm, topic, partitions, nil)
}

// createReplicatedWith creates topic with replication factor 3 and the
// topic configs, asking again until every broker has registered (before,
// the controller refuses RF 3).
func createReplicatedWith(t *testing.T, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	waitFor(t, 20*time.Second, "topic "+topic+" created", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := adm.CreateTopic(ctx, partitions, 3, configs, topic)
		return err == nil && (resp.Err == nil || errCode(resp.Err) == 36) // 36: it exists (an earlier try got through)
	})
}

// numberedProducer returns what produces the records from to to-1 to
// topic, one request each, record i keyed by its low byte and valued by
// its decimal digits, failing t on any error.
func numberedProducer(ctx context.Context, t *testing.T, seeds []string, topic string) func(from, to int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte{byte(i)}, Value: fmt.Appendf(nil, "%d", i)}).FirstErr(); err != nil {
				t.Fatalf("produce %d: %v", i, err)
			}
		}
	}
}

// produceIncompressible produces n records of 600 random bytes to topic,
// one request each (a batch per record), from a generator seeded with
// seed and seed+1, and returns their values.
func produceIncompressible(ctx context.Context, t *testing.T, seeds []string, topic string, n int, seed uint64) [][]byte {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	values := make([][]byte, n)
	for i := range n {
		values[i] = make([]byte, 600)
		for j := range values[i] {
			values[i][j] = byte(rng.Uint32())
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: values[i]}).FirstErr(); err != nil {
			t.Fatalf("produce record %d: %v", i, err)
		}
	}
	return values
}

// bgProducer is a producer running in a goroutine of its own, which
// reports to the test through wait rather than calling t itself.
type bgProducer struct {
	done chan struct{} // closed when every record is answered

	mu       sync.Mutex
	acked    int
	failed   int
	firstErr error
}

// produceInBackground produces n records to topic, paced over d. Its wait
// returns once all are answered; if the test ends first, its cleanup stops
// the producer and waits for it.
func produceInBackground(t *testing.T, seeds []string, topic string, n int, d time.Duration) *bgProducer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	p := &bgProducer{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer cl.Close()
		start := time.Now()
		for i := 0; i < n && ctx.Err() == nil; i++ {
			if i%500 == 0 && !pause(ctx, time.Until(start.Add(d*time.Duration(i)/time.Duration(n)))) {
				break
			}
			cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte("v")}, p.record)
		}
		if err := cl.Flush(ctx); err != nil {
			p.record(nil, fmt.Errorf("flush: %w", err))
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// record is the records' promise.
func (p *bgProducer) record(_ *kgo.Record, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.acked++
		return
	}
	if p.failed++; p.firstErr == nil {
		p.firstErr = err
	}
}

// wait waits until every record is answered, fails the test if any was
// not acknowledged, and returns how many were.
func (p *bgProducer) wait(t *testing.T) int {
	t.Helper()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed > 0 {
		t.Fatalf("%d records not acknowledged (%d were); first: %v", p.failed, p.acked, p.firstErr)
	}
	return p.acked
}

// pause waits d, or less if ctx ends first; it reports whether d passed.
// It paces work, it does not wait for a condition.
func pause(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// endOffsets returns the high watermark of each of topic's partitions,
// once all of them answer (right after a kill one may still be electing).
func endOffsets(t *testing.T, adm *kadm.Client, topic string, partitions int) map[int32]int64 {
	t.Helper()
	var ends map[int32]int64
	var last error
	waitFor(t, 30*time.Second, fmt.Sprintf("end offsets of the %d partitions of %s", partitions, topic), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		listed, err := adm.ListEndOffsets(ctx, topic)
		ends, last = partitionEnds(listed, err, topic, partitions)
		return last == nil
	})
	if last != nil { // only when waitFor did not end the test
		t.Fatal(last)
	}
	return ends
}

// partitionEnds checks a ListEndOffsets answer for topic and returns each
// partition's end: the request must have succeeded and every partition
// answered, without error (kadm reports a partition's error with offset
// -1, and leaves out those of a broker that did not answer). partitions is
// how many there must be; 0 accepts however many Metadata listed, at least
// one.
func partitionEnds(listed kadm.ListedOffsets, err error, topic string, partitions int) (map[int32]int64, error) {
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	ends := map[int32]int64{}
	for p, o := range listed[topic] {
		if o.Err != nil || o.Offset < 0 {
			return nil, fmt.Errorf("end offset of %s/%d: %d, %v", topic, p, o.Offset, o.Err)
		}
		ends[p] = o.Offset
	}
	if len(ends) == 0 || (partitions > 0 && len(ends) != partitions) {
		return nil, fmt.Errorf("end offsets of %s: %d partitions answered, want %d", topic, len(ends), partitions)
	}
	return ends, nil
}

// waitAllDelivered waits until every record up to the current high
// watermarks, at least acked of them, was delivered, and returns the
// redeliveries.
func waitAllDelivered(t *testing.T, adm *kadm.Client, topic string, partitions, acked int, d *deliveries) int {
	t.Helper()
	ends := endOffsets(t, adm, topic, partitions)
	var total int64
	for _, end := range ends {
		total += end
	}
	if total < int64(acked) {
		t.Fatalf("the partitions of %s end at %v, %d records in all, fewer than the %d acknowledged", topic, ends, total, acked)
	}
	var missing, redelivered int
	var err error
	waitFor(t, 60*time.Second, "every record delivered", func() bool {
		missing, redelivered, err = d.missing(ends)
		return err != nil || missing == 0
	})
	if err != nil {
		t.Fatal(err)
	}
	return redelivered
}

// waitStable waits until group is Stable with members members whose
// assignments cover the topic's partitions exactly once.
func waitStable(t *testing.T, adm *kadm.Client, group, topic string, members, partitions int) {
	t.Helper()
	var last string
	waitFor(t, 60*time.Second, fmt.Sprintf("group %s stable with %d members sharing %d partitions", group, members, partitions), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			last = err.Error()
			return false
		}
		g := described[group]
		owners := map[int32]int{}
		for _, m := range g.Members {
			c, ok := m.Assigned.AsConsumer()
			if !ok {
				continue
			}
			for _, tp := range c.Topics {
				if tp.Topic == topic {
					for _, p := range tp.Partitions {
						owners[p]++
					}
				}
			}
		}
		last = fmt.Sprintf("state %s, %d members, owners %v, err %v", g.State, len(g.Members), owners, g.Err)
		if g.Err != nil || g.State != "Stable" || len(g.Members) != members || len(owners) != partitions {
			return false
		}
		for _, n := range owners {
			if n != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("group %s: %s", group, last)
}

// TestGroupMembersShareAndRebalance: on three brokers, three members of a
// group share a 12-partition RF=3 topic without overlap, a fourth joins
// and one leaves, and every record is processed — with the cooperative
// (franz-go's default), range and round-robin assignors; then two kcat -G
// (librdkafka) consume the topic in a group of their own.
func TestGroupMembersShareAndRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes, seeds := startCluster(t, 3)
	adm := clusterAdmin(t, seeds)
	const topic, partitions, records = "work", 12, 20000
	createReplicated(t, adm, topic, partitions)
	produced := produceInBackground(t, seeds, topic, records, 10*time.Second)

	for _, tc := range []struct {
		name     string
		balancer kgo.GroupBalancer
	}{
		{"cooperative-sticky", kgo.CooperativeStickyBalancer()},
		{"range", kgo.RangeBalancer()},
		{"roundrobin", kgo.RoundRobinBalancer()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			group := "workers-" + tc.name
			d := newDeliveries()
			var ms []*member
			for range 3 {
				ms = append(ms, startMember(t, seeds, group, topic, d, kgo.Balancers(tc.balancer)))
			}
			waitStable(t, adm, group, topic, 3, partitions)
			ms = append(ms, startMember(t, seeds, group, topic, d, kgo.Balancers(tc.balancer)))
			waitStable(t, adm, group, topic, 4, partitions)
			ms[0].leave(t)
			waitStable(t, adm, group, topic, 3, partitions)
			acked := produced.wait(t)
			redelivered := waitAllDelivered(t, adm, topic, partitions, acked, d)
			t.Logf("%s: all %d records processed, %d redelivered across the rebalances", tc.name, records, redelivered)
		})
	}

	// librdkafka's balanced consumer joins the same kind of group on the
	// same cluster: two kcat -G read the topic to its end between them and
	// leave the group's offsets committed there.
	t.Run("kcat", func(t *testing.T) {
		const group = "workers-kcat"
		ctx := testCtx(t, 60*time.Second)
		d := newDeliveries()
		ms := []*kcatGroupMember{startKcatGroup(t, ctx, nodes[0], group, topic), startKcatGroup(t, ctx, nodes[1], group, topic)}
		for _, m := range ms {
			for _, msg := range m.wait(t) {
				d.add(&kgo.Record{Partition: msg.Partition, Offset: msg.Offset})
			}
		}
		ends := endOffsets(t, adm, topic, partitions)
		if missing, redelivered, err := d.missing(ends); err != nil || missing != 0 {
			t.Fatalf("two kcat -G missed %d records (%d redelivered): %v", missing, redelivered, err)
		}
		if got := committed(t, seeds, group, topic); !maps.Equal(got, ends) {
			t.Fatalf("kcat group committed %v, the partitions end at %v", got, ends)
		}
	})
}

// findCoordinator asks broker nd which broker coordinates group, until
// one is known (asking a broker directly: clients cache coordinators).
func findCoordinator(t *testing.T, nd *node, group string) int32 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(nd.kafka))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var id int32 = -1
	waitFor(t, 20*time.Second, "coordinator of "+group, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKeys = []string{group}
		// The broker must be registered (known to the client) first.
		if err := cl.Ping(ctx); err != nil {
			return false
		}
		kresp, err := cl.Broker(int(nd.id)).Request(ctx, req)
		if err != nil {
			return false
		}
		if c := kresp.(*kmsg.FindCoordinatorResponse).Coordinators[0]; c.ErrorCode == 0 {
			id = c.NodeID
			return true
		}
		return false
	})
	return id
}

// committed returns group's committed offsets of topic, through a new
// client each time: kadm keeps the coordinator it found for a group and
// retries a dead one's address rather than looking for the new one.
func committed(t *testing.T, seeds []string, group, topic string) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	var lastErr error
	defer func() {
		if t.Failed() {
			t.Logf("last OffsetFetch error: %v", lastErr)
		}
	}()
	waitFor(t, 30*time.Second, "offsets of "+group, func() bool {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resps, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
		if err == nil {
			err = resps.Error()
		}
		if lastErr = err; err != nil {
			return false
		}
		resps.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic {
				out[o.Partition] = o.At
			}
		})
		return true
	})
	return out
}

// TestGroupSurvivesCoordinatorKill: a three-member group keeps consuming
// through the SIGKILL of its coordinator's broker — the new coordinator
// has every offset committed before the kill, nothing is skipped — and
// after all brokers restart the committed offsets are still there.
func TestGroupSurvivesCoordinatorKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes, seeds := startCluster(t, 3)
	adm := clusterAdmin(t, seeds)
	const group, topic, partitions, records = "survivors", "stream", 12, 30000
	createReplicated(t, adm, topic, partitions)
	produced := produceInBackground(t, seeds, topic, records, 15*time.Second)
	d := newDeliveries()
	var ms []*member
	for range 3 {
		ms = append(ms, startMember(t, seeds, group, topic, d, kgo.AutoCommitInterval(500*time.Millisecond)))
	}
	waitStable(t, adm, group, topic, 3, partitions)
	waitFor(t, 30*time.Second, "offsets committed on every partition", func() bool {
		return len(committed(t, seeds, group, topic)) == partitions
	})

	coord := findCoordinator(t, nodes[0], group)
	victim, witness := nodes[coord-1], nodes[coord%3]
	before := committed(t, seeds, group, topic)
	victim.kill()
	t.Logf("SIGKILLed broker %d, the coordinator of %s; committed before: %v", coord, group, before)
	var next int32
	waitFor(t, 20*time.Second, "a new coordinator", func() bool {
		next = findCoordinator(t, witness, group)
		return next != coord
	})
	after := committed(t, seeds, group, topic)
	for p, o := range before {
		if after[p] < o {
			t.Errorf("partition %d: new coordinator %d has offset %d committed, %d was committed before the kill", p, next, after[p], o)
		}
	}
	victim.start(t)

	acked := produced.wait(t)
	redelivered := waitAllDelivered(t, adm, topic, partitions, acked, d)
	t.Logf("all %d records processed through the coordinator's kill; %d redelivered", records, redelivered)
	if redelivered > records/2 {
		t.Errorf("%d of %d records redelivered: the group restarted from far behind its commits", redelivered, records)
	}
	waitStable(t, adm, group, topic, 3, partitions)

	for _, m := range ms {
		m.leave(t)
	}
	final := committed(t, seeds, group, topic)
	for _, nd := range nodes {
		nd.kill()
	}
	for _, nd := range nodes {
		nd.start(t)
	}
	waitLeader(t, 15*time.Second, nodes)
	if got := committed(t, seeds, group, topic); !maps.Equal(got, final) {
		t.Fatalf("committed offsets after restarting every broker: %v, before: %v", got, final)
	}
	t.Logf("committed offsets survived restarting every broker: %v", slices.Sorted(maps.Values(final)))
}

// TestFindCoordinatorBatched: FindCoordinator v4+ answers many keys, each
// with the broker that leads its offsets partition (as every broker sees
// it), and refuses transaction coordinators.
func TestFindCoordinatorBatched(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes, _ := startCluster(t, 3)
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	findCoordinator(t, nodes[0], keys[0]) // creates the offsets topic
	// Coordinators spread as the assignment does: every offsets partition
	// ends up led by its preferred replica.
	cl, err := kgo.NewClient(kgo.SeedBrokers(nodes[0].kafka))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var off string
	defer func() {
		if t.Failed() {
			t.Logf("last metadata of the offsets topic: %s", off)
		}
	}()
	waitFor(t, 30*time.Second, "offsets partitions led by their preferred replicas", func() bool {
		mt := topicMetadata(t, cl, "__consumer_offsets")
		off = fmt.Sprintf("internal %v, %d partitions:", mt.IsInternal, len(mt.Partitions))
		ok := mt.IsInternal && len(mt.Partitions) == 16
		for _, p := range mt.Partitions {
			off += fmt.Sprintf(" %d:%d%v", p.Partition, p.Leader, p.Replicas)
			if len(p.Replicas) != 3 || p.Leader != p.Replicas[0] {
				ok = false
			}
		}
		return ok
	})
	want := map[string]int32{}
	for _, k := range keys {
		want[k] = findCoordinator(t, nodes[0], k)
	}
	for _, nd := range nodes {
		cl, err := kgo.NewClient(kgo.SeedBrokers(nd.kafka))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		// Every broker learns the leaderships of the offsets partitions it
		// does not lead from their leaders' broadcasts (every 0.5 s).
		var last []kmsg.FindCoordinatorResponseCoordinator
		waitFor(t, 10*time.Second, fmt.Sprintf("broker %d agrees on every coordinator", nd.id), func() bool {
			req := kmsg.NewPtrFindCoordinatorRequest()
			req.CoordinatorKeys = keys
			last = brokerRequest[*kmsg.FindCoordinatorResponse](t, cl, nd, req).Coordinators
			for i, c := range last {
				if c.Key != keys[i] || c.ErrorCode != 0 || c.NodeID != want[c.Key] {
					return false
				}
			}
			return true
		})
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorType, req.CoordinatorKeys = 1, []string{"txn"}
		resp := brokerRequest[*kmsg.FindCoordinatorResponse](t, cl, nd, req)
		if resp.Coordinators[0].ErrorCode == 0 {
			t.Errorf("broker %d: a transaction coordinator was found: %+v", nd.id, resp.Coordinators[0])
		}
	}
}

// TestEndOffsetChecks: the checks that every record was delivered or read
// refuse answers that would make them check nothing: a failed listing, a
// partition that answered an error (offset -1), a partition left out, no
// partitions at all.
func TestEndOffsetChecks(t *testing.T) {
	const topic = "t"
	ok := func(p int32, off int64) kadm.ListedOffset {
		return kadm.ListedOffset{Topic: topic, Partition: p, Offset: off}
	}
	for _, tc := range []struct {
		name       string
		listed     kadm.ListedOffsets
		err        error
		partitions int
		good       bool
	}{
		{"every partition", kadm.ListedOffsets{topic: {0: ok(0, 5), 1: ok(1, 0)}}, nil, 2, true},
		{"any number of partitions", kadm.ListedOffsets{topic: {0: ok(0, 5)}}, nil, 0, true},
		{"request failed", nil, errors.New("no broker answered"), 2, false},
		{"partition error", kadm.ListedOffsets{topic: {0: ok(0, 5), 1: {Topic: topic, Partition: 1, Offset: -1, Err: kerr.NotLeaderForPartition}}}, nil, 2, false},
		{"negative offset", kadm.ListedOffsets{topic: {0: ok(0, 5), 1: ok(1, -1)}}, nil, 2, false},
		{"partition left out", kadm.ListedOffsets{topic: {0: ok(0, 5)}}, nil, 2, false},
		{"no partitions", kadm.ListedOffsets{}, nil, 0, false},
		{"topic error", kadm.ListedOffsets{topic: {-1: {Topic: topic, Partition: -1, Err: kerr.UnknownTopicOrPartition}}}, nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ends, err := partitionEnds(tc.listed, tc.err, topic, tc.partitions)
			if (err == nil) != tc.good {
				t.Fatalf("partitionEnds: %v %v, want good %v", ends, err, tc.good)
			}
		})
	}

	d := newDeliveries()
	d.add(&kgo.Record{Partition: 0, Offset: 0})
	for _, tc := range []struct {
		name    string
		ends    map[int32]int64
		missing int
		good    bool
	}{
		{"delivered", map[int32]int64{0: 1}, 0, true},
		{"one missing", map[int32]int64{0: 2}, 1, true},
		{"partition missing", map[int32]int64{0: 1, 1: 1}, 1, true},
		{"no ends", map[int32]int64{}, 0, false},
		{"errored end", map[int32]int64{0: 1, 1: -1}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			missing, _, err := d.missing(tc.ends)
			if (err == nil) != tc.good || missing != tc.missing {
				t.Fatalf("missing(%v) = %d, %v; want %d, good %v", tc.ends, missing, err, tc.missing, tc.good)
			}
		})
	}
}
