package broker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flotilla/flotilla/actors/partition"
)

// segmentFiles returns the total size and the number of the .log files in
// broker i's directory of partition 0 of topic.
func segmentFiles(t *testing.T, c *testCluster, i int, topic string) (bytes int64, files int) {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(c.cfgs[i].DataDir, "partitions", topic+"-0-g*"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("partition directories of %s on broker %d: %v, %v", topic, i, dirs, err)
	}
	ents, err := os.ReadDir(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		bytes += info.Size()
		files++
	}
	return bytes, files
}

// retainThenIdle creates a topic of 8 KiB segments under a retention.bytes
// of 64 KiB on a one-broker cluster, writes six times that, waits until
// retention has moved the log start, and stops writing.
func retainThenIdle(ctx context.Context, t *testing.T, c *testCluster, topic string) partition.TopicPartition {
	t.Helper()
	segment, retention := "8192", "65536"
	c.createTopic(ctx, c.client(), topic, 1, 1, map[string]*string{"segment.bytes": &segment, "retention.bytes": &retention})
	produceRetained(ctx, t, c.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0)), 3)
	tp := partition.TopicPartition{Topic: topic, Partition: 0}
	c.waitFor(20*time.Second, "retention moves the log start", func() bool {
		v := c.replicaView(0, tp)
		return v != nil && v.LogStart > retainedRecords/2
	})
	return tp
}

// waitSegmentsFreed waits until the partition's .log files are back within
// a few segments of retention.bytes.
func waitSegmentsFreed(t *testing.T, c *testCluster, tp partition.TopicPartition, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		n, files := segmentFiles(t, c, 0, tp.Topic)
		if n < 3*65536 {
			return
		}
		if time.Now().After(deadline) {
			v := c.replicaView(0, tp)
			t.Fatalf("%v after retention moved the log start to %d (log end %d): %d segment files, %d bytes of .log still on disk under a retention.bytes of 65536",
				d, v.LogStart, v.HighWatermark, files, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRetentionFreesDiskWhenIdle: once retention has moved the log start,
// the retired segments' files go promptly even if nothing more is written
// (producers stopped, or refused on a full disk), as Kafka deletes the
// segments below a new log start. They may go only once a durable
// checkpoint covers them, and the storage asks for checkpoints only as the
// WAL grows: the partition asks for one itself after a log-start move.
func TestRetentionFreesDiskWhenIdle(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tp := retainThenIdle(ctx, t, c, "idle")
	waitSegmentsFreed(t, c, tp, 20*time.Second)
}

// TestRetentionFreesDiskAfterRestart: segments retired before a restart
// are freed after it without any new write: the restored checkpoint
// retires them again and the partition checkpoints to release them.
func TestRetentionFreesDiskAfterRestart(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tp := retainThenIdle(ctx, t, c, "idle")
	c.stop(0)
	c.start(0)
	c.waitFor(20*time.Second, "the partition leads again", func() bool {
		v := c.replicaView(0, tp)
		return v != nil && v.Leader
	})
	waitSegmentsFreed(t, c, tp, 20*time.Second)
}
