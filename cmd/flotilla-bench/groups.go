package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The group benchmark (issue 5): on three bin/flotilla brokers, the time a
// three-member group takes to complete a rebalance after a fourth member
// joins, and the consume throughput of a three-member group.
const (
	groupsName    = "bench-group"
	groupsMembers = 3
)

// groupsOptions are the group benchmark's flags.
type groupsOptions struct {
	records    int
	rebalances int
	dir        string
	timeout    time.Duration
}

func defaultGroupsOptions() groupsOptions {
	return groupsOptions{records: 2_000_000, rebalances: 20, timeout: 5 * time.Minute}
}

func (o *groupsOptions) register(fs *flag.FlagSet) {
	fs.IntVar(&o.records, "records", o.records, "1 KiB records the group consumes")
	fs.IntVar(&o.rebalances, "rebalances", o.rebalances, "joins of a fourth member to time")
	fs.StringVar(&o.dir, "dir", o.dir, "parent of the temporary data dirs (default: the system temp dir)")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "deadline of the whole benchmark")
}

func (o groupsOptions) validate() error {
	if o.records <= 0 || o.rebalances <= 0 || o.timeout <= 0 {
		return errors.New("-records, -rebalances and -timeout must be positive")
	}
	return nil
}

// benchMember is one franz-go group consumer with every default
// (cooperative-sticky, 3 s heartbeats, autocommit) but the group and topic.
type benchMember struct {
	cl       *kgo.Client
	done     chan struct{}
	assigned chan struct{} // closed when it first owns partitions
}

func startBenchMember(ctx context.Context, seeds []string, consumed *atomic.Int64) (*benchMember, error) {
	m := &benchMember{done: make(chan struct{}), assigned: make(chan struct{})}
	var once sync.Once
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumerGroup(groupsName), kgo.ConsumeTopics(benchTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			if len(a[benchTopic]) > 0 {
				once.Do(func() { close(m.assigned) })
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("group member: %w", err)
	}
	m.cl = cl
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			if fs.IsClientClosed() {
				return
			}
			consumed.Add(int64(fs.NumRecords()))
		}
	}()
	return m, nil
}

// close leaves the group (kgo commits and leaves on Close).
func (m *benchMember) close() {
	m.cl.Close()
	<-m.done
}

// benchGroups runs the group benchmark and prints its rows.
func benchGroups(o groupsOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	ps, stop, err := startCluster(o.dir, "flotilla-bench-groups")
	if err != nil {
		return err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var seeds []string
	for _, p := range ps {
		seeds = append(seeds, p.kafka)
	}
	if err := createTopic(ctx, seeds[0], benchTopic, replicatedPartitions, replicatedBrokers); err != nil {
		return err
	}
	pool := newValuePool(benchPoolBytes)
	if _, _, err := produceAll(ctx, seeds[0], produceOptions{records: o.records, inflight: 10000}, pool, func(string) {}); err != nil {
		return err
	}

	// Consume: three members from the start to the end of the topic. The
	// clock starts with the first member's start, so it includes the
	// group forming (kafka.group_initial_rebalance_delay_ms, 3 s by
	// default, as Kafka's), which is also reported without it.
	var consumed atomic.Int64
	start := time.Now()
	var members []*benchMember
	defer func() {
		for _, m := range members {
			m.close()
		}
	}()
	for range groupsMembers {
		m, err := startBenchMember(ctx, seeds, &consumed)
		if err != nil {
			return err
		}
		members = append(members, m)
	}
	var firstRecord time.Duration
	for consumed.Load() < int64(o.records) { // bounded by ctx
		if firstRecord == 0 && consumed.Load() > 0 {
			firstRecord = time.Since(start)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consumed %d of %d records: %w", consumed.Load(), o.records, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	took := time.Since(start)
	reread := consumed.Load() - int64(o.records)

	// Rebalances: a fourth member joins the stable group; the clock stops
	// when it owns partitions (with cooperative-sticky that takes two
	// rebalances: the others first give partitions up). It then leaves,
	// and the group settles before the next join.
	var joins []time.Duration
	for range o.rebalances {
		joinStart := time.Now()
		m, err := startBenchMember(ctx, seeds, &consumed)
		if err != nil {
			return err
		}
		select {
		case <-m.assigned:
			joins = append(joins, time.Since(joinStart))
		case <-ctx.Done():
			m.close()
			return fmt.Errorf("rebalance %d: the new member got no partitions: %w", len(joins)+1, ctx.Err())
		}
		m.close()
		if err := waitStableGroup(ctx, seeds[0], groupsName, groupsMembers); err != nil {
			return err
		}
	}
	slices.Sort(joins)

	mib := float64(o.records) * benchValueBytes / (1 << 20)
	fmt.Printf("## Consumer groups: three brokers, %d-partition RF 3 topic, franz-go group members with default settings\n\n", replicatedPartitions)
	fmt.Println("| measure | value |")
	fmt.Println("|---|---|")
	fmt.Printf("| 3-member group consumes %d × 1 KiB records | %.0f records/s, %.0f MB/s (%.1f s, of which %.1f s before the first record: the group forming) |\n",
		o.records, float64(o.records)/took.Seconds(), mib/took.Seconds()*(1<<20)/1e6, took.Seconds(), firstRecord.Seconds())
	if rest := took - firstRecord; rest > 0 {
		fmt.Printf("| … from its first record on | %.0f records/s |\n", float64(o.records)/rest.Seconds())
	}
	fmt.Printf("| records delivered twice while the group formed | %d |\n", reread)
	fmt.Printf("| a 4th member joins a stable 3-member group until it owns partitions (%d joins) | %s |\n\n", len(joins), spread(joins))
	return nil
}

// spread summarises durations as their median, p99 and maximum.
func spread(ds []time.Duration) string {
	return fmt.Sprintf("median %s, p99 %s, max %s", ms(percentile(ds, 50)), ms(percentile(ds, 99)), ms(percentile(ds, 100)))
}

// waitStableGroup waits until group is Stable with n members.
func waitStableGroup(ctx context.Context, addr, group string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for { // bounded by ctx
		described, err := adm.DescribeGroups(ctx, group)
		if err == nil {
			if g := described[group]; g.Err == nil && g.State == "Stable" && len(g.Members) == n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("group %s not stable with %d members: %w", group, n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
