package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The replicated benchmark's fixed shape (issue 4).
const (
	replicatedBrokers    = 3
	replicatedPartitions = 12
)

// replicatedOptions are the replicated benchmark's flags.
type replicatedOptions struct {
	records        int
	inflight       int
	dir            string
	timeout        time.Duration
	profileDir     string
	profileSeconds int
}

// defaultReplicatedOptions are the defaults: a run of about a minute and a
// half on this machine.
func defaultReplicatedOptions() replicatedOptions {
	return replicatedOptions{records: 1 << 20, inflight: 10000, timeout: 5 * time.Minute, profileSeconds: 5}
}

// register adds the replicated benchmark's flags to fs, with o's values as
// the defaults.
func (o *replicatedOptions) register(fs *flag.FlagSet) {
	fs.IntVar(&o.records, "records", o.records, "records to produce to each system (1 KiB each)")
	fs.IntVar(&o.inflight, "inflight", o.inflight, "records the producer may have unacknowledged (kgo.MaxBufferedRecords; JetStream's max pending async publishes)")
	fs.StringVar(&o.dir, "dir", o.dir, "parent of the temporary data dirs (default: the system temp dir)")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "deadline of the load on each system")
	fs.StringVar(&o.profileDir, "profile", o.profileDir, "save a CPU profile of each flotilla broker during the produce phase into this directory")
	fs.IntVar(&o.profileSeconds, "profile-seconds", o.profileSeconds, "length of each CPU profile")
}

func (o replicatedOptions) validate() error {
	if o.records <= 0 || o.inflight <= 0 || o.timeout <= 0 || o.profileSeconds <= 0 {
		return errors.New("-records, -inflight, -timeout and -profile-seconds must be positive")
	}
	return nil
}

// produceOptions are the options of produceAll for this load.
func (o replicatedOptions) produceOptions() produceOptions {
	return produceOptions{records: o.records, inflight: o.inflight}
}

// systemResult is one system's row: a cluster (or kfake's single broker)
// under the produce load.
type systemResult struct {
	name        string
	records     int
	produceTime time.Duration
	latencies   []time.Duration // sorted
	cpu         cpuUse          // broker: all of the system's brokers together
	peakRSS     []int64         // per broker
	// termRises is how often the terms of the cluster's Raft groups rose
	// during the load (each rise is an election or a leadership hand-over),
	// -1 if not known.
	termRises int
	// stages are each flotilla broker's own timers over the load; nil for
	// the others.
	stages []stages
}

func (r systemResult) rate() float64 { return float64(r.records) / r.produceTime.Seconds() }

// cpuPerGiB is the brokers' CPU seconds per GiB of values.
func (r systemResult) cpuPerGiB() float64 {
	return r.cpu.broker * r.produceTime.Seconds() / (float64(r.records) * benchValueBytes / (1 << 30))
}

// benchReplicated produces the same records to kfake (one broker, for the
// single-broker yardstick), to three bin/flotilla processes with a
// 12-partition RF 3 topic, and to three nats-server processes with a
// three-replica JetStream stream, one after the other, and prints the rows
// and the ratios against the targets.
func benchReplicated(o replicatedOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	if _, err := os.Stat("bin/flotilla"); err != nil {
		return fmt.Errorf("bin/flotilla not built (run make build): %w", err)
	}
	pool := newValuePool(benchPoolBytes)
	kf, err := runKfakeSingle(o, pool)
	if err != nil {
		return fmt.Errorf("kfake: %w", err)
	}
	fl, err := runFlotillaCluster(o, pool)
	if err != nil {
		return fmt.Errorf("flotilla: %w", err)
	}
	js, err := runJetStream(o, pool)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	printReplicated(o, fl, js, kf)
	return nil
}

// measure runs load (which calls its start argument as its timing starts)
// while sampling the RSS of each of pids and the CPU use of all of them,
// and fetching a CPU profile from each of debugs (if o.profileDir is set),
// named <name>-<i>-produce.pprof.
func measure(o replicatedOptions, name string, pids []int, debugs []string, load func(start func()) (time.Duration, []time.Duration, error)) (systemResult, error) {
	var profs []*profiler
	for _, d := range debugs {
		profs = append(profs, newProfiler(d, o.profileDir, o.profileSeconds))
	}
	var rss []*rssSampler
	for _, pid := range pids {
		rss = append(rss, sampleRSS(pid, rssPollInterval))
	}
	var from cpuSample
	var cpuErr error
	took, lat, err := load(func() {
		from, cpuErr = sampleCPU(pids...)
		for i, p := range profs {
			p.start(fmt.Sprintf("%s-%d", name, i+1), "produce")
		}
	})
	to, cpuErr2 := sampleCPU(pids...)
	res := systemResult{name: name, records: o.records, produceTime: took, latencies: lat, cpu: to.since(from), termRises: -1}
	for _, s := range rss {
		res.peakRSS = append(res.peakRSS, s.Stop())
	}
	for _, p := range profs {
		if perr := p.wait(); perr != nil {
			fmt.Fprintln(os.Stderr, "flotilla-bench:", perr)
		}
	}
	if err != nil {
		return res, err
	}
	if err := errors.Join(cpuErr, cpuErr2); err != nil {
		return res, fmt.Errorf("cpu samples: %w", err)
	}
	slices.Sort(res.latencies)
	return res, nil
}

// runKfakeSingle puts the load on kfake (one broker, RF 1, in memory) in a
// process of its own.
func runKfakeSingle(o replicatedOptions, pool valuePool) (systemResult, error) {
	syscall.Sync() // no writeback left over from an earlier run
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	t, err := startKfakeProcess(replicatedPartitions)
	if err != nil {
		return systemResult{}, err
	}
	defer t.stop()
	ctx = watchExit(ctx, t)
	// The topic is seeded: this only checks it as for flotilla.
	if err := createTopic(ctx, t.addr, benchTopic, replicatedPartitions, 1); err != nil {
		return systemResult{}, err
	}
	res, err := measure(o, "kfake", []int{t.pid}, nil, func(start func()) (time.Duration, []time.Duration, error) {
		return produceAll(ctx, t.addr, o.produceOptions(), pool, func(string) { start() })
	})
	if err != nil {
		return res, err
	}
	return res, checkTopic(ctx, []string{t.addr}, o.records)
}

// runFlotillaCluster puts the load on three bin/flotilla processes with
// every default (WAL fsync on), through a 12-partition RF 3 topic.
func runFlotillaCluster(o replicatedOptions, pool valuePool) (systemResult, error) {
	syscall.Sync()
	ps, stop, err := startCluster(o.dir, "flotilla-bench-replicated")
	if err != nil {
		return systemResult{}, err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var seeds, debugs []string
	var pids []int
	for _, p := range ps {
		seeds, debugs, pids = append(seeds, p.kafka), append(debugs, p.debug), append(pids, p.cmd.Process.Pid)
	}
	if err := createTopic(ctx, seeds[0], benchTopic, replicatedPartitions, replicatedBrokers); err != nil {
		return systemResult{}, err
	}
	before, termErr := clusterTerms(debugs)
	var timersFrom []stages
	var stagesErr error
	res, err := measure(o, "flotilla", pids, debugs, func(start func()) (time.Duration, []time.Duration, error) {
		return produceAll(ctx, seeds[0], o.produceOptions(), pool, func(string) {
			timersFrom, stagesErr = scrapeAllStages(debugs)
			start()
		})
	})
	if err != nil {
		return res, err
	}
	timersTo, stagesErr2 := scrapeAllStages(debugs)
	if err := errors.Join(stagesErr, stagesErr2); err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-bench: stage timers:", err)
	} else {
		for i := range timersTo {
			res.stages = append(res.stages, timersTo[i].since(timersFrom[i]))
		}
	}
	after, termErr2 := clusterTerms(debugs)
	if termErr == nil && termErr2 == nil {
		res.termRises = 0
		for g, t := range after {
			res.termRises += int(t - min(t, before[g]))
		}
	} else {
		fmt.Fprintln(os.Stderr, "flotilla-bench: raft terms:", errors.Join(termErr, termErr2))
	}
	return res, checkTopic(ctx, seeds, o.records)
}

// clusterTerms returns the term of each Raft group of the cluster: the
// highest any of the brokers (debug endpoints debugs) reports.
func clusterTerms(debugs []string) (map[string]uint64, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	terms := map[string]uint64{}
	for _, d := range debugs {
		groups, err := raftGroups(hc, d)
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			terms[g.Name] = max(terms[g.Name], g.Term)
		}
	}
	return terms, nil
}

// checkTopic checks that the benchmark topic holds n records in all.
func checkTopic(ctx context.Context, seeds []string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return fmt.Errorf("check client: %w", err)
	}
	defer cl.Close()
	return checkEndOffsets(ctx, cl, n)
}

// runJetStream puts the load on three nats-server processes through a
// file-storage stream with three replicas, publishing to its leader.
func runJetStream(o replicatedOptions, pool valuePool) (systemResult, error) {
	syscall.Sync()
	base, err := os.MkdirTemp(o.dir, "flotilla-bench-jetstream")
	if err != nil {
		return systemResult{}, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(base)
	servers, stop, err := startNATSCluster(base)
	if err != nil {
		return systemResult{}, err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	failed := func(err error) error {
		if f := natsFailure(servers); f != "" {
			return fmt.Errorf("%w (%s)", err, f)
		}
		return err
	}
	leader, err := createStream(ctx, servers)
	if err != nil {
		return systemResult{}, failed(err)
	}
	var pids []int
	for _, s := range servers {
		pids = append(pids, s.pid)
	}
	res, err := measure(o, "jetstream", pids, nil, func(start func()) (time.Duration, []time.Duration, error) {
		return publishAll(ctx, leader, o.produceOptions(), pool, start)
	})
	if err != nil {
		return res, failed(err)
	}
	if err := checkStream(ctx, leader, o.records); err != nil {
		return res, failed(err)
	}
	return res, nil
}

// printReplicated prints the three rows, the ratios and the reading
// against the targets, as Markdown.
func printReplicated(o replicatedOptions, fl, js, kf systemResult) {
	fmt.Printf("## Replicated produce: %d brokers on this machine, %d partitions, RF %d, %d B records, acks=all\n\n",
		replicatedBrokers, replicatedPartitions, replicatedBrokers, benchValueBytes)
	fmt.Printf("%d records (%.2f GiB) to each system, one after the other, at most %d unacknowledged. "+
		"flotilla: %d `bin/flotilla` processes, every default (WAL fsync on), topic of %d partitions RF %d; kgo producer with its defaults (acks=all, idempotent, linger 10 ms, uniform-bytes partitioner), MaxBufferedRecords %d. "+
		"JetStream: %d nats-server processes (`flotilla-bench nats-server`), `sync_interval: always`, one file-storage stream with %d replicas and one subject per partition, "+
		"async publishes round-robin over the subjects through a connection to the stream's leader, max pending %d. "+
		"kfake: franz-go's in-memory fake, one broker, RF 1, in its own process, the same kgo producer.\n\n",
		o.records, float64(o.records)*benchValueBytes/(1<<30), o.inflight,
		replicatedBrokers, replicatedPartitions, replicatedBrokers, o.inflight,
		replicatedBrokers, replicatedBrokers, o.inflight)
	fmt.Println("| system | produce rec/s | MB/s | p50 | p99 | p99.9 | brokers' CPU (cores) | brokers' CPU s/GiB | load generator | kernel | other | peak RSS per broker |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range []systemResult{fl, js, kf} {
		name := r.name
		if r.cpu.other > contendedCores {
			name += " (contended)"
		}
		var rss []string
		for _, b := range r.peakRSS {
			rss = append(rss, mib(b))
		}
		fmt.Printf("| %s | %.0f | %.1f | %s | %s | %s | %.2f | %.1f | %.2f | %.2f | %.2f | %s |\n", name,
			r.rate(), r.rate()*benchValueBytes/1e6,
			usec(percentile(r.latencies, 50)), usec(percentile(r.latencies, 99)), usec(percentile(r.latencies, 99.9)),
			r.cpu.broker, r.cpuPerGiB(), r.cpu.loadgen, r.cpu.kernel, r.cpu.other, strings.Join(rss, " / "))
	}
	for _, other := range []systemResult{js, kf} {
		lat := func(p float64) float64 {
			return float64(percentile(fl.latencies, p)) / float64(percentile(other.latencies, p))
		}
		fmt.Printf("| **flotilla / %s** | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× | | %.2f× | | | | |\n", other.name,
			fl.rate()/other.rate(), fl.rate()/other.rate(), lat(50), lat(99), lat(99.9), fl.cpuPerGiB()/other.cpuPerGiB())
	}
	fmt.Println()
	if len(fl.stages) > 0 {
		fmt.Println("Where flotilla's produce time went, from each broker's own timers over the load (means; a broker times the requests and batches of the partitions it leads, and the keeps, Persists and syncs of all it hosts):")
		fmt.Println()
		fmt.Println(stageHeader("broker"))
		for i, st := range fl.stages {
			fmt.Println(stageRow(fmt.Sprint(i+1), st, fl.produceTime.Seconds()))
		}
		fmt.Println()
	}
	if fl.termRises >= 0 {
		fmt.Printf("- flotilla's Raft terms rose %d times during the load (each rise is an election or a leadership hand-over; a client whose partition moves may wait up to kgo's 5 s MetadataMinAge to find the new leader).\n", fl.termRises)
	}
	if fl.cpu.other > contendedCores || js.cpu.other > contendedCores || kf.cpu.other > contendedCores {
		fmt.Printf("- A row marked contended had other processes keeping more than %.2f cores busy: its numbers are not clean.\n", contendedCores)
	}
	fmt.Printf("- Target ≥ 3× JetStream's throughput: %.2f× — %s.\n", fl.rate()/js.rate(), verdict(fl.rate() >= 3*js.rate()))
	fmt.Printf("- Target ≥ kfake's single-broker throughput (%.0f records/s in this run): %.2f× — %s.\n\n", kf.rate(), fl.rate()/kf.rate(), verdict(fl.rate() >= kf.rate()))
	if o.profileDir != "" {
		fmt.Printf("CPU profiles of the flotilla brokers (%d s of the produce phase): %s\n\n", o.profileSeconds, filepath.Join(o.profileDir, "flotilla-*-produce.pprof"))
	}
}
