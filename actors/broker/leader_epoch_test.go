package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFollowerChecksLeaderEpochFirst: a follower asked ListOffsets or
// OffsetForLeaderEpoch checks the client's current leader epoch before its
// leadership, as Kafka's Partition.getLocalLog does: an older epoch is
// FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH, and only the
// current one (or none) NOT_LEADER_OR_FOLLOWER.
func TestFollowerChecksLeaderEpochFirst(t *testing.T) {
	c := newTestCluster(t, 2)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "pair", 1, 2, nil)

	listOffsets := func(broker, epoch int32) (int16, error) {
		req := kmsg.NewPtrListOffsetsRequest()
		req.Version = 7
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "pair"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp, rp.CurrentLeaderEpoch = -1, epoch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl.Broker(int(broker)))
		if err != nil {
			return 0, err
		}
		return resp.Topics[0].Partitions[0].ErrorCode, nil
	}
	offsetForLeaderEpoch := func(broker, epoch int32) (int16, error) {
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		req.Version = 4
		req.ReplicaID = -1
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = "pair"
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.LeaderEpoch, rp.CurrentLeaderEpoch = epoch, epoch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl.Broker(int(broker)))
		if err != nil {
			return 0, err
		}
		return resp.Topics[0].Partitions[0].ErrorCode, nil
	}

	// The leadership settles on the preferred replica; the answers of one
	// round hold only if the epoch did not move meanwhile.
	var problems []string
	c.waitFor(30*time.Second, "the follower's answers by epoch", func() bool {
		md := metadataOf(ctx, t, cl, 1, "pair")
		p := md.Topics[0].Partitions[0]
		if p.Leader < 0 || p.Leader != p.Replicas[0] {
			return false
		}
		follower := p.Replicas[1]
		problems = problems[:0]
		for _, tc := range []struct {
			epoch int32
			want  int16
		}{
			{p.LeaderEpoch - 1, kerr.FencedLeaderEpoch.Code},
			{p.LeaderEpoch + 1, kerr.UnknownLeaderEpoch.Code},
			{p.LeaderEpoch, kerr.NotLeaderForPartition.Code},
			{-1, kerr.NotLeaderForPartition.Code},
		} {
			for name, ask := range map[string]func(int32, int32) (int16, error){"ListOffsets": listOffsets, "OffsetForLeaderEpoch": offsetForLeaderEpoch} {
				got, err := ask(follower, tc.epoch)
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					problems = append(problems, fmt.Sprintf("%s to follower %d with current epoch %d (leader's %d): %v, want %v",
						name, follower, tc.epoch, p.LeaderEpoch, kerr.ErrorForCode(got), kerr.ErrorForCode(tc.want)))
				}
			}
		}
		after := metadataOf(ctx, t, cl, 1, "pair").Topics[0].Partitions[0]
		if after.Leader != p.Leader || after.LeaderEpoch != p.LeaderEpoch {
			return false // the leadership moved: ask again
		}
		if len(problems) > 0 {
			t.Fatal(strings.Join(problems, "\n"))
		}
		return true
	})
}
