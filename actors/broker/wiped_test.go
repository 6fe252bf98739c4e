package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestWipedBrokerRefusesToStart: broker 2's data dir is lost (a disk
// replaced, or its mount missing at boot so the path is an empty
// directory) and it is restarted with its unchanged config. It used to
// found an empty controller group and partition groups and take part in
// raft with an empty log, while the others counted it as a voter holding
// every entry it acknowledged (raft then panicked, or a quorum with it
// could elect a leader without acknowledged writes). It must refuse to
// start, naming the cluster and the peer that knows it, leave its data dir
// as it found it, and start again once its data is restored. A broker that
// joined with bootstrap off is refused alike.
func TestWipedBrokerRefusesToStart(t *testing.T) {
	for _, bootstrap := range []bool{true, false} {
		t.Run(fmt.Sprintf("bootstrap=%v", bootstrap), func(t *testing.T) {
			c := newTestCluster(t, 3)
			c.waitReady()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cl := c.client(kgo.DefaultProduceTopic("w"), kgo.MetadataMinAge(50*time.Millisecond))
			c.createTopic(ctx, cl, "w", 1, 3, nil)
			produce := func(n int) {
				t.Helper()
				for i := range n {
					if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte{byte(i)}}).FirstErr(); err != nil {
						t.Fatalf("produce: %v", err)
					}
				}
			}
			produce(50)
			cluster := c.brokers[0].Controller().View().ClusterID

			c.stop(1)
			dir := c.cfgs[1].DataDir
			backup := filepath.Join(t.TempDir(), "backup")
			if err := os.CopyFS(backup, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			c.cfgs[1].Bootstrap = bootstrap
			b, err := c.launch(1)
			if err == nil {
				c.brokers[1] = b
				t.Fatal("broker 2 started on an empty data dir as a member of the cluster it had left data in")
			}
			var lost *DataLostError
			if !errors.As(err, &lost) {
				t.Fatalf("start on an empty data dir: %v, want a DataLostError", err)
			}
			if lost.NodeID != 2 || lost.ClusterID != cluster || (lost.Peer != 1 && lost.Peer != 3) || lost.Removed {
				t.Fatalf("refusal %+v, want node 2 known to broker 1 or 3 in cluster %s", lost, cluster)
			}
			for _, want := range []string{cluster, fmt.Sprintf("broker %d", lost.Peer), "must not rejoin as a voter", "Restore the data_dir", "new node_id"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("refusal %q does not say %q", err, want)
				}
			}
			t.Logf("refused: %v", err)
			// Nothing written: a retry, with the data restored or not,
			// finds the data dir as it was.
			for _, name := range []string{identityFile, walDir} {
				if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("the refused start left %s in its data dir: %v", name, err)
				}
			}

			produce(20) // brokers 1 and 3 serve on
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.CopyFS(dir, os.DirFS(backup)); err != nil {
				t.Fatal(err)
			}
			c.start(1)
			c.waitFor(30*time.Second, "restored broker 2 caught up with the controller", func() bool {
				return c.brokers[1].Controller().CaughtUp()
			})
		})
	}
}

// TestFoundingMembersStartOneAtATime: the founding members of a new
// cluster start one at a time. The first waits, raft not started, for a
// peer to say it knows of no cluster (a broker still waiting knows none);
// the second lets both start; the third, a voter of the controller group
// that never registered, starts late and joins as today.
func TestFoundingMembersStartOneAtATime(t *testing.T) {
	logs := &clusterLogs{}
	c := configureCluster(t, 3, &testCluster{logs: logs.writer, logLevel: zerolog.InfoLevel})
	type started struct {
		b   *Broker
		err error
	}
	var wg sync.WaitGroup
	results := make([]chan started, 2)
	for i := range results {
		results[i] = make(chan started, 1)
	}
	launch := func(i int) {
		wg.Go(func() {
			b, err := c.launch(i)
			results[i] <- started{b, err}
		})
	}
	defer wg.Wait()

	launch(0)
	c.waitFor(10*time.Second, "broker 1 asking its peers", func() bool {
		return slices.ContainsFunc(logs.writer(1).(*lineLog).lines(), func(l string) bool { return strings.Contains(l, "the data dir is new") })
	})
	select {
	case r := <-results[0]:
		t.Fatalf("broker 1 started with no peer up: %v", r.err)
	default:
	}
	launch(1)
	for i := range results {
		r := <-results[i]
		if r.err != nil {
			t.Fatalf("start broker %d: %v", i+1, r.err)
		}
		c.brokers[i] = r.b
	}
	if !slices.ContainsFunc(logs.writer(1).(*lineLog).lines(), func(l string) bool {
		return strings.Contains(l, "a majority of the voters know no cluster") && strings.Contains(l, `"answered":[2]`)
	}) {
		t.Fatalf("broker 1 did not start on broker 2's answer:\n%s", strings.Join(logs.writer(1).(*lineLog).lines(), "\n"))
	}
	c.waitFor(15*time.Second, "brokers 1 and 2 registered", func() bool {
		v := c.brokers[0].Controller().View()
		_, ok1 := v.Brokers[1]
		_, ok2 := v.Brokers[2]
		return v.ClusterID != "" && ok1 && ok2 && c.brokers[0].Controller().CaughtUp()
	})

	c.start(2)
	c.waitReady()
	if v := c.brokers[2].Controller().View(); !slices.Equal(v.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("late founder sees voters %v", v.Voters)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := c.client(kgo.DefaultProduceTopic("late"))
	c.createTopic(ctx, cl, "late", 1, 3, nil)
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// TestSingleBrokerAndOwnedDataDirDoNotWait: a broker whose config names no
// other peer, and one whose data dir names its owner, start at once with
// nobody to ask.
func TestSingleBrokerAndOwnedDataDirDoNotWait(t *testing.T) {
	c := configureCluster(t, 1, &testCluster{})
	c.start(0)
	c.waitReady()
	c.stop(0)

	d := configureCluster(t, 3, &testCluster{})
	dir := d.cfgs[0].DataDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := recordIdentity(dir, 1); err != nil {
		t.Fatal(err)
	}
	d.start(0) // its peers are all down: asking them would wait
}
