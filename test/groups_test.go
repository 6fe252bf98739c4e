package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// groupSettings make the group tests fast without changing what they
// check: the initial rebalance delay only batches joins.
const groupSettings = "group_initial_rebalance_delay_ms: 100"

// TestGroupConsumeCommitResume: a franz-go group consumer reads a topic
// and commits; kadm sees the group and its offsets; a second consumer of
// the same group after the first left gets only what was produced since.
func TestGroupConsumeCommitResume(t *testing.T) {
	nd := newClusterWith(t, 1, groupSettings)[0]
	nd.start(t)
	nd.waitKafka(t)
	adm := nd.admin(t)
	const topic, n = "orders", 2000
	createTopic(t, adm, topic, 4, nil)
	ctx := testCtx(t, 60*time.Second)
	prod := nd.client(t, kgo.DefaultProduceTopic(topic))
	produceN := func(from, to int) {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("v%d", i))})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	produceN(0, n)

	consume := func(want int) map[string]bool {
		cl, err := kgo.NewClient(append(clientOpts(nd), kgo.ConsumerGroup("g1"), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close() // commits what was consumed and leaves the group
		seen := map[string]bool{}
		for len(seen) < want {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				t.Fatalf("consumed %d of %d: %v", len(seen), want, err)
			}
			fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
			fs.EachRecord(func(r *kgo.Record) { seen[string(r.Key)] = true })
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
		return seen
	}
	if got := consume(n); len(got) != n {
		t.Fatalf("first consumer saw %d distinct records, want %d", len(got), n)
	}

	groups, err := adm.DescribeGroups(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	if g := groups["g1"]; g.Err != nil || g.State != "Empty" {
		t.Fatalf("group after the consumer left: state %q, err %v", g.State, g.Err)
	}
	offsets, err := adm.FetchOffsets(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	offsets.Each(func(o kadm.OffsetResponse) { total += o.At })
	if total != n {
		t.Fatalf("committed offsets sum to %d, want %d", total, n)
	}

	produceN(n, n+100)
	// The debug endpoint shows the group, its committed offsets and their
	// lag behind the new records.
	var dbg struct {
		Groups []struct {
			Group   string
			State   string
			Offsets []struct {
				Topic     string
				Partition int32
				Offset    int64
				Lag       *int64
			}
		}
		Unanswered []int32 `json:"unanswered_offsets_partitions"`
	}
	waitFor(t, 5*time.Second, "/debug/groups shows g1 lagging 100 records, every offsets partition answering", func() bool {
		dbg.Unanswered = nil
		if err := getJSON("http://"+nd.debug+"/debug/groups", &dbg); err != nil || len(dbg.Groups) != 1 || dbg.Unanswered == nil || len(dbg.Unanswered) != 0 {
			return false
		}
		g := dbg.Groups[0]
		var lag int64
		for _, o := range g.Offsets {
			if o.Lag == nil {
				return false
			}
			lag += *o.Lag
		}
		return g.Group == "g1" && g.State == "Empty" && len(g.Offsets) == 4 && lag == 100
	})
	got := consume(100)
	for k := range got {
		var i int
		fmt.Sscan(k, &i)
		if i < n {
			t.Fatalf("second consumer re-read record %d from before the commit", i)
		}
	}
}
