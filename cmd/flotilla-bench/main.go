// Command flotilla-bench measures Flotilla on this machine and prints the
// results as Markdown rows for docs/BENCHMARKS.md.
//
//	flotilla-bench controller   # controller proposals/s: 3 brokers, 1 KiB entries, fsync on
//	flotilla-bench election     # time to elect: 20 cold starts and 20 leader kills of bin/flotilla
//	flotilla-bench failover     # partition failover: SIGKILL of a partition leader → first ack by its successor
//	flotilla-bench produce      # one bin/flotilla vs kfake: 8 partitions, 1 KiB records, acks=all
//	flotilla-bench replicated   # 3 bin/flotilla vs 3 nats-server (JetStream) vs kfake: 12 partitions RF 3, acks=all
//	flotilla-bench groups       # consumer groups on 3 bin/flotilla: rebalance time after a join, 3-member consume rate
//	flotilla-bench idle         # CPU of 3 idle bin/flotilla with 300 partitions RF 3
//	flotilla-bench move         # paced acks=all traffic on 3 bin/flotilla while 12 partitions move (not in all)
//	flotilla-bench all          # all of the above
//
// produce and all take the produce flags (flotilla-bench produce -h), e.g.
// -records 100000 for a quick run; idle and all take the idle flags
// (-idle-window, -idle-partitions, -idle-profile DIR); replicated and
// groups take their own (-records...). flotilla-bench kfake-server runs
// kfake alone and prints its address, and flotilla-bench nats-server one
// clustered nats-server; the benchmarks start them as child processes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"time"
)

func main() {
	what, args := "all", os.Args[1:]
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		what, args = args[0], args[1:]
	}
	if serve, ok := map[string]func([]string) error{"kfake-server": serveKfake, "nats-server": serveNATS}[what]; ok {
		if err := serve(args); err != nil {
			fmt.Fprintf(os.Stderr, "flotilla-bench %s: %v\n", what, err)
			os.Exit(1)
		}
		return
	}
	var opts produceOptions
	ropts := defaultReplicatedOptions()
	gopts := defaultGroupsOptions()
	var idle idleOptions
	mopts := defaultMoveOptions()
	fs := flag.NewFlagSet("flotilla-bench "+what, flag.ContinueOnError)
	if what == "produce" || what == "all" {
		opts.register(fs)
	}
	if what == "replicated" {
		ropts.register(fs)
	}
	if what == "groups" {
		gopts.register(fs)
	}
	if what == "move" {
		mopts.register(fs)
	}
	if what == "idle" || what == "all" {
		idle.register(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	benches := map[string]func() error{
		"controller": benchController,
		"election":   benchElection,
		"produce":    func() error { return benchProduce(opts) },
		"failover":   benchFailover,
		"replicated": func() error { return benchReplicated(ropts) },
		"groups":     func() error { return benchGroups(gopts) },
		"idle":       func() error { return benchIdle(idle) },
		"move":       func() error { return benchMove(mopts) },
		"all": func() error {
			if err := benchController(); err != nil {
				return err
			}
			if err := benchElection(); err != nil {
				return err
			}
			if err := benchFailover(); err != nil {
				return err
			}
			if err := benchIdle(idle); err != nil {
				return err
			}
			if err := benchProduce(opts); err != nil {
				return err
			}
			if err := benchReplicated(ropts); err != nil {
				return err
			}
			return benchGroups(gopts)
		},
	}
	bench, ok := benches[what]
	if !ok {
		fmt.Fprintf(os.Stderr, "flotilla-bench: unknown benchmark %q (controller, election, failover, produce, replicated, groups, idle, move, all, kfake-server, nats-server)\n", what)
		os.Exit(2)
	}
	if path := os.Getenv("FLOTILLA_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Printf("# flotilla-bench %s — %s, %d cores, %s\n\n", strings.Join(append([]string{what}, args...), " "), time.Now().Format(time.RFC3339), runtime.NumCPU(), cpuModel())
	if err := bench(); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "flotilla-bench:", err)
		os.Exit(1)
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown cpu"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if i := strings.Index(line, ":"); i >= 0 {
				return strings.TrimSpace(line[i+1:])
			}
		}
	}
	return "unknown cpu"
}

// percentile returns the p-th percentile (0–100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
