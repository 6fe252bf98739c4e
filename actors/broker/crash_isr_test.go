package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/debug"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/configs"
)

// getJSON decodes the JSON answer to a GET of url into v.
func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestCrashRestartLeavesISRUntilCaughtUp: a broker killed and started
// again well within replica.lag.time.max.ms is out of its partitions'
// ISRs from the moment its new process says hello to their leaders until
// it has caught up: the leader's ISR and Metadata leave it out,
// min.insync.replicas does not count it, and its /healthz says 503. Before,
// its previous process's last catch-up kept it in for the lag time,
// though everything written while it was down was missing from it, and a
// rolling restart that went on at its first 200 stopped the next broker
// while it was behind.
func TestCrashRestartLeavesISRUntilCaughtUp(t *testing.T) {
	// Far above the test's run: only the restart can take the replica out.
	const lag = 60 * time.Second
	net := &holdBack{held: map[uint64]uint64{}}
	c := startCluster(t, 3, &testCluster{wrapTransport: net.wrap}, func(cfg *configs.Config) {
		cfg.Debug.Listen = "127.0.0.1:0"
		cfg.Kafka.ReplicaLagTimeMaxMs = int(lag / time.Millisecond)
	})
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	three := "3"
	cl := c.client()
	c.createTopic(ctx, cl, "crashed", 1, 3, map[string]*string{"min.insync.replicas": &three})
	tp := partition.TopicPartition{Topic: "crashed", Partition: 0}

	// The victim follows the partition and does not lead the controller
	// group, whose election would only slow the test down.
	var leader int
	c.waitFor(20*time.Second, "the preferred replica leads with the full ISR", func() bool {
		topic := c.brokers[0].Controller().View().Topics["crashed"]
		if topic == nil {
			return false
		}
		leader = int(topic.Partitions[0].Replicas[0] - 1)
		r := c.brokers[leader].Replicas().Get(tp)
		return r != nil && r.Machine.View().Leader && len(r.Machine.View().ISR) == 3
	})
	victim := -1
	for i := range c.brokers {
		if i != leader && (victim < 0 || c.leader() == victim) {
			victim = i
		}
	}
	id := uint64(victim + 1)
	for i := range c.brokers {
		c.waitFor(15*time.Second, fmt.Sprintf("broker %d healthy", i+1), func() bool {
			code, _ := c.healthz(i)
			return code == http.StatusOK
		})
	}
	lead := c.brokers[leader].Replicas().Get(tp)
	isr := func() []uint64 { return lead.Machine.View().ISR }
	ctl := c.leader()
	// The controller group's ISR, as its leader broadcasts it.
	ctlISR := func() []uint64 {
		li, _ := c.brokers[ctl].leaders.Get(controller.ControllerGroup)
		return li.ISR
	}
	t.Logf("broker %d leads crashed/0, broker %d leads the controller; killing broker %d", leader+1, ctl+1, id)

	// Killed: its replicas stay in the ISRs (they were caught up a moment
	// ago, and the lag time has not passed) while the others take writes
	// they miss: records with acks=1, which min.insync.replicas does not
	// hold, and controller commands.
	c.crash(victim)
	for i := range 20 {
		if d := <-c.produceAsync(leader, lead.PID, fmt.Sprintf("r%d", i), 1, 500); d.Err != nil {
			t.Fatalf("acks=1 produce with broker %d down: %v", id, d.Err)
		}
	}
	c.propose(ctl, 5, "while-down")
	if !slices.Contains(isr(), id) || !slices.Contains(ctlISR(), id) {
		t.Fatalf("ISR %v, controller ISR %v: broker %d left before the lag time; the test cannot tell a restart from it", isr(), ctlISR(), id)
	}

	// Back within the lag time, unable to catch up.
	net.hold(lead.Group, id)
	net.hold(controller.ControllerGroup, id)
	c.cfgs[victim].Debug.Listen = "127.0.0.1:0"
	c.start(victim)
	c.waitFor(10*time.Second, fmt.Sprintf("broker %d out of the leader's ISR once restarted", id), func() bool {
		return !slices.Contains(isr(), id)
	})
	c.waitFor(10*time.Second, fmt.Sprintf("broker %d out of the controller group's ISR once restarted", id), func() bool {
		return !slices.Contains(ctlISR(), id)
	})
	// The controller group catches up: the broker serves Kafka clients.
	net.release(controller.ControllerGroup)
	c.waitFor(15*time.Second, fmt.Sprintf("broker %d back in the controller group's ISR", id), func() bool {
		return slices.Contains(ctlISR(), id)
	})
	var cluster debug.ClusterView
	if err := getJSON("http://"+c.brokers[leader].DebugAddr()+"/debug/cluster", &cluster); err != nil {
		t.Fatal(err)
	}
	if h := cluster.Health[id]; h.Restarts != 1 {
		t.Fatalf("the leader's /debug/cluster shows broker %d %+v, want 1 restart", id, h)
	}
	mdISR := func() []int32 {
		md, err := kadm.NewClient(cl).Metadata(ctx, "crashed")
		if err != nil {
			t.Fatalf("metadata: %v", err)
		}
		return md.Topics["crashed"].Partitions[0].ISR
	}
	c.waitFor(10*time.Second, "Metadata to leave the restarted broker out of the ISR", func() bool {
		return !slices.Contains(mdISR(), int32(id))
	})
	c.waitFor(10*time.Second, fmt.Sprintf("broker %d's /healthz to name crashed/0 behind", id), func() bool {
		code, body := c.healthz(victim)
		return code == http.StatusServiceUnavailable && slices.ContainsFunc(body.Behind, func(b debug.BehindReplica) bool { return b.Name == "crashed/0" })
	})
	if d := <-c.produceAsync(leader, lead.PID, "all", -1, 500); !errors.Is(d.Err, kerr.NotEnoughReplicas) {
		t.Fatalf("acks=all produce with 2 of 3 replicas in sync and min.insync.replicas=3: %v, want NOT_ENOUGH_REPLICAS", d.Err)
	}
	// It stays out while it cannot catch up, for many ISR samples.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if slices.Contains(isr(), id) {
			t.Fatalf("ISR %v: broker %d back in while its appends are held back", isr(), id)
		}
		if code, body := c.healthz(victim); code != http.StatusServiceUnavailable {
			t.Fatalf("broker %d's /healthz %d %+v while its replica of crashed/0 is behind", id, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, body := c.healthz(victim)
	t.Logf("held back: ISR %v, Metadata ISR %v, /healthz %+v", isr(), mdISR(), body)

	// Once it has caught up it is back, everywhere.
	net.release(lead.Group)
	c.waitFor(15*time.Second, fmt.Sprintf("broker %d back in the ISR once caught up", id), func() bool {
		return slices.Contains(isr(), id)
	})
	c.waitFor(10*time.Second, "Metadata to count it in again", func() bool { return slices.Contains(mdISR(), int32(id)) })
	c.waitFor(15*time.Second, fmt.Sprintf("broker %d healthy once caught up", id), func() bool {
		code, _ := c.healthz(victim)
		return code == http.StatusOK
	})
	if d := <-c.produceAsync(leader, lead.PID, "all again", -1, 500); d.Err != nil {
		t.Fatalf("acks=all produce with every replica in sync: %v", d.Err)
	}
}
