package test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/partition"
)

// TestReplicatedProduceThroughKills is the replication fault test: three
// brokers, a 12-partition RF=3 topic, a franz-go producer with acks=all
// writing while a fault loop SIGKILLs and restarts a random broker every
// few seconds. Afterwards every acknowledged record is there, in production
// order within its partition, and the replicas' logs agree byte for byte.
// With franz-go's default (idempotent) producer there are no duplicates
// either; without idempotence, retries may duplicate, and they are counted.
func TestReplicatedProduceThroughKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Run("idempotent", func(t *testing.T) { produceThroughKills(t, true) })
	t.Run("plain", func(t *testing.T) {
		produceThroughKills(t, false, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(1))
	})
}

func produceThroughKills(t *testing.T, idempotent bool, opts ...kgo.Opt) {
	const (
		topic      = "faults"
		partitions = 12
		records    = 200_000
		killRounds = 5
	)
	nodes := newCluster(t, 3)
	for _, nd := range nodes {
		nd.start(t)
	}
	waitLeader(t, 15*time.Second, nodes)
	seeds := []string{nodes[0].kafka, nodes[1].kafka, nodes[2].kafka}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	admCl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	waitFor(t, 15*time.Second, "topic created", func() bool {
		resp, err := adm.CreateTopic(ctx, partitions, 3, nil, topic)
		return err == nil && resp.Err == nil
	})

	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic),
		kgo.MetadataMinAge(100 * time.Millisecond), kgo.MaxBufferedRecords(20_000)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// The fault loop: kill a random broker, give the others a moment,
	// restart it, let it rejoin; bounded in rounds. It reports a failed
	// restart through faultErr, and the test waits for it however it ends.
	faults := make(chan struct{})
	var faultErr error
	go func() {
		defer close(faults)
		rng := rand.New(rand.NewPCG(1, 2))
		for round := 0; round < killRounds && pause(ctx, 2*time.Second); round++ {
			victim := nodes[rng.IntN(len(nodes))]
			victim.kill()
			t.Logf("round %d: SIGKILLed broker %d", round, victim.id)
			pause(ctx, time.Second)
			if faultErr = victim.launch(); faultErr != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		<-faults
	}()

	// Each record's value is its global sequence number, so order within a
	// partition can be checked against production order.
	type ack struct {
		partition int32
		offset    int64
	}
	var mu sync.Mutex
	acked := make(map[uint64]ack, records)
	failed := 0
	failures := map[string]int{} // by error: what a client was told
	// Production is paced over the fault window (the cluster takes 200k
	// small records in about a second otherwise, before the first kill).
	start := time.Now()
	window := time.Duration(killRounds) * 3 * time.Second
	for seq := uint64(0); seq < records; seq++ {
		if seq%1000 == 0 {
			due := start.Add(window * time.Duration(seq) / records)
			time.Sleep(time.Until(due))
		}
		v := binary.BigEndian.AppendUint64(nil, seq)
		cl.Produce(ctx, &kgo.Record{Key: v, Value: v}, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				failures[err.Error()]++
				return
			}
			acked[binary.BigEndian.Uint64(r.Value)] = ack{r.Partition, r.Offset}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	t.Logf("every record answered after %v", time.Since(start))
	<-faults
	if faultErr != nil {
		t.Fatalf("fault loop: %v", faultErr)
	}
	checkStarted(t, nodes...)
	t.Logf("produced %d records in %v: %d acknowledged, %d failed", records, time.Since(start), len(acked), failed)
	for msg, n := range failures {
		t.Logf("%d records failed with: %s", n, msg)
	}
	// kgo retries every retriable error for ever: a record that fails was
	// refused for good, which brokers that fail over correctly never do to
	// the default idempotent producer. (A valid batch held through a failed
	// leadership transfer was once refused INVALID_RECORD.)
	if idempotent && failed > 0 {
		t.Errorf("%d records failed with the default idempotent producer", failed)
	}
	if len(acked) < records*9/10 {
		t.Fatalf("only %d of %d records acknowledged", len(acked), records)
	}

	// Read everything back through the leaders.
	for _, nd := range nodes {
		if !nd.running() {
			nd.start(t)
		}
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	// Read to the partitions' ends, every record written and not only the
	// acknowledged ones, so that every duplicate shows; and on until every
	// acknowledged record is seen, in case an end was listed from a leader
	// that had not caught up yet.
	seen := make(map[uint64]ack, records)
	lastSeq := map[int32]uint64{}
	next := map[int32]int64{}
	ends := endOffsets(t, adm, topic, partitions)
	dups, ackedSeen := 0, 0
	for ctx.Err() == nil {
		if readTo(next, ends) {
			if ackedSeen == len(acked) {
				break
			}
			// Missing records are reported below, unless the ends grow.
			grown := false
			for deadline := time.Now().Add(10 * time.Second); !grown && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				more := endOffsets(t, adm, topic, partitions)
				grown = !maps.Equal(more, ends)
				ends = more
			}
			if !grown {
				break
			}
		}
		fs := cons.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = max(next[r.Partition], r.Offset+1)
			seq := binary.BigEndian.Uint64(r.Value)
			if _, ok := seen[seq]; ok {
				dups++
				return
			}
			if _, ok := acked[seq]; ok {
				ackedSeen++
			}
			if last, ok := lastSeq[r.Partition]; ok && seq < last {
				t.Errorf("partition %d: record %d at offset %d after record %d: out of production order", r.Partition, seq, r.Offset, last)
			}
			lastSeq[r.Partition] = seq
			seen[seq] = ack{r.Partition, r.Offset}
		})
	}
	missing := 0
	for seq, a := range acked {
		got, ok := seen[seq]
		switch {
		case !ok:
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged record %d (partition %d offset %d) is missing", seq, a.partition, a.offset)
			}
		case got != a && idempotent:
			t.Errorf("record %d acknowledged at %v, found at %v", seq, a, got)
		}
	}
	t.Logf("read back %d distinct records to the partitions' ends %v, %d duplicates", len(seen), ends, dups)
	if missing > 0 || (idempotent && dups > 0) {
		t.Fatalf("%d acknowledged records missing, %d duplicates", missing, dups)
	}

	// Stop every broker cleanly and compare the replicas' logs: each is a
	// prefix of the longest (followers may not have applied the last
	// commits), and they agree byte for byte. A broker restarted a moment
	// ago may still hold entries of its own old term past the commit
	// point, which its leader has yet to overwrite (as Raft allows): wait
	// until every replica has heard from its leader up to the commit.
	waitFor(t, 60*time.Second, "every replica to catch up with its leader", func() bool {
		return replicasCaughtUp(nodes, topic, partitions)
	})
	for _, nd := range nodes {
		nd.signal(syscall.SIGTERM)
		if code := nd.wait(15 * time.Second); code != 0 {
			t.Errorf("broker %d: exit code %d after SIGTERM", nd.id, code)
		}
	}
	for p := 0; p < partitions; p++ {
		var logs [][]byte
		for _, nd := range nodes {
			logs = append(logs, readPartition(t, nd, topic, p))
		}
		longest := logs[0]
		for _, l := range logs[1:] {
			if len(l) > len(longest) {
				longest = l
			}
		}
		for i, l := range logs {
			if !bytes.HasPrefix(longest, l) {
				t.Errorf("partition %d: broker %d's log (%d bytes) is not a prefix of the longest replica (%d bytes)", p, nodes[i].id, len(l), len(longest))
			}
		}
	}
}

// readPartition reads a stopped broker's whole log of one partition.
// replicasCaughtUp reports whether, for every partition of topic, every
// node has applied its group up to the commit index of the group's leader
// and agrees on the leader.
func replicasCaughtUp(nodes []*node, topic string, partitions int) bool {
	type view struct{ leader, commit, applied uint64 }
	views := map[string][]view{}
	for _, nd := range nodes {
		var st raftStatus
		if getJSON("http://"+nd.debug+"/debug/raft", &st) != nil {
			return false
		}
		for _, g := range st.Groups {
			views[g.Name] = append(views[g.Name], view{g.Leader, g.Commit, g.Applied})
		}
	}
	for p := range partitions {
		vs := views[fmt.Sprintf("%s/%d", topic, p)]
		if len(vs) != len(nodes) || vs[0].leader == 0 {
			return false
		}
		for _, v := range vs {
			if v.leader != vs[0].leader || v.commit != vs[0].commit || v.applied != v.commit {
				return false
			}
		}
	}
	return true
}

func readPartition(t *testing.T, nd *node, topic string, p int) []byte {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(nd.dir, "partitions", fmt.Sprintf("%s-%d-g*", topic, p)))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("broker %d: partition %d dirs %v (%v)", nd.id, p, dirs, err)
	}
	l, err := partition.Open(partition.Options{Dir: dirs[0], Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("broker %d: open partition %d: %v", nd.id, p, err)
	}
	defer l.Close()
	if l.LogEnd() == l.LogStart() {
		return nil
	}
	b, err := l.Read(l.LogStart(), 1<<30)
	if err != nil {
		t.Fatalf("broker %d: read partition %d: %v", nd.id, p, err)
	}
	return b
}
