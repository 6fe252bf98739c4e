package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"
)

// The produce benchmark's fixed shape (issue 3).
const (
	benchTopic      = "bench"
	benchPartitions = 8
	benchValueBytes = 1024
	benchPoolBytes  = 64 << 20 // random bytes the values are cut from
	rssTargetBytes  = 256 << 20
	rssPollInterval = 100 * time.Millisecond
)

// produceOptions are the produce benchmark's flags.
type produceOptions struct {
	flotilla       string // the broker binary
	noFsync        bool   // diagnosis only: flotilla with storage.fsync false
	records        int
	rounds         int
	inflight       int
	kfakeInProcess bool
	dir            string
	timeout        time.Duration
	profileDir     string
	profileSeconds int
}

// register adds the produce benchmark's flags to fs.
func (o *produceOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.flotilla, "flotilla", "bin/flotilla", "the broker binary to benchmark")
	fs.BoolVar(&o.noFsync, "no-fsync", false, "diagnosis only: run flotilla with storage.fsync false, to see what fsync costs")
	fs.IntVar(&o.records, "records", 2<<20, "records to produce and consume per broker (1 KiB each; the default is 2 GiB)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each runs the load on kfake, then on flotilla")
	fs.IntVar(&o.inflight, "inflight", 10000, "records the producer may buffer (kgo.MaxBufferedRecords)")
	fs.BoolVar(&o.kfakeInProcess, "kfake-inprocess", false, "run kfake inside the load generator's process instead of a child process")
	fs.StringVar(&o.dir, "dir", "", "parent of the temporary flotilla data dir (default: the system temp dir)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "deadline of the load on each broker")
	fs.StringVar(&o.profileDir, "profile", "", "save CPU profiles of the flotilla broker (one per phase and round) into this directory")
	fs.IntVar(&o.profileSeconds, "profile-seconds", 10, "length of each CPU profile")
}

func (o *produceOptions) validate() error {
	if o.records <= 0 || o.rounds <= 0 || o.inflight <= 0 || o.timeout <= 0 || o.profileSeconds <= 0 {
		return fmt.Errorf("-records, -rounds, -inflight, -timeout and -profile-seconds must be positive")
	}
	return nil
}

// targetResult is one broker's row.
type targetResult struct {
	name                   string
	round                  int
	load                   loadResult
	peakRSS                int64
	disk                   int64 // bytes in the data dir after the run; 0 for kfake
	produceCPU, consumeCPU cpuUse
	stages                 *stages // the broker's produce-path timers over the produce phase; nil for kfake
}

// round is one run of the load on each broker.
type round struct {
	kfake, flotilla targetResult
}

// benchProduce runs the same produce/consume load against kfake and then
// against one bin/flotilla process, o.rounds times, and prints every run
// with the ratios.
func benchProduce(o produceOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	pool := newValuePool(benchPoolBytes)
	var rounds []round
	for r := range o.rounds {
		rd, err := runRound(o, pool, r+1)
		if err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
		rounds = append(rounds, rd)
	}
	printProduce(o, rounds)
	return nil
}

// runRound runs the load on kfake, then on a fresh flotilla. kfake goes
// first so that the writeback of flotilla's data cannot slow it down.
func runRound(o produceOptions, pool valuePool, n int) (round, error) {
	var rd round
	var err error
	rd.kfake, err = runTarget(o, pool, n, func(ctx context.Context) (*target, error) {
		start := startKfakeProcess
		if o.kfakeInProcess {
			start = startKfakeInProcess
		}
		t, err := start(benchPartitions)
		if err != nil {
			return nil, err
		}
		// The topic is seeded: this only checks it as for flotilla.
		if err := createTopic(ctx, t.addr, benchTopic, benchPartitions, 1); err != nil {
			t.stop()
			return nil, err
		}
		return t, nil
	})
	if err != nil {
		return rd, fmt.Errorf("kfake: %w", err)
	}
	base, err := os.MkdirTemp(o.dir, "flotilla-bench-produce")
	if err != nil {
		return rd, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(base)
	rd.flotilla, err = runTarget(o, pool, n, func(ctx context.Context) (*target, error) {
		return startFlotilla(ctx, o.flotilla, !o.noFsync, base, benchPartitions)
	})
	if err != nil {
		return rd, fmt.Errorf("flotilla: %w", err)
	}
	return rd, nil
}

// runTarget starts a broker, puts the load on it while sampling its RSS and
// CPU use, and stops it. n is the round.
func runTarget(o produceOptions, pool valuePool, n int, start func(context.Context) (*target, error)) (targetResult, error) {
	syscall.Sync() // start from clean page cache: no writeback left over from an earlier run
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	t, err := start(ctx)
	if err != nil {
		return targetResult{}, err
	}
	defer t.stop()
	prof := newProfiler(t.debug, o.profileDir, o.profileSeconds)
	var marks []cpuSample // at the start of produce, of consume, and at the end
	var timers []stages   // at the start of produce and of consume, for flotilla
	var cpuErr error
	onPhase := func(phase string) {
		s, err := sampleCPU(t.pid)
		marks, cpuErr = append(marks, s), errors.Join(cpuErr, err)
		if t.name == "flotilla" && phase != "done" {
			st, err := scrapeStages(t.debug)
			timers, cpuErr = append(timers, st), errors.Join(cpuErr, err)
		}
		if phase != "done" {
			prof.start(fmt.Sprintf("%s-round%d", t.name, n), phase)
		}
	}
	rss := sampleRSS(t.pid, rssPollInterval)
	load, err := runLoad(watchExit(ctx, t), t.addr, o, pool, onPhase)
	peak := rss.Stop()
	if perr := prof.wait(); perr != nil {
		fmt.Fprintln(os.Stderr, "flotilla-bench:", perr)
	}
	if err != nil {
		if f := t.failure(); f != "" {
			return targetResult{}, fmt.Errorf("%w (%s)", err, f)
		}
		return targetResult{}, err
	}
	if cpuErr != nil || len(marks) != 3 {
		return targetResult{}, fmt.Errorf("cpu samples (%d of 3): %w", len(marks), cpuErr)
	}
	slices.Sort(load.latencies) // once, for the percentiles taken later
	res := targetResult{name: t.name, round: n, load: load, peakRSS: peak,
		produceCPU: marks[1].since(marks[0]), consumeCPU: marks[2].since(marks[1])}
	if len(timers) == 2 {
		st := timers[1].since(timers[0])
		res.stages = &st
	}
	if t.dir != "" {
		if res.disk, err = dirBytes(t.dir); err != nil {
			return targetResult{}, err
		}
	}
	return res, nil
}

// watchExit returns a context that ends with ctx or when t's process
// exits, so that a crashed broker fails the load at once rather than at the
// deadline.
func watchExit(ctx context.Context, t *target) context.Context {
	if t.exited == nil {
		return ctx
	}
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-t.exited:
			cancel(fmt.Errorf("%s exited during the load", t.name))
		case <-ctx.Done():
		}
	}()
	return ctx
}

// parentDir is where the temporary data dir is made.
func (o produceOptions) parentDir() string {
	if o.dir != "" {
		return o.dir
	}
	return os.TempDir()
}
