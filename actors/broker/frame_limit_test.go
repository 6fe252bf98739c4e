package broker

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/configs"
)

// TestBatchAboveFrameLimitIsRefused: a topic whose max.message.bytes is
// above what the raft transport carries (raft.max_frame_bytes) gets a
// larger batch refused with MESSAGE_TOO_LARGE. Proposed, it would never
// reach the followers (each append is dropped as too large), and the
// partition would take no write after it.
func TestBatchAboveFrameLimitIsRefused(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) {
		cfg.Raft.MaxFrameBytes = 2 << 20
		cfg.Raft.MaxSizePerMsg = 512 << 10
	})
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
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
