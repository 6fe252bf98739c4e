package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

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
	if _, err := fmt.Println(c.ListenAddrs()[0]); err != nil {
		return fmt.Errorf("print address: %w", err)
	}

	quit := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // returns when the parent closes our stdin or dies
		quit <- struct{}{}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case <-quit:
	case <-sig:
	}
	return nil
}

// newKfake starts a one-broker kfake cluster with topic seeded.
func newKfake(partitions int32, topic string) (*kfake.Cluster, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		return nil, fmt.Errorf("start kfake: %w", err)
	}
	return c, nil
}

// startKfakeProcess runs `flotilla-bench kfake-server` as a child process,
// reads the address it prints, and waits for the topic's leaders.
func startKfakeProcess(partitions int32) (*target, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(self, "kfake-server", "-partitions", fmt.Sprint(partitions), "-topic", benchTopic)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("kfake-server stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("kfake-server stdout: %w", err)
	}
	line := make(chan string, 1)
	c, err := startChild(cmd)
	if err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	t := &target{
		name: "kfake", pid: c.pid(), exited: c.exited,
		failure: c.describeExit,
		stop:    func() { c.stop(func() { stdin.Close() }) }, // the server exits when its stdin closes
	}
	select {
	case addr, ok := <-line:
		if !ok || addr == "" {
			t.stop()
			return nil, errors.New("kfake-server exited without printing its address")
		}
		t.addr = addr
		return t, nil
	case <-time.After(startupDeadline):
		t.stop()
		return nil, fmt.Errorf("kfake-server printed no address within %v", startupDeadline)
	}
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
