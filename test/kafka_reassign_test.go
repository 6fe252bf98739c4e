package test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// startKafkaCluster starts n brokers and returns them once they agree on a
// controller leader, with a client that knows them all.
func startKafkaCluster(t *testing.T, n int) ([]*node, *kgo.Client) {
	t.Helper()
	nodes := newCluster(t, n)
	seeds := make([]string, len(nodes))
	for i, nd := range nodes {
		nd.start(t)
		seeds[i] = nd.kafka
	}
	waitLeader(t, 15*time.Second, nodes)
	// A manual assignment names brokers that must be registered: each
	// registers once it has started its raft groups, which a broker with
	// a new data dir does only once its peers have answered.
	ids := make([]int32, len(nodes))
	for i, nd := range nodes {
		ids[i] = int32(nd.id)
	}
	waitBrokers(t, seeds, ids)
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return nodes, cl
}

// partitionReplicas returns what Metadata says of topic's partition p: its
// replicas and leader (-1 for none, or an error).
func partitionReplicas(t *testing.T, cl *kgo.Client, topic string, p int32) ([]int32, int32) {
	t.Helper()
	for _, mp := range topicMetadata(t, cl, topic).Partitions {
		if mp.Partition == p {
			if mp.ErrorCode != 0 {
				return mp.Replicas, -1
			}
			return mp.Replicas, mp.Leader
		}
	}
	return nil, -1
}

// TestReassignPartitionWhileProducing: kadm moves a partition of an RF=2
// topic from brokers {1,2} to {2,3} while records are produced to it;
// ListPartitionReassignments and /debug/cluster show the move while it runs
// (Kafka's union replicas, adding 3, removing 1; the leader's progress of
// the replica being added), which broker 3 being down holds open until
// both were seen, and nothing once it is done; Metadata ends with replicas
// [2 3]; every acknowledged record is read back once.
func TestReassignPartitionWhileProducing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes, cl := startKafkaCluster(t, 3)
	adm := kadm.NewClient(cl)
	const topic = "moving"
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, -1, -1
	ct.ReplicaAssignment = []kmsg.CreateTopicsRequestTopicReplicaAssignment{{Partition: 0, Replicas: []int32{1, 2}}}
	create.Topics = append(create.Topics, ct)
	cresp, err := create.RequestWith(testCtx(t, 15*time.Second), cl)
	if err != nil || cresp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create %s: %v %+v", topic, err, cresp)
	}
	waitTopicReady(t, adm, topic, 1)

	rng := rand.New(rand.NewPCG(6, 45))
	var produced []*kgo.Record
	produce := func(n int) {
		t.Helper()
		recs := randomRecords(rng, topic, n, time.Now())
		produceAll(t, testCtx(t, 30*time.Second), cl, recs)
		produced = append(produced, recs...)
	}
	produce(200)

	// The new replica is down: the move starts and cannot finish until
	// it is back.
	nodes[2].kill()
	var move kadm.AlterPartitionAssignmentsReq
	move.Assign(topic, 0, []int32{2, 3})
	aresp, err := adm.AlterPartitionAssignments(testCtx(t, 30*time.Second), move)
	if err != nil || aresp.Error() != nil {
		t.Fatalf("AlterPartitionReassignments: %v %+v", err, aresp)
	}

	listed, shownProgress := false, false
	var replicas []int32
	deadline := time.Now().Add(90 * time.Second)
	for rounds := 0; ; rounds++ {
		produce(20)
		ls, err := adm.ListPartitionReassignments(testCtx(t, 10*time.Second), kadm.TopicsSet{topic: {0: {}}})
		if err != nil {
			t.Fatalf("ListPartitionReassignments: %v", err)
		}
		for _, r := range ls.Sorted() {
			listed = true
			if r.Topic != topic || r.Partition != 0 || !slices.Equal(r.Replicas, []int32{2, 3, 1}) ||
				!slices.Equal(r.AddingReplicas, []int32{3}) || !slices.Equal(r.RemovingReplicas, []int32{1}) {
				t.Fatalf("listed reassignment %+v", r)
			}
		}
		for _, nd := range nodes {
			if nd.running() {
				checkDebugCluster(t, nd, topic, &shownProgress)
			}
		}
		if listed && shownProgress && !nodes[2].running() {
			t.Logf("the move was listed and its progress shown after %d rounds of 20 records; broker 3 restarts", rounds+1)
			nodes[2].start(t)
			// Its /debug/cluster is read from the next round on.
			waitFor(t, 30*time.Second, "broker 3's debug endpoint", func() bool {
				var v debugCluster
				return getJSON("http://"+nodes[2].debug+"/debug/cluster", &v) == nil
			})
		}
		var leader int32
		replicas, leader = partitionReplicas(t, cl, topic, 0)
		if slices.Equal(replicas, []int32{2, 3}) && leader > 0 && len(ls) == 0 {
			if !listed || !shownProgress {
				t.Fatalf("the move finished without ListPartitionReassignments listing it (%v) or /debug/cluster showing its progress (%v)", listed, shownProgress)
			}
			t.Logf("moved after %d rounds of 20 records", rounds+1)
			break
		}
		// Before the move is applied, during it (the union), or done while
		// the lists or the leader lag.
		if !slices.Equal(replicas, []int32{1, 2}) && !slices.Equal(replicas, []int32{2, 3, 1}) && !slices.Equal(replicas, []int32{2, 3}) {
			t.Fatalf("Metadata replicas %v during the move", replicas)
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition not moved to [2 3] within 90s: Metadata replicas %v, leader %d; the move listed %v, its progress shown %v", replicas, leader, listed, shownProgress)
		}
	}
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last /debug/cluster: %s", last)
		}
	}()
	waitFor(t, 10*time.Second, "no reassignment on any broker's /debug/cluster", func() bool {
		for _, nd := range nodes {
			var v debugCluster
			err := getJSON("http://"+nd.debug+"/debug/cluster", &v)
			last = fmt.Sprintf("node %d: %+v %v", nd.id, v, err)
			if err != nil || len(v.Reassignments) != 0 || len(v.ConfigPeers) != 3 {
				return false
			}
		}
		return true
	})
	produce(200)
	got := consumeAll(t, testCtx(t, 60*time.Second), nodes[2], topic, len(produced))
	checkRoundTrip(t, produced, got, 1)
}

// TestReassignOffDeadBroker: broker 3 is killed -9, and kadm shrinks a
// partition on [1 2 3], led by 1, to [1]. As in Kafka, the move completes
// and the partition stays writable: its raft group drops the dead voter
// before the live one, whose removal first would leave voters {1 3} and
// no quorum until broker 3 came back. Every acknowledged record is read
// back once.
func TestReassignOffDeadBroker(t *testing.T) {
	nodes := newClusterWith(t, 3, "broker_session_timeout_ms: 2000")
	seeds := make([]string, len(nodes))
	for i, nd := range nodes {
		nd.start(t)
		seeds[i] = nd.kafka
	}
	waitLeader(t, 15*time.Second, nodes)
	waitBrokers(t, seeds, []int32{1, 2, 3})
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds[:2]...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	const topic = "shrinking"
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, -1, -1
	ct.ReplicaAssignment = []kmsg.CreateTopicsRequestTopicReplicaAssignment{{Partition: 0, Replicas: []int32{1, 2, 3}}}
	create.Topics = append(create.Topics, ct)
	cresp, err := create.RequestWith(testCtx(t, 15*time.Second), cl)
	if err != nil || cresp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create %s: %v %+v", topic, err, cresp)
	}
	waitFor(t, 20*time.Second, "partition led by its preferred replica, broker 1", func() bool {
		_, leader := partitionReplicas(t, cl, topic, 0)
		return leader == 1
	})
	rng := rand.New(rand.NewPCG(7, 3))
	produced := randomRecords(rng, topic, 100, time.Now())
	produceAll(t, testCtx(t, 30*time.Second), cl, produced)

	nodes[2].kill()
	waitFor(t, 15*time.Second, "broker 3 offline in Metadata", func() bool {
		return slices.Equal(topicMetadata(t, cl, topic).Partitions[0].OfflineReplicas, []int32{3})
	})
	var move kadm.AlterPartitionAssignmentsReq
	move.Assign(topic, 0, []int32{1})
	aresp, err := adm.AlterPartitionAssignments(testCtx(t, 20*time.Second), move)
	if err == nil {
		err = aresp.Error()
	}
	if err != nil {
		t.Fatalf("AlterPartitionReassignments: %v", err)
	}
	waitFor(t, 30*time.Second, "the move done: replicas [1], led by 1, nothing listed", func() bool {
		ls, err := adm.ListPartitionReassignments(testCtx(t, 5*time.Second), kadm.TopicsSet{topic: {0: {}}})
		replicas, leader := partitionReplicas(t, cl, topic, 0)
		return err == nil && len(ls) == 0 && slices.Equal(replicas, []int32{1}) && leader == 1
	})
	more := randomRecords(rng, topic, 100, time.Now())
	produceAll(t, testCtx(t, 20*time.Second), cl, more)
	produced = append(produced, more...)
	got := consumeAll(t, testCtx(t, 30*time.Second), nodes[0], topic, len(produced))
	checkRoundTrip(t, produced, got, 1)
}

// TestElectLeadersPreferred: after a broker is killed and restarted, the
// partitions it is the preferred replica of are led elsewhere until
// ElectLeaders (preferred) moves them back; it answers no error for those
// (ELECTION_NOT_NEEDED for the others, or if the leaders' own preference
// check got there first), and the controller's Metadata then shows every
// partition led by its first replica.
func TestElectLeadersPreferred(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes, cl := startKafkaCluster(t, 3)
	adm := kadm.NewClient(cl)
	const topic, n = "elected", 3
	if _, err := adm.CreateTopic(testCtx(t, 15*time.Second), n, 3, nil, topic); err != nil {
		t.Fatal(err)
	}
	waitTopicReady(t, adm, topic, n)
	preferredLeaders := func() bool {
		for p := range int32(n) {
			replicas, leader := partitionReplicas(t, cl, topic, p)
			if len(replicas) == 0 || leader != replicas[0] {
				return false
			}
		}
		return true
	}
	waitFor(t, 20*time.Second, "every partition led by its preferred replica", preferredLeaders)

	// The victim is not the controller leader, so that the controller
	// answering ElectLeaders stays put.
	ctl := waitLeader(t, 15*time.Second, nodes)
	victim := nodes[0]
	if victim == ctl {
		victim = nodes[1]
	}
	var victimPrefers []int32
	for p := range int32(n) {
		if replicas, _ := partitionReplicas(t, cl, topic, p); replicas[0] == int32(victim.id) {
			victimPrefers = append(victimPrefers, p)
		}
	}
	if len(victimPrefers) == 0 {
		t.Fatalf("broker %d is the preferred leader of no partition of %s", victim.id, topic)
	}
	victim.kill()
	waitFor(t, 20*time.Second, "the victim's partitions led elsewhere", func() bool {
		for _, p := range victimPrefers {
			if _, leader := partitionReplicas(t, cl, topic, p); leader <= 0 || leader == int32(victim.id) {
				return false
			}
		}
		return true
	})
	recs := randomRecords(rand.New(rand.NewPCG(43, 2)), topic, 300, time.Now())
	produceAll(t, testCtx(t, 30*time.Second), cl, recs)
	victim.start(t)

	start := time.Now()
	res, err := adm.ElectLeaders(testCtx(t, 70*time.Second), kadm.ElectPreferredReplica, kadm.TopicsSet{topic: {0: {}, 1: {}, 2: {}}})
	if err != nil {
		t.Fatalf("ElectLeaders: %v", err)
	}
	t.Logf("ElectLeaders answered after %v: %+v (broker %d prefers %v)", time.Since(start), res, victim.id, victimPrefers)
	for p := range int32(n) {
		r, ok := res[topic][p]
		if !ok {
			t.Fatalf("ElectLeaders: no answer for %s/%d: %+v", topic, p, res)
		}
		if r.Err != nil && !errors.Is(r.Err, kerr.ElectionNotNeeded) {
			t.Errorf("ElectLeaders %s/%d: %v (%s)", topic, p, r.Err, r.ErrMessage)
		}
	}
	// The broker that answered saw the preferred replicas lead; ask it.
	resp := brokerRequest[*kmsg.MetadataResponse](t, cl, ctl, metadataRequest(topic))
	for _, mp := range resp.Topics[0].Partitions {
		if len(mp.Replicas) == 0 || mp.Leader != mp.Replicas[0] {
			t.Errorf("after ElectLeaders, controller %d's Metadata: %s/%d led by %d, replicas %v", ctl.id, topic, mp.Partition, mp.Leader, mp.Replicas)
		}
	}
	waitFor(t, 10*time.Second, "every broker's Metadata shows the preferred leaders", preferredLeaders)
}

func metadataRequest(topic string) *kmsg.MetadataRequest {
	req := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, mt)
	return req
}

// debugCluster is the part of /debug/cluster the tests read.
type debugCluster struct {
	ConfigPeers   map[string]string `json:"config_peers"`
	Reassignments []struct {
		Topic     string   `json:"topic"`
		Partition int32    `json:"partition"`
		Replicas  []uint64 `json:"replicas"`
		Adding    []uint64 `json:"adding"`
		Removing  []uint64 `json:"removing"`
		Leader    uint64   `json:"leader"`
		LeadHere  bool     `json:"lead_here"`
		Progress  []struct {
			NodeID uint64 `json:"node_id"`
			Adding bool   `json:"adding"`
		} `json:"progress"`
	} `json:"reassignments"`
}

// checkDebugCluster checks what nd's /debug/cluster shows of the move of
// topic's partition 0 from [1 2] to [2 3], if it shows it; shown is set
// when it showed the leader's progress of the replica being added.
func checkDebugCluster(t *testing.T, nd *node, topic string, shown *bool) {
	t.Helper()
	var v debugCluster
	if err := getJSON("http://"+nd.debug+"/debug/cluster", &v); err != nil {
		t.Fatalf("node %d /debug/cluster: %v", nd.id, err)
	}
	for _, r := range v.Reassignments {
		if r.Topic != topic || r.Partition != 0 || !slices.Equal(r.Replicas, []uint64{2, 3, 1}) ||
			!slices.Equal(r.Adding, []uint64{3}) || !slices.Equal(r.Removing, []uint64{1}) {
			t.Fatalf("node %d /debug/cluster shows %+v", nd.id, r)
		}
		if r.LeadHere && r.Leader != nd.id {
			t.Fatalf("node %d /debug/cluster: leads the partition, leader %d", nd.id, r.Leader)
		}
		for _, p := range r.Progress {
			if p.NodeID == 3 && p.Adding {
				*shown = true
			}
		}
	}
}

// commandLevel1 is the last commit whose brokers register CommandLevel 1:
// they run at most four moves across the cluster, the oldest first.
const commandLevel1 = "481a53468595984b2c45a5d9cef94b1b6126cf5c"

// buildAt builds bin/flotilla as it was at commit, from this repository's
// history, and returns its path.
func buildAt(t *testing.T, commit string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	// A shallow clone (some CI checkouts) lacks the commit: nothing to
	// build the older version from.
	if out, err := exec.Command("git", "-C", "..", "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		t.Skipf("commit %s is not in this clone (shallow?), so its version cannot be built: %v %s", commit, err, out)
	}
	archive := exec.Command("sh", "-c", `git -C .. archive --format=tar "$1" | tar -x -C "$2"`, "sh", commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("extract commit %s (the test needs the repository's history): %v\n%s", commit, err, out)
	}
	bin := filepath.Join(dir, "flotilla")
	args := []string{"build", "-o", bin}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/flotilla")...)
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build flotilla at %s: %v\n%s", commit, err, out)
	}
	return bin
}

// TestReassignRollingUpgradeBoundsMovesPerBroker: four brokers, broker 3
// running the version before per-broker move bounds, broker 4 killed
// (registered, dead). Four moves to broker 4 and then a move from broker
// 1 to broker 2 are asked for with kadm. While broker 3 is old, every
// broker runs the four oldest moves, as broker 3 does: the four to broker
// 4 get their learner, the move to broker 2 none. Once broker 3 runs this
// version (a rolling upgrade's last step), the move to broker 2 runs and
// completes while the four stay stuck; cancelling them lists nothing at
// once, as Kafka.
func TestReassignRollingUpgradeBoundsMovesPerBroker(t *testing.T) {
	old := buildAt(t, commandLevel1)
	nodes := newClusterWith(t, 4, "broker_session_timeout_ms: 2000")
	nodes[2].bin = old
	seeds := make([]string, len(nodes))
	for i, nd := range nodes {
		nd.start(t)
		seeds[i] = nd.kafka
	}
	waitLeader(t, 15*time.Second, nodes)
	waitBrokers(t, seeds, []int32{1, 2, 3, 4})
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds[:2]...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	const topic = "upgrading"
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, -1, -1
	for p := range int32(5) {
		ct.ReplicaAssignment = append(ct.ReplicaAssignment, kmsg.CreateTopicsRequestTopicReplicaAssignment{Partition: p, Replicas: []int32{1}})
	}
	create.Topics = append(create.Topics, ct)
	cresp, err := create.RequestWith(testCtx(t, 15*time.Second), cl)
	if err != nil || cresp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create %s: %v %+v", topic, err, cresp)
	}
	waitFor(t, 20*time.Second, "every partition led by broker 1", func() bool {
		for p := range int32(5) {
			if _, leader := partitionReplicas(t, cl, topic, p); leader != 1 {
				return false
			}
		}
		return true
	})
	nodes[3].kill() // registered still: moves to it are accepted, and wait for it

	alter := func(what string, req kadm.AlterPartitionAssignmentsReq) {
		t.Helper()
		resp, err := adm.AlterPartitionAssignments(testCtx(t, 20*time.Second), req)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	var stuck, live, cancel kadm.AlterPartitionAssignmentsReq
	for p := range int32(4) {
		stuck.Assign(topic, p, []int32{4})
		cancel.CancelAssign(topic, p)
	}
	live.Assign(topic, 4, []int32{2})
	alter("moves to dead broker 4", stuck)
	alter("move to broker 2", live)

	// Mixed versions: the four oldest run. Broker 1 leads every
	// partition, so its /debug/cluster shows each group's learners.
	learners := func() map[int32][]uint64 {
		var v struct {
			Reassignments []struct {
				Topic        string   `json:"topic"`
				Partition    int32    `json:"partition"`
				RaftLearners []uint64 `json:"raft_learners"`
			} `json:"reassignments"`
		}
		if err := getJSON("http://"+nodes[0].debug+"/debug/cluster", &v); err != nil {
			t.Fatalf("node 1 /debug/cluster: %v", err)
		}
		out := map[int32][]uint64{}
		for _, r := range v.Reassignments {
			if r.Topic == topic && len(r.RaftLearners) > 0 {
				out[r.Partition] = r.RaftLearners
			}
		}
		return out
	}
	waitFor(t, 20*time.Second, "learner 4 added to partitions 0-3", func() bool {
		l := learners()
		return len(l) >= 4 && slices.Equal(l[0], []uint64{4}) && slices.Equal(l[3], []uint64{4})
	})
	all := kadm.TopicsSet{}
	for p := range int32(5) {
		all.Add(topic, p)
	}
	listed, err := adm.ListPartitionReassignments(testCtx(t, 5*time.Second), all)
	if l := learners(); err != nil || len(l) != 4 || len(listed.Sorted()) != 5 {
		t.Fatalf("with broker 3 on the old version: learners %v, listed %+v (%v); want partitions 0-3 running, 4 waiting", l, listed.Sorted(), err)
	}

	// The upgrade's last step: broker 3 restarts on this version.
	nodes[2].signal(syscall.SIGTERM)
	if code := nodes[2].wait(30 * time.Second); code != 0 {
		t.Fatalf("broker 3 stopped with code %d", code)
	}
	nodes[2].bin = ""
	nodes[2].start(t)
	waitFor(t, 60*time.Second, "partition 4 moved to broker 2 past the stuck moves", func() bool {
		replicas, leader := partitionReplicas(t, cl, topic, 4)
		ls, err := adm.ListPartitionReassignments(testCtx(t, 5*time.Second), kadm.TopicsSet{topic: {4: {}}})
		return err == nil && len(ls.Sorted()) == 0 && slices.Equal(replicas, []int32{2}) && leader == 2
	})
	alter("cancel the moves to broker 4", cancel)
	if listed, err = adm.ListPartitionReassignments(testCtx(t, 5*time.Second), all); err != nil || len(listed.Sorted()) != 0 {
		t.Fatalf("listed after the cancel: %+v %v", listed.Sorted(), err)
	}
	waitFor(t, 30*time.Second, "partitions 0-3 back on broker 1 alone", func() bool {
		for p := range int32(4) {
			if replicas, leader := partitionReplicas(t, cl, topic, p); !slices.Equal(replicas, []int32{1}) || leader != 1 {
				return false
			}
		}
		return true
	})
}
