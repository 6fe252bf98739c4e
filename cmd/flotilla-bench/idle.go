package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// idleOptions are the flags of flotilla-bench idle.
type idleOptions struct {
	partitions int
	window     time.Duration
	profileDir string
}

func (o *idleOptions) register(fs *flag.FlagSet) {
	fs.IntVar(&o.partitions, "idle-partitions", 300, "idle: partitions of the RF 3 topic")
	fs.DurationVar(&o.window, "idle-window", 30*time.Second, "idle: how long each broker's CPU time is measured")
	fs.StringVar(&o.profileDir, "idle-profile", "", "idle: also save a CPU profile of each broker over the window in this directory (the profiler's own cost is then in the numbers)")
}

// idleSettle is how long the cluster runs, once its leaders are balanced,
// before the measurement starts: the transfers' elections and the first
// leadership broadcasts are over by then.
const idleSettle = 3 * time.Second

// benchIdle measures what an idle cluster costs: three bin/flotilla
// processes host one topic of o.partitions partitions with RF 3 (every
// broker a replica of every partition), no client sends anything, and each
// broker's CPU time (utime+stime from /proc/<pid>/stat) is read at the
// start and the end of o.window. What is left is raft ticks, heartbeats and
// their answers, and the brokers' own periodic work.
func benchIdle(o idleOptions) error {
	ps, stop, err := startCluster("", "flotilla-bench-idle")
	if err != nil {
		return err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+o.window)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(ps[0].kafka, ps[1].kafka, ps[2].kafka))
	if err != nil {
		return err
	}
	defer cl.Close()
	const topic = "idle"
	started := time.Now()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, int32(o.partitions), 3, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic: %w", err)
	}
	leaders, err := waitBalanced(ctx, cl, topic, o.partitions, len(ps))
	if err != nil {
		return err
	}
	balancedAfter := time.Since(started)
	// The brokers are idle from here: the client sends nothing more.
	cl.Close()
	time.Sleep(idleSettle)

	var prof []*profiler
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
		for _, p := range ps {
			pr := &profiler{debug: p.debug, dir: o.profileDir, seconds: int(o.window / time.Second)}
			pr.start(fmt.Sprintf("broker%d", p.id), "idle")
			prof = append(prof, pr)
		}
	}
	before, err := sampleProcs(ps)
	if err != nil {
		return err
	}
	time.Sleep(o.window)
	after, err := sampleProcs(ps)
	if err != nil {
		return err
	}
	for _, pr := range prof {
		if err := pr.wait(); err != nil {
			return err
		}
	}
	wall := after.at.Sub(before.at).Seconds()
	fmt.Printf("## Idle cluster (3 bin/flotilla processes, %d partitions RF 3, no clients, %s window)\n\n", o.partitions, o.window)
	fmt.Printf("Leaders balanced %s after CreateTopics; measured %s later.\n\n", balancedAfter.Round(100*time.Millisecond), idleSettle)
	fmt.Println("| broker | leaders | CPU s | % of one core |")
	fmt.Println("|---|---|---|---|")
	var brokers float64
	for i, p := range ps {
		s := float64(after.procs[i]-before.procs[i]) / clockTicks
		brokers += s
		fmt.Printf("| %d | %d | %.2f | %.1f %% |\n", p.id, leaders[int32(p.id)], s, 100*s/wall)
	}
	other := max(0, float64(after.system-before.system)/clockTicks-brokers)
	fmt.Printf("\nEverything else on the machine (kernel, other processes): %.2f cores.\n\n", other/wall)
	return nil
}

// procSample is the CPU time, in clock ticks, of the machine and of each
// broker process at one instant.
type procSample struct {
	at     time.Time
	system int64
	procs  []int64
}

func sampleProcs(ps []*proc) (procSample, error) {
	s := procSample{at: time.Now()}
	var err error
	if s.system, _, err = systemBusy(); err != nil {
		return s, err
	}
	for _, p := range ps {
		if p.cmd == nil || p.cmd.Process == nil {
			return s, fmt.Errorf("broker %d is not running", p.id)
		}
		t, _, err := processTicks(p.cmd.Process.Pid)
		if err != nil {
			return s, fmt.Errorf("broker %d: %w", p.id, err)
		}
		s.procs = append(s.procs, t)
	}
	return s, nil
}

// waitBalanced waits until every partition of topic has a leader and every
// one of the brokers leads the same share of them (give or take one), as
// the preferred-leader transfers make it, and returns the leader count of
// each broker. It asks a broker every time (kgo caches metadata).
func waitBalanced(ctx context.Context, cl *kgo.Client, topic string, partitions, brokers int) (map[int32]int, error) {
	var last error
	for { // bounded by ctx's deadline
		counts, err := leaderCounts(ctx, cl, topic, partitions)
		if err == nil {
			err = balanced(counts, partitions, brokers)
			if err == nil {
				return counts, nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("topic %s: leaders not balanced: %w (last: %v)", topic, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func leaderCounts(ctx context.Context, cl *kgo.Client, topic string, partitions int) (map[int32]int, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	if err := leadersReady(resp, topic, int32(partitions), false); err != nil {
		return nil, err
	}
	counts := map[int32]int{}
	for _, p := range resp.Topics[0].Partitions {
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			return nil, err
		}
		counts[p.Leader]++
	}
	return counts, nil
}

func balanced(counts map[int32]int, partitions, brokers int) error {
	if len(counts) != brokers {
		return fmt.Errorf("%d brokers lead partitions, want %d", len(counts), brokers)
	}
	var cs []int
	for _, c := range counts {
		cs = append(cs, c)
	}
	sort.Ints(cs)
	if cs[len(cs)-1]-cs[0] > 1 || cs[0] < partitions/brokers {
		return fmt.Errorf("leader counts %v", cs)
	}
	return nil
}
