package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/internal/testports"
	"github.com/flotilla/flotilla/raftactor"
)

// testCluster is n brokers in this process, over real TCP on 127.0.0.1.
type testCluster struct {
	t         *testing.T
	cfgs      []*configs.Config
	brokers   []*Broker // nil while stopped
	proposers int
	// tunePartitions, when set, adjusts the partitions of brokers started
	// from then on.
	tunePartitions func(*partition.RaftSettings)
	// wrapTransport, when set, gives the brokers started from then on a
	// transport wrapped for their node id.
	wrapTransport func(self uint64) func(raftactor.Transport) raftactor.Transport
	// wrapRaftListener, when set, gives the brokers started from then on
	// their raft listener, bound by the test, wrapped for their node id.
	wrapRaftListener func(self uint64, ln net.Listener) net.Listener
	// logs, when set, receives the JSON log lines of every broker at
	// logLevel instead of the test output.
	logs     func(node uint64) io.Writer
	logLevel zerolog.Level
}

func newTestCluster(t *testing.T, n int, tune ...func(*configs.Config)) *testCluster {
	return newTunedCluster(t, n, nil, tune...)
}

// newTunedCluster is newTestCluster whose brokers start with their
// partitions' raft settings adjusted by tp.
func newTunedCluster(t *testing.T, n int, tp func(*partition.RaftSettings), tune ...func(*configs.Config)) *testCluster {
	t.Helper()
	return startCluster(t, n, &testCluster{tunePartitions: tp}, tune...)
}

// startCluster configures n brokers and starts them with the hooks set in c.
func startCluster(t *testing.T, n int, c *testCluster, tune ...func(*configs.Config)) *testCluster {
	t.Helper()
	configureCluster(t, n, c, tune...)
	c.startAll()
	return c
}

// configureCluster configures n brokers with the hooks set in c, and
// starts none of them.
func configureCluster(t *testing.T, n int, c *testCluster, tune ...func(*configs.Config)) *testCluster {
	t.Helper()
	base := t.TempDir()
	// The raft ports are fixed before the brokers bind them, and again
	// for every restart: testports keeps them out of the ephemeral range.
	peers := make([]configs.Peer, n)
	for i, port := range testports.Free(t, n) {
		peers[i] = configs.Peer{ID: uint64(i + 1), Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	}
	c.t, c.brokers = t, make([]*Broker, n)
	for i := range peers {
		cfg := configs.Default()
		cfg.NodeID = uint64(i + 1)
		cfg.DataDir = fmt.Sprintf("%s/node%d", base, i+1)
		cfg.Raft.Listen = peers[i].Addr
		cfg.Raft.TickMs = 20
		cfg.Raft.SnapshotEntries = 50    // exercise snapshots and compaction
		cfg.Kafka.Listen = "127.0.0.1:0" // advertised as bound
		cfg.Debug.Listen = ""
		cfg.Peers = peers
		for _, f := range tune {
			f(&cfg)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		c.cfgs = append(c.cfgs, &cfg)
	}
	t.Cleanup(func() {
		for i := range c.brokers {
			c.stop(i)
		}
	})
	return c
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	b, err := c.launch(i)
	if err != nil {
		c.t.Fatalf("start broker %d: %v", i+1, err)
	}
	c.brokers[i] = b
}

// startAll starts every broker at once: a broker with a new data dir waits
// for a majority of its peers to answer before Start returns.
func (c *testCluster) startAll() {
	c.t.Helper()
	started := make([]*Broker, len(c.cfgs))
	errs := make([]error, len(c.cfgs))
	var wg sync.WaitGroup
	for i := range c.cfgs {
		wg.Go(func() { started[i], errs[i] = c.launch(i) })
	}
	wg.Wait()
	copy(c.brokers, started)
	for i, err := range errs {
		if err != nil {
			c.t.Fatalf("start broker %d: %v", i+1, err)
		}
	}
}

// launch starts broker i, waiting at most a minute for its peers; it is
// start for a goroutine other than the test's.
func (c *testCluster) launch(i int) (*Broker, error) {
	log := zerolog.New(zerolog.NewTestWriter(c.t)).Level(testLogLevel)
	if c.logs != nil {
		log = zerolog.New(c.logs(c.cfgs[i].NodeID)).Level(c.logLevel)
	}
	o := Options{Config: c.cfgs[i], Log: log, TunePartitions: c.tunePartitions}
	if c.wrapTransport != nil {
		o.WrapTransport = c.wrapTransport(c.cfgs[i].NodeID)
	}
	if c.wrapRaftListener != nil {
		ln, err := net.Listen("tcp", c.cfgs[i].Raft.Listen)
		if err != nil {
			return nil, err
		}
		o.RaftListener = c.wrapRaftListener(c.cfgs[i].NodeID, ln)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return Start(ctx, o)
}

func (c *testCluster) stop(i int) {
	if c.brokers[i] != nil {
		c.brokers[i].Stop()
		c.brokers[i] = nil
	}
}

// crash stops broker i as a crash would look to the others: without a
// word to them and without handing over its leaderships.
func (c *testCluster) crash(i int) {
	if c.brokers[i] != nil {
		c.brokers[i].stopNow()
		c.brokers[i] = nil
	}
}

// leader returns the index of the broker every running broker agrees leads
// the controller group, or -1.
func (c *testCluster) leader() int {
	var lead uint64
	for _, b := range c.brokers {
		if b == nil {
			continue
		}
		st := b.Board().Get(controller.ControllerGroup)
		if st == nil || st.Leader == 0 || (lead != 0 && st.Leader != lead) {
			return -1
		}
		lead = st.Leader
	}
	if lead == 0 || c.brokers[lead-1] == nil || c.brokers[lead-1].Board().Get(controller.ControllerGroup).Role != "leader" {
		return -1
	}
	return int(lead - 1)
}

// waitReady waits for the controller's first election and every broker's
// registration, which a test that creates topics needs first.
func (c *testCluster) waitReady() {
	c.t.Helper()
	c.waitFor(15*time.Second, "election", func() bool { return c.leader() >= 0 })
	c.waitFor(15*time.Second, "registrations", c.allRegistered)
}

func (c *testCluster) waitFor(d time.Duration, what string, f func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("%s: not within %v", what, d)
}

func (c *testCluster) allRegistered() bool {
	for _, b := range c.brokers {
		if b == nil {
			continue
		}
		v := b.Controller().View()
		if v.ClusterID == "" || len(v.Brokers) != len(c.brokers) {
			return false
		}
	}
	return true
}

// propose sends n SetConfig commands to broker i's controller group and
// waits for every one to be applied there.
func (c *testCluster) propose(i int, n int, prefix string) {
	c.t.Helper()
	c.proposeValues(i, n, func(k int) string { return fmt.Sprintf("%s.%d", prefix, k) }, "v")
}

func (c *testCluster) proposeValues(i int, n int, key func(k int) string, value string) {
	c.t.Helper()
	b := c.brokers[i]
	replies := make(chan *raftactor.Proposed, n)
	c.proposers++
	pid, err := b.Actors().Spawn("test", fmt.Sprintf("test/proposer-%d", c.proposers), func() actor.Actor {
		return actor.ReceiveFunc(func(ctx actor.Context) {
			if p, ok := ctx.Message().(*raftactor.Proposed); ok {
				replies <- p
			}
		})
	})
	if err != nil {
		c.t.Fatal(err)
	}
	send := func(k uint64) {
		cmd := &controller.Command{SetConfig: &controller.SetConfig{Key: key(int(k)), Value: value}}
		b.Actors().Root.Send(b.RaftGroup(), &raftactor.Propose{ID: k, Data: cmd.Encode(), ReplyTo: pid})
	}
	pending := map[uint64]bool{}
	for k := 0; k < n; k++ {
		send(uint64(k))
		pending[uint64(k)] = true
	}
	// A proposal fails when the controller's leadership changes under it
	// (raft leader changed, dropped while there is no leader, timed out).
	// A burst does that on a loaded machine: each SetConfig's apply clones
	// the whole Configs map, so 1500 of them keep every raft actor busy
	// applying for long stretches, and at the tests' 20 ms ticks (a 200-400
	// ms election timeout) the leader then steps down for want of a
	// heard-from quorum. A client retries then, and so does this, 100 ms
	// later, until the deadline: SetConfig is idempotent.
	refused := 0
	var again []uint64
	var retry <-chan time.Time
	timeout := time.After(30 * time.Second)
	for len(pending) > 0 {
		select {
		case p := <-replies:
			if p.Err == nil {
				delete(pending, p.ID)
				continue
			}
			if refused++; refused <= 3 {
				c.t.Logf("proposal %d: %v; proposing it again", p.ID, p.Err)
			}
			again = append(again, p.ID)
			if retry == nil {
				retry = time.After(100 * time.Millisecond)
			}
		case <-retry:
			for _, k := range again {
				send(k)
			}
			again, retry = nil, nil
		case <-timeout:
			c.t.Fatalf("%d proposals not applied (%d refused and proposed again)", len(pending), refused)
		}
	}
}

func (c *testCluster) hasConfigs(i int, prefix string, n int) bool {
	v := c.brokers[i].Controller().View()
	for k := 0; k < n; k++ {
		if v.Configs[fmt.Sprintf("%s.%d", prefix, k)] != "v" {
			return false
		}
	}
	return true
}

func TestInProcessCluster(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitFor(5*time.Second, "first election", func() bool { return c.leader() >= 0 })
	c.waitFor(5*time.Second, "registrations replicated", c.allRegistered)
	clusterID := c.brokers[0].Controller().View().ClusterID

	// Proposals made on a follower are forwarded to the leader.
	lead := c.leader()
	follower := (lead + 1) % 3
	c.propose(follower, 120, "a") // more than SnapshotEntries: snapshots and compaction run
	for i := range c.brokers {
		c.waitFor(5*time.Second, "entries on every broker", func() bool { return c.hasConfigs(i, "a", 120) })
	}

	// Stop the leader: the other two elect a new one and keep committing.
	termBefore := c.brokers[lead].Board().Get(controller.ControllerGroup).Term
	c.stop(lead)
	c.waitFor(5*time.Second, "re-election", func() bool { l := c.leader(); return l >= 0 && l != lead })
	c.propose(c.leader(), 80, "b")

	// The stopped broker restarts from its WAL: its term is at least what
	// it was, its applied state comes back before it hears from anyone,
	// and then it catches up with what it missed (by appends or snapshot).
	c.start(lead)
	var st *raftactor.GroupStatus
	c.waitFor(time.Second, "restarted group publishes its status", func() bool {
		st = c.brokers[lead].Board().Get(controller.ControllerGroup)
		return st != nil
	})
	if st.Term < termBefore {
		t.Fatalf("restarted broker: status %+v, want term >= %d", st, termBefore)
	}
	c.waitFor(5*time.Second, "restarted broker replays its log", func() bool { return c.hasConfigs(lead, "a", 120) })
	c.waitFor(5*time.Second, "restarted broker catches up", func() bool { return c.hasConfigs(lead, "b", 80) })
	if got := c.brokers[lead].Controller().View().ClusterID; got != clusterID {
		t.Fatalf("cluster id after restart %q, want %q", got, clusterID)
	}
	c.waitFor(5*time.Second, "all agree on a leader", func() bool { return c.leader() >= 0 })
}

// TestWALStaysBounded: under a steady stream of controller commands the
// controller snapshots, checkpoints, and the storage deletes WAL files
// behind the checkpoints, so the WAL's size stays near its budget.
func TestWALStaysBounded(t *testing.T) {
	const segment = 64 << 10
	c := newTestCluster(t, 3, func(cfg *configs.Config) {
		cfg.Storage.WALSegmentBytes = segment
		cfg.Storage.WALBudgetBytes = 4 * segment
		cfg.Raft.SnapshotEntries = 100
	})
	c.waitFor(5*time.Second, "election", func() bool { return c.leader() >= 0 })
	// About 3 MiB of commands through every broker's WAL, 12 budgets' worth,
	// overwriting ten keys: the state (and so each snapshot) stays ~10 KiB.
	value := strings.Repeat("v", 1000)
	for round := 0; round < 30; round++ {
		c.proposeValues(c.leader(), 100, func(k int) string { return fmt.Sprintf("key.%d", k%10) }, value)
	}
	for i, cfg := range c.cfgs {
		size := dirSize(t, filepath.Join(cfg.DataDir, "wal"))
		t.Logf("broker %d: WAL %d bytes", i+1, size)
		if size > 5*segment {
			t.Errorf("broker %d: WAL holds %d bytes, want it bounded near its %d-byte budget", i+1, size, 4*segment)
		}
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		info, err := e.Info()
		if err == nil {
			n += info.Size()
		}
	}
	return n
}

// ask sends msg (built with the reply PID) to pid on broker i and returns
// the first answer of type T.
func ask[T any](c *testCluster, i int, pid *actor.PID, msg func(replyTo *actor.PID) any) T {
	c.t.Helper()
	b := c.brokers[i]
	out := make(chan T, 1)
	c.proposers++
	me, err := b.Actors().Spawn("test", fmt.Sprintf("test/asker-%d", c.proposers), func() actor.Actor {
		return actor.ReceiveFunc(func(ctx actor.Context) {
			if v, ok := ctx.Message().(T); ok {
				out <- v
			}
		})
	})
	if err != nil {
		c.t.Fatal(err)
	}
	defer b.Actors().Root.Stop(me)
	b.Actors().Root.Send(pid, msg(me))
	select {
	case v := <-out:
		return v
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no %T within 10s", *new(T))
		panic("unreachable")
	}
}

func TestTopicsThroughController(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitFor(5*time.Second, "election", func() bool { return c.leader() >= 0 })
	c.waitFor(5*time.Second, "registrations", c.allRegistered)
	follower := (c.leader() + 1) % 3
	ctl := c.brokers[follower].ControllerActor()

	done := ask[*controller.CreateTopicsDone](c, follower, ctl, func(r *actor.PID) any {
		return &controller.CreateTopics{Ref: 7, ReplyTo: r, TimeoutTicks: 500, Topics: []controller.TopicSpec{
			{Name: "orders", Partitions: 12, ReplicationFactor: -1},
			{Name: "bad/name", Partitions: 1, ReplicationFactor: 1},
			{Name: "solo", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "60000"}},
		}}
	})
	if done.Ref != 7 || len(done.Results) != 3 {
		t.Fatalf("answer %+v", done)
	}
	if done.Results[0].Err != nil || done.Results[0].ReplicationFactor != 3 || done.Results[2].Err != nil {
		t.Fatalf("results %+v", done.Results)
	}
	if !errors.Is(done.Results[1].Err, kerr.InvalidTopicException) {
		t.Fatalf("bad name: %v", done.Results[1].Err)
	}
	for i := range c.brokers {
		c.waitFor(5*time.Second, "topic on every broker", func() bool {
			tp := c.brokers[i].Controller().View().Topics["orders"]
			return tp != nil && tp.ID == done.Results[0].ID && len(tp.Partitions) == 12
		})
	}
	// Nobody asked for its Metadata: the controller's leader records that
	// its creation finished.
	c.waitCreationFinished("orders")
	leaders := map[uint64]int{}
	for _, p := range c.brokers[0].Controller().View().Topics["orders"].Partitions {
		leaders[p.Replicas[0]]++
	}
	if len(leaders) != 3 || leaders[1] != 4 || leaders[2] != 4 {
		t.Fatalf("preferred leaders not spread: %v", leaders)
	}

	again := ask[*controller.CreateTopicsDone](c, follower, ctl, func(r *actor.PID) any {
		return &controller.CreateTopics{ReplyTo: r, Topics: []controller.TopicSpec{{Name: "orders", Partitions: 1, ReplicationFactor: 1}}}
	})
	if !errors.Is(again.Results[0].Err, kerr.TopicAlreadyExists) {
		t.Fatalf("duplicate: %v", again.Results[0].Err)
	}

	del := ask[*controller.DeleteTopicsDone](c, c.leader(), c.brokers[c.leader()].ControllerActor(), func(r *actor.PID) any {
		return &controller.DeleteTopics{ReplyTo: r, Names: []string{"orders", "nope"}, IDs: []controller.TopicID{done.Results[2].ID}}
	})
	if del.Results[0].Err != nil || !errors.Is(del.Results[1].Err, kerr.UnknownTopicOrPartition) || del.Results[2].Err != nil || del.Results[2].Name != "solo" {
		t.Fatalf("delete results %+v", del.Results)
	}
	for i := range c.brokers {
		c.waitFor(5*time.Second, "deletion on every broker", func() bool { return len(c.brokers[i].Controller().View().Topics) == 0 })
	}
}

func TestProducerIDsUnique(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitFor(5*time.Second, "election", func() bool { return c.leader() >= 0 })
	seen := map[int64]int{}
	for round := 0; round < 3; round++ {
		for i := range c.brokers {
			for k := 0; k < 5; k++ {
				d := ask[*controller.ProducerIDDone](c, i, c.brokers[i].ControllerActor(), func(r *actor.PID) any {
					return &controller.InitProducerID{Ref: uint64(k), ReplyTo: r}
				})
				if d.Err != nil || d.Ref != uint64(k) {
					t.Fatalf("broker %d: %+v", i+1, d)
				}
				seen[d.ID]++
			}
		}
		// A restarted broker takes a new block: ids are never reused.
		c.stop(round)
		c.start(round)
		c.waitFor(5*time.Second, "re-election", func() bool { return c.leader() >= 0 })
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("producer id %d handed out %d times", id, n)
		}
	}
	if len(seen) != 45 {
		t.Fatalf("%d distinct ids, want 45", len(seen))
	}
}

// testLogLevel is what the in-process brokers log into the test output.
var testLogLevel = zerolog.WarnLevel

// seeds returns the Kafka addresses of the running brokers.
func (c *testCluster) seeds() []string {
	var out []string
	for _, b := range c.brokers {
		if b != nil {
			out = append(out, b.KafkaAddr())
		}
	}
	return out
}

// client returns a franz-go client seeded with every running broker,
// closed when the test ends.
func (c *testCluster) client(opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.seeds()...)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// createTopic creates a topic through cl and fails the test if it cannot.
//
// A REQUEST_TIMED_OUT answer leaves the outcome unknown (the controller's
// proposal may still commit: on a loaded machine under -race a commit can
// take longer than the proposal timeout), so it asks again, as an admin
// tool would, and then TOPIC_ALREADY_EXISTS means the first one took.
func (c *testCluster) createTopic(ctx context.Context, cl *kgo.Client, name string, partitions int32, rf int16, configs map[string]*string) {
	c.t.Helper()
	_, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, rf, configs, name)
	for retry := 0; errors.Is(err, kerr.RequestTimedOut) && retry < 3; retry++ {
		c.t.Logf("create topic %s: %v; asking again", name, err)
		if _, err = kadm.NewClient(cl).CreateTopic(ctx, partitions, rf, configs, name); errors.Is(err, kerr.TopicAlreadyExists) {
			err = nil
		}
	}
	if err != nil {
		c.t.Fatalf("create topic %s: %v", name, err)
	}
}
