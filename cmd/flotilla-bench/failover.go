package main

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	failoverRounds     = 20
	failoverPartitions = 12
)

// benchFailover measures, on three bin/flotilla processes with a
// 12-partition RF=3 topic, the time from the SIGKILL of partition 0's
// leader to the first acks=all record its successor acknowledges. A
// producer writes to partition 0 one record at a time, so the first
// acknowledgement after the kill can only come from the new leader (after
// the client noticed, refreshed its metadata and retried). The killed
// broker is restarted and the partition's leadership settles back before
// the next round.
func benchFailover() error {
	ps, stop, err := startCluster("", "flotilla-bench-failover")
	if err != nil {
		return err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	seeds := []string{ps[0].kafka, ps[1].kafka, ps[2].kafka}
	admCl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(50*time.Millisecond))
	if err != nil {
		return err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	// A cluster that has just started registers its brokers one by one:
	// createTopic retries until all three can take a replica.
	if err := createTopic(ctx, seeds[0], "failover", failoverPartitions, 3); err != nil {
		return err
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("failover"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MetadataMinAge(50*time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }))
	if err != nil {
		return err
	}
	defer cl.Close()
	acks := make(chan time.Time, 1024)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for pctx.Err() == nil {
			r := &kgo.Record{Partition: 0, Value: []byte("failover")}
			if err := cl.ProduceSync(pctx, r).FirstErr(); err == nil {
				select {
				case acks <- time.Now():
				default:
				}
			}
		}
	}()
	leaderOf0 := func() int32 {
		md, err := adm.Metadata(ctx, "failover")
		if err != nil {
			return -1
		}
		if p, ok := md.Topics["failover"].Partitions[0]; ok && p.Err == nil {
			return p.Leader
		}
		return -1
	}

	var took []time.Duration
	for round := 0; round < failoverRounds; round++ {
		// A steady state: the producer is acknowledged and partition 0 has
		// a leader every broker is up for.
		deadline := time.Now().Add(30 * time.Second)
		for {
			drain(acks)
			select {
			case <-acks:
			case <-time.After(2 * time.Second):
				return fmt.Errorf("round %d: the producer is not acknowledged", round)
			}
			if leaderOf0() > 0 || time.Now().After(deadline) {
				break
			}
		}
		leader := leaderOf0()
		if leader <= 0 {
			return fmt.Errorf("round %d: partition 0 has no leader", round)
		}
		victim := ps[leader-1]
		killedAt := time.Now()
		victim.kill()
		drain(acks)
		var t time.Time
	wait:
		for {
			select {
			case t = <-acks:
				if t.After(killedAt) {
					break wait
				}
			case <-time.After(30 * time.Second):
				return fmt.Errorf("round %d: no acknowledgement within 30 s of killing broker %d", round, victim.id)
			}
		}
		took = append(took, t.Sub(killedAt))
		if err := victim.start(); err != nil {
			return err
		}
		// Let the restarted broker catch up and take its preferred
		// leaderships back before the next kill.
		if _, _, err := waitAgreed(ps, 10*time.Second, 0); err != nil {
			return fmt.Errorf("round %d rejoin: %w", round, err)
		}
		time.Sleep(3 * time.Second)
	}
	fmt.Println("## Partition failover (3 bin/flotilla processes, 12 partitions RF 3, acks=all, franz-go producer)")
	fmt.Println()
	fmt.Println("| event | rounds | median | p99 | max |")
	fmt.Println("|---|---|---|---|---|")
	fmt.Printf("| SIGKILL of partition 0's leader → first acks=all record acknowledged by its successor | %d | %s | %s | %s |\n\n",
		len(took), ms(percentile(took, 50)), ms(percentile(took, 99)), ms(percentile(took, 100)))
	return nil
}

// drain empties c without blocking.
func drain(c chan time.Time) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
