// Command flotilla-bench measures Flotilla on this machine and prints the
// results as Markdown rows for docs/BENCHMARKS.md.
//
//	flotilla-bench controller   # controller proposals/s: 3 brokers, 1 KiB entries, fsync on
//	flotilla-bench election     # time to elect: 20 cold starts and 20 leader kills of bin/flotilla
//	flotilla-bench all
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"time"
)

func main() {
	what := "all"
	if len(os.Args) > 1 {
		what = os.Args[1]
	}
	if path := os.Getenv("FLOTILLA_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Printf("# flotilla-bench %s — %s, %d cores, %s\n\n", what, time.Now().Format(time.RFC3339), runtime.NumCPU(), cpuModel())
	var err error
	switch what {
	case "controller":
		err = benchController()
	case "election":
		err = benchElection()
	case "all":
		if err = benchController(); err == nil {
			err = benchElection()
		}
	default:
		err = fmt.Errorf("unknown benchmark %q (controller, election, all)", what)
	}
	if err != nil {
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
