package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// startupDeadline bounds how long a broker may take to accept clients, and
// its topic to have a leader on every partition.
const startupDeadline = 30 * time.Second

// createTopic creates topic with replicas replicas of each partition on the
// cluster the broker at addr belongs to, retrying until the cluster accepts
// it, then waits until every partition has a leader and, with more than one
// replica, until that leader is the preferred one: a new partition elects
// whichever replica's timer fires first, and flotilla then hands the
// leadership to the preferred replica, which costs a producer a metadata
// refresh (up to kgo's 5 s MetadataMinAge) if it happens under load.
func createTopic(ctx context.Context, addr, topic string, partitions int32, replicas int16) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, startupDeadline)
	defer cancel()
	for { // bounded by ctx's deadline
		resp, err := adm.CreateTopic(ctx, partitions, replicas, nil, topic)
		if err == nil {
			err = resp.Err
		}
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create topic %s: %w (last error: %v)", topic, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return waitLeaders(ctx, cl, topic, partitions, replicas > 1)
}

// waitLeaders waits until a Metadata request for topic lists partitions
// partitions, each with a leader (the preferred replica, the first listed,
// if preferred) and no error. It asks the broker every
// time: kadm's Metadata answers from kgo's cache, which is refreshed at most
// every 5 s (kgo.MetadataMinAge).
func waitLeaders(ctx context.Context, cl *kgo.Client, topic string, partitions int32, preferred bool) error {
	for { // bounded by ctx's deadline
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err == nil {
			if err = leadersReady(resp, topic, partitions, preferred); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s: no leader on every partition: %w (last: %v)", topic, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func leadersReady(resp *kmsg.MetadataResponse, topic string, partitions int32, preferred bool) error {
	if len(resp.Topics) != 1 || resp.Topics[0].Topic == nil || *resp.Topics[0].Topic != topic {
		return fmt.Errorf("metadata for %s answered with %d topics", topic, len(resp.Topics))
	}
	t := resp.Topics[0]
	if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
		return err
	}
	if int32(len(t.Partitions)) != partitions {
		return fmt.Errorf("topic %s has %d partitions, want %d", topic, len(t.Partitions), partitions)
	}
	for _, p := range t.Partitions {
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			return fmt.Errorf("partition %d: %w", p.Partition, err)
		}
		if p.Leader < 0 {
			return fmt.Errorf("partition %d has no leader", p.Partition)
		}
		if preferred && (len(p.Replicas) == 0 || p.Leader != p.Replicas[0]) {
			return fmt.Errorf("partition %d: leader %d is not the preferred replica (replicas %v)", p.Partition, p.Leader, p.Replicas)
		}
	}
	return nil
}
