package test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDeleteRecordsReplicated: kadm's DeleteRecords on a topic replicated
// on three brokers moves the log start of every replica: the leader's
// ListOffsets earliest reports it, so does a new leader after the old one
// is SIGKILLed, and so does the cluster after every broker was SIGKILLed
// and restarted; a consumer from the start begins there; and
// DescribeLogDirs on every broker reports the partition's segments, which
// shrink once the records are deleted.
func TestDeleteRecordsReplicated(t *testing.T) {
	nodes, seeds := startClusterWith(t, 3, "")
	adm := clusterAdmin(t, seeds)
	const topic = "purged"
	createReplicatedWith(t, adm, topic, 1, map[string]*string{"segment.bytes": kadm.StringPtr("2048")})

	// One record of 600 random (incompressible) bytes per request: about
	// three batches per segment, 20 segments on every replica.
	const records, cut = 60, 40
	ctx := testCtx(t, 3*time.Minute)
	values := produceIncompressible(ctx, t, seeds, topic, records, 7)

	// Every broker's log dir holds its replica, the whole log on each once
	// the followers have caught up.
	sizes := func() map[uint64]int64 {
		out := map[uint64]int64{}
		for _, nd := range nodes {
			dirs, err := adm.DescribeBrokerLogDirs(ctx, int32(nd.id), nil)
			if err != nil || len(dirs) != 1 {
				return nil
			}
			for _, d := range dirs {
				abs, _ := filepath.Abs(nd.dir)
				if d.Err != nil || d.Dir != abs || d.TotalBytes <= 0 || d.UsableBytes <= 0 {
					t.Fatalf("broker %d: log dir %+v, want %s with its filesystem's sizes", nd.id, d, abs)
				}
				if p, ok := d.Topics.Lookup(topic, 0); ok {
					out[nd.id] = p.Size
				}
			}
		}
		return out
	}
	var before map[uint64]int64
	waitFor(t, 20*time.Second, "every broker describing a replica of at least the records' bytes", func() bool {
		before = sizes()
		for _, nd := range nodes {
			if before[nd.id] < records*600 {
				return false
			}
		}
		return true
	})

	resps, err := adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: cut}}})
	if err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	if r, ok := resps.Lookup(topic, 0); !ok || r.Err != nil || r.LowWatermark != cut {
		t.Fatalf("DeleteRecords to %d answered %+v", cut, r)
	}
	start := func() (int64, bool) {
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		starts, err := adm.ListStartOffsets(c, topic)
		if err != nil || starts.Error() != nil {
			return 0, false
		}
		o, ok := starts.Lookup(topic, 0)
		return o.Offset, ok
	}
	if s, ok := start(); !ok || s != cut {
		t.Fatalf("ListOffsets earliest after DeleteRecords: %d (%v), want %d", s, ok, cut)
	}
	waitFor(t, 20*time.Second, "every broker's replica shrinking", func() bool {
		after := sizes()
		for _, nd := range nodes {
			if s, ok := after[nd.id]; !ok || s >= before[nd.id]/2 {
				return false
			}
		}
		return true
	})

	// The new leader after a SIGKILL had applied the move too.
	old := partitionLeader(t, adm, topic, 0)
	nodeByID(nodes, uint64(old)).kill()
	waitFor(t, 20*time.Second, "a new leader reporting the log start", func() bool {
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return false
		}
		l := md.Topics[topic].Partitions[0].Leader
		s, ok := start()
		return l > 0 && l != old && ok && s == cut
	})
	// and so does the third replica, once the killed one is back and the
	// leadership moves again.
	second := partitionLeader(t, adm, topic, 0)
	nodeByID(nodes, uint64(old)).start(t)
	waitFor(t, 30*time.Second, "the restarted broker serving", func() bool {
		_, err := adm.DescribeBrokerLogDirs(ctx, int32(old), nil)
		return err == nil
	})
	nodeByID(nodes, uint64(second)).kill()
	waitFor(t, 20*time.Second, "a third leader reporting the log start", func() bool {
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return false
		}
		l := md.Topics[topic].Partitions[0].Leader
		s, ok := start()
		return l > 0 && l != second && ok && s == cut
	})

	// Every broker SIGKILLed and started again: the move is in the raft
	// log and the checkpoints.
	for _, nd := range nodes {
		nd.kill()
	}
	for _, nd := range nodes {
		nd.start(t)
	}
	waitLeader(t, 30*time.Second, nodes)
	waitFor(t, 30*time.Second, "the log start after a full restart", func() bool {
		s, ok := start()
		return ok && s == cut
	})
	after := sizes()
	for _, nd := range nodes {
		if s, ok := after[nd.id]; !ok || s >= before[nd.id]/2 {
			t.Errorf("broker %d after the restart: replica of %d bytes (%v), %d before the delete", nd.id, s, ok, before[nd.id])
		}
	}

	// A consumer from the start begins at the cut.
	cons, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(100*time.Millisecond),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	next := int64(cut)
	for next < records {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed up to offset %d: %v", next, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != next || string(r.Value) != string(values[next]) {
				t.Fatalf("consumed offset %d, want %d with the value produced there", r.Offset, next)
			}
			next++
		})
	}
	t.Logf("replica sizes before the delete %v, after it and a restart %v", before, after)
}
