package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kfake"
)

// serveKfake is the kfake-server subcommand: it runs franz-go's in-memory
// fake cluster (one broker, one seeded topic) on a free loopback port,
// prints the broker's address as the first line of stdout, and serves until
// stdin is closed or it gets SIGINT or SIGTERM. The produce benchmark runs
// it as a child process, so that kfake, like bin/flotilla, has a process of
// its own rather than sharing the load generator's.
func serveKfake(args []string) error {
	fs := flag.NewFlagSet("kfake-server", flag.ContinueOnError)
	partitions := fs.Int("partitions", benchPartitions, "partitions of the seeded topic")
	topic := fs.String("topic", benchTopic, "the seeded topic")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := newKfake(int32(*partitions), *topic)
	if err != nil {
		return err
	}
	defer c.Close()
	return serveUntilQuit(c.ListenAddrs()[0])
}

// newKfake starts a one-broker kfake cluster with topic seeded.
func newKfake(partitions int32, topic string) (*kfake.Cluster, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		return nil, fmt.Errorf("start kfake: %w", err)
	}
	return c, nil
}

// startKfakeProcess runs `flotilla-bench kfake-server` as a child process
// and returns it with the address it prints.
func startKfakeProcess(partitions int32) (*target, error) {
	c, addr, stop, err := startSelf(os.Stderr, "kfake-server", "-partitions", fmt.Sprint(partitions), "-topic", benchTopic)
	if err != nil {
		return nil, err
	}
	return &target{name: "kfake", addr: addr, pid: c.pid(), exited: c.exited, failure: c.describeExit, stop: stop}, nil
}

// startKfakeInProcess runs kfake inside this process, sharing it (and its
// RSS and CPU) with the load generator.
func startKfakeInProcess(partitions int32) (*target, error) {
	c, err := newKfake(partitions, benchTopic)
	if err != nil {
		return nil, err
	}
	return &target{name: "kfake (in-process)", addr: c.ListenAddrs()[0], pid: os.Getpid(), failure: func() string { return "" }, stop: c.Close}, nil
}
