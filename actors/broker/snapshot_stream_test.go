package broker

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/group"
	"github.com/flotilla/flotilla/netactor"
)

// TestOffsetsSnapshotAboveFrameReachesFollower: an offsets partition's
// whole state is one raft snapshot. Once it outgrows raft.max_frame_bytes
// it must still reach a follower that fell behind the leader's log: else
// the follower never catches up and the next failure of another replica
// leaves the partition without a quorum. The frame is shrunk to 256 KiB
// here so that 640 KiB of committed offsets show what 64 MiB does at scale.
func TestOffsetsSnapshotAboveFrameReachesFollower(t *testing.T) {
	c, ctx := smallFrameCluster(t, 256<<10)
	cl := c.client()
	c.createTopic(ctx, cl, "wide", 4, 1, nil)
	c.createTopic(ctx, cl, "narrow", 1, 1, nil)

	parts := int32(c.cfgs[0].Kafka.OffsetsTopicPartitions)
	target := group.PartitionFor("g-0", parts)
	var groups []string
	for i := 0; len(groups) < 40; i++ {
		if name := fmt.Sprintf("g-%d", i); group.PartitionFor(name, parts) == target {
			groups = append(groups, name)
		}
	}
	// commit commits off with meta for every partition of topic.
	commit := func(g, topic string, partitions int32, off int64, meta string) error {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.Generation = g, -1
		rt := kmsg.OffsetCommitRequestTopic{Topic: topic}
		for p := range partitions {
			rt.Partitions = append(rt.Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: p, Offset: off, LeaderEpoch: -1, Metadata: &meta})
		}
		req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			return fmt.Errorf("error code %d", code)
		}
		return nil
	}
	// 40 groups × 4 partitions × 4000 bytes of metadata: 2.5 frames.
	meta := strings.Repeat("m", 4000)
	for _, g := range groups {
		c.waitFor(30*time.Second, "commit of "+g, func() bool { return commit(g, "wide", 4, 1, meta) == nil })
	}

	offsets := c.brokers[0].Controller().View().Topics[controller.OffsetsTopic]
	var leader int
	var raftGroup uint64
	c.waitFor(10*time.Second, "the offsets partition's leader", func() bool {
		for i, b := range c.brokers {
			if co := b.coords.Get(target); co != nil && co.Machine.Leadership().Leader {
				leader, raftGroup = i, co.Group
				return true
			}
		}
		return false
	})
	var followers []int
	for _, id := range offsets.Partitions[target].Replicas {
		if i := int(id - 1); i != leader {
			followers = append(followers, i)
		}
	}
	behind, other := followers[0], followers[1]
	c.stop(behind)

	// An offsets partition snapshots every 4096 entries and keeps 1000
	// behind: past that many commits the stopped follower can only catch
	// up from a snapshot. They leave the large metadata as it is.
	const commits, workers = 4200, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < commits; i += workers {
				// kgo does not retry a FindCoordinator that it sends to
				// the stopped broker (it still lists it until its next
				// metadata refresh), so a commit can fail at once where a
				// consumer's group loop would retry it: so do the workers,
				// for a bounded time.
				deadline := time.Now().Add(10 * time.Second)
				err := commit(groups[i%len(groups)], "narrow", 1, int64(i), "")
				for err != nil && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
					err = commit(groups[i%len(groups)], "narrow", 1, int64(i), "")
				}
				if err != nil {
					errs <- fmt.Errorf("commit %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	want := c.brokers[leader].Board().Get(raftGroup).Commit
	t.Logf("offsets partition %d: broker %d restarts %d entries behind leader %d", target, behind+1, want, leader+1)
	reg := c.brokers[leader].registry
	c.start(behind)
	c.waitFor(30*time.Second, "the restarted follower to catch up", func() bool {
		st := c.brokers[behind].Board().Get(raftGroup)
		return st != nil && st.Applied >= want
	})
	if n := gathered(t, reg, "flotilla_raft_messages_dropped_total", "reason", netactor.DropTooLarge); n != 0 {
		t.Fatalf("the leader dropped %v raft messages as too large", n)
	}

	// The leader and the restarted follower are a quorum without the other.
	c.stop(other)
	c.waitFor(30*time.Second, "a commit with one follower down", func() bool { return commit(groups[0], "wide", 4, 2, meta) == nil })
}
