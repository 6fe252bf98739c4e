package test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sys/unix"
)

// TestDiskFull fills the filesystem under a real broker: its data directory
// is a small tmpfs. Produce must stop with KAFKA_STORAGE_ERROR before a
// write fails for want of space, every acknowledged record must stay
// readable, producers must get in again as soon as the filesystem grows
// (no restart), and a kill -9 and restart must lose nothing acknowledged.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const (
		mib     = 1 << 20
		reserve = 16 * mib
		topic   = "full"
	)
	mnt := mountTmpfs(t, "64m")
	nd := newCluster(t, 1)[0]
	nd.dir = filepath.Join(mnt, "data")
	writeConfig(t, nd, true, []*node{nd}, fmt.Sprintf("storage: {wal_segment_bytes: %d, wal_budget_bytes: %d, min_free_bytes: %d}\n",
		2*mib, 8*mib, reserve))
	nd.start(t)
	nd.waitKafka(t)
	createTopic(t, nd.admin(t), topic, 2, nil)

	rng := rand.New(rand.NewPCG(1, 2))
	acked := map[string]bool{}
	// Idempotent, as kgo's default; a bounded retry count so that the
	// refused records come back with the broker's error.
	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.RecordRetries(3), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond })}

	// Up to 96 MiB into 64 MiB less the reserve: produce must be refused.
	n, refused := produceKeyed(t, nd.client(t, opts...), rng, "a", 96*1024, acked)
	if refused == 0 {
		t.Fatalf("all %d records were acknowledged on a 64 MiB filesystem", n)
	}
	t.Logf("first fill: %d acknowledged, %d refused", len(acked), refused)
	// 64 MiB less the 16 MiB reserve and the WAL's 8 MiB leave room for
	// far more than 16 MiB of records before produce is refused.
	if len(acked) < 16*1024 {
		t.Fatalf("only %d records of 1 KiB acknowledged before the first refusal", len(acked))
	}
	if free := nd.metric(t, "flotilla_storage_free_bytes"); free <= 0 || free >= reserve {
		t.Fatalf("flotilla_storage_free_bytes = %.0f, want between 0 and the reserve (%d)", free, reserve)
	}
	for _, bad := range []string{"no space left on device", "raft group halted", "panicked"} {
		if strings.Contains(nd.tail(1<<20), bad) {
			t.Fatalf("the broker's log says %q: a write failed instead of being refused", bad)
		}
	}
	checkKeysAcked(t, nd, topic, acked)

	// More space: producers get in again without a restart.
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_REMOUNT, "size=160m"); err != nil {
		t.Fatalf("grow the tmpfs: %v", err)
	}
	before := len(acked)
	if _, refused := produceKeyed(t, nd.client(t, opts...), rng, "b", 20*1024, acked); refused > 0 {
		t.Fatalf("%d records refused after the filesystem grew", refused)
	}

	// Nothing acknowledged is lost by a crash either.
	nd.kill()
	nd.start(t)
	nd.waitKafka(t)
	checkKeysAcked(t, nd, topic, acked)
	t.Logf("after growing and a restart: %d acknowledged in all (%d new)", len(acked), len(acked)-before)
}

// mountTmpfs mounts a tmpfs of the given size (mount's size= syntax) in a
// temporary directory, unmounted when the test ends, after the brokers are
// killed. It skips the test where mounting is not allowed.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("mounting a tmpfs needs root (CAP_SYS_ADMIN): %v", err)
	}
	// Registered before the brokers' cleanups, so it runs after them.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// produceKeyed produces up to n records of 1 KiB of random bytes keyed
// prefix-i, one produce window at a time, and stops at the first window
// with a refusal. It records the acknowledged keys in acked, and fails the
// test on any error other than KAFKA_STORAGE_ERROR. It returns how many
// records it produced and how many were refused.
func produceKeyed(t *testing.T, cl *kgo.Client, rng *rand.Rand, prefix string, n int, acked map[string]bool) (produced, refused int) {
	t.Helper()
	ctx := testCtx(t, 2*time.Minute)
	const window = 2048
	var mu sync.Mutex
	var other error
	for produced < n && refused == 0 {
		var wg sync.WaitGroup
		for range min(window, n-produced) {
			v := make([]byte, 1024)
			for i := range v {
				v[i] = byte(rng.Uint32())
			}
			key := prefix + "-" + strconv.Itoa(produced)
			produced++
			wg.Add(1)
			cl.Produce(ctx, &kgo.Record{Key: []byte(key), Value: v}, func(r *kgo.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					acked[string(r.Key)] = true
				case errors.Is(err, kerr.KafkaStorageError):
					refused++
				case other == nil:
					other = err
				}
			})
		}
		wg.Wait()
		if other != nil {
			t.Fatalf("produce %s: %v (want success or KAFKA_STORAGE_ERROR)", prefix, other)
		}
	}
	return produced, refused
}

// checkKeysAcked reads topic from the start until every acknowledged key has
// been seen, within a minute.
func checkKeysAcked(t *testing.T, nd *node, topic string, acked map[string]bool) {
	t.Helper()
	if len(acked) == 0 {
		t.Fatal("no record acknowledged: nothing to check")
	}
	cl := nd.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := testCtx(t, time.Minute)
	missing := make(map[string]bool, len(acked))
	for k := range acked {
		missing[k] = true
	}
	read := 0
	for len(missing) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d acknowledged records missing after reading %d", len(missing), len(acked), read)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Errorf("consume %s/%d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			read++
			delete(missing, string(r.Key))
		})
	}
}
