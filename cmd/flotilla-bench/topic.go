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

// createTopic creates topic with RF 1 on the broker at addr, retrying until
// the broker accepts it, then waits until every partition has a leader.
func createTopic(ctx context.Context, addr, topic string, partitions int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, startupDeadline)
	defer cancel()
	for { // bounded by ctx's deadline
		resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
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
	return waitLeaders(ctx, cl, topic, partitions)
}

// waitLeaders waits until a Metadata request for topic lists partitions
// partitions, each with a leader and no error. It asks the broker every
// time: kadm's Metadata answers from kgo's cache, which is refreshed at most
// every 5 s (kgo.MetadataMinAge).
func waitLeaders(ctx context.Context, cl *kgo.Client, topic string, partitions int32) error {
	for { // bounded by ctx's deadline
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err == nil {
			if err = leadersReady(resp, topic, partitions); err == nil {
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

func leadersReady(resp *kmsg.MetadataResponse, topic string, partitions int32) error {
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
	}
	return nil
}
