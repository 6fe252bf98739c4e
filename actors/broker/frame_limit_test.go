package broker

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/configs"
)

// smallFrameCluster starts three in-process brokers whose raft transport
// carries frames of at most frame bytes (append messages a quarter of
// that), and returns them ready with a context for the test's requests.
func smallFrameCluster(t *testing.T, frame int) (*testCluster, context.Context) {
	t.Helper()
	c := newTestCluster(t, 3, func(cfg *configs.Config) {
		cfg.Raft.MaxFrameBytes = frame
		cfg.Raft.MaxSizePerMsg = uint64(frame / 4)
	})
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c, ctx
}

// TestBatchAboveFrameLimitIsRefused: a topic whose max.message.bytes is
// above what the raft transport carries (raft.max_frame_bytes) gets a
// larger batch refused with MESSAGE_TOO_LARGE. Proposed, it would never
// reach the followers (each append is dropped as too large), and the
// partition would take no write after it.
func TestBatchAboveFrameLimitIsRefused(t *testing.T) {
	c, ctx := smallFrameCluster(t, 2<<20)
	limit := "8388608"
	c.createTopic(ctx, c.client(), "big", 1, 3, map[string]*string{"max.message.bytes": &limit})
	cl := c.client(kgo.DefaultProduceTopic("big"), kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(16<<20),
		kgo.RecordDeliveryTimeout(8*time.Second), kgo.DisableIdempotentWrite(), kgo.ProducerBatchCompression(kgo.NoCompression()))
	err := cl.ProduceSync(ctx, &kgo.Record{Value: bytes.Repeat([]byte{'x'}, 3<<20)}).FirstErr()
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("a 3 MiB batch over a 2 MiB frame limit: %v, want MESSAGE_TOO_LARGE", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: bytes.Repeat([]byte{'y'}, 1<<20)}).FirstErr(); err != nil {
		t.Fatalf("a 1 MiB batch after it: %v", err)
	}
}

// TestOffsetCommitAboveFrameLimitIsRefused: an OffsetCommit whose records
// the raft transport cannot carry (one request may repeat a partition with
// large metadata) is refused with INVALID_COMMIT_OFFSET_SIZE, as Kafka
// answers a record too large, and the offsets partition goes on taking
// commits. Proposed, it would never replicate and every later write of the
// partition would wait behind it.
func TestOffsetCommitAboveFrameLimitIsRefused(t *testing.T) {
	c, ctx := smallFrameCluster(t, 256<<10)
	cl := c.client()
	c.createTopic(ctx, cl, "events", 1, 3, nil)
	commit := func(n int) []kmsg.OffsetCommitResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.Generation = "big-commits", -1
		meta := strings.Repeat("m", 4000)
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "events"
		for i := range n {
			rt.Partitions = append(rt.Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: 0, Offset: int64(i), LeaderEpoch: -1, Metadata: &meta})
		}
		req.Topics = append(req.Topics, rt)
		var resp *kmsg.OffsetCommitResponse
		c.waitFor(30*time.Second, "the group's coordinator", func() bool {
			var err error
			resp, err = req.RequestWith(ctx, cl)
			return err == nil && len(resp.Topics) == 1 &&
				resp.Topics[0].Partitions[0].ErrorCode != kerr.CoordinatorNotAvailable.Code &&
				resp.Topics[0].Partitions[0].ErrorCode != kerr.NotCoordinator.Code &&
				resp.Topics[0].Partitions[0].ErrorCode != kerr.CoordinatorLoadInProgress.Code
		})
		return resp.Topics[0].Partitions
	}
	for _, p := range commit(80) { // 80 × 4 KB of metadata: over 256 KiB
		if p.ErrorCode != kerr.InvalidCommitOffsetSize.Code {
			t.Fatalf("an OffsetCommit over the frame limit: %v, want INVALID_COMMIT_OFFSET_SIZE", kerr.ErrorForCode(p.ErrorCode))
		}
	}
	for _, p := range commit(1) {
		if p.ErrorCode != 0 {
			t.Fatalf("a small OffsetCommit after it: %v", kerr.ErrorForCode(p.ErrorCode))
		}
	}
}
