package main

import (
	"fmt"
	"slices"
)

// printProduce prints every round's rows, the ratios, and the reading
// against the targets, as Markdown.
func printProduce(o produceOptions, rounds []round) {
	where := "in its own process (`flotilla-bench kfake-server`)"
	if o.kfakeInProcess {
		where = "inside the load generator's process"
	}
	fmt.Printf("## Single broker produce/consume: 1 topic, %d partitions, RF 1, %d B records, acks=all\n\n", benchPartitions, benchValueBytes)
	fsync := "WAL fsync on"
	if o.noFsync {
		fsync = "**WAL fsync OFF (diagnosis only)**"
	}
	fmt.Printf("flotilla: one `%s` process, %s, data under %s. kfake: franz-go's in-memory fake cluster, one broker, %s. ", o.flotilla, fsync, o.parentDir(), where)
	fmt.Printf("Producer: kgo defaults (acks=all, idempotent, linger 10 ms, uniform-bytes partitioner), MaxBufferedRecords %d, incompressible values; then a new consumer reads all %d records back from offset 0. Each round runs kfake, then a fresh flotilla.\n\n", o.inflight, o.records)

	fmt.Println("| round | broker | produce rec/s | produce MB/s | p50 | p99 | p99.9 | consume rec/s | consume MB/s | peak RSS | on disk |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, rd := range rounds {
		for _, r := range []targetResult{rd.flotilla, rd.kfake} {
			disk := "—"
			if r.disk > 0 {
				disk = mib(r.disk)
			}
			fmt.Printf("| %s | %s | %.0f | %.1f | %s | %s | %s | %.0f | %.1f | %s | %s |\n", rd.label(), r.name,
				r.load.produceRate(), r.load.produceRate()*benchValueBytes/1e6,
				usec(percentile(r.load.latencies, 50)), usec(percentile(r.load.latencies, 99)), usec(percentile(r.load.latencies, 99.9)),
				r.load.consumeRate(), r.load.consumeRate()*benchValueBytes/1e6, mib(r.peakRSS), disk)
		}
		q := rd.ratios()
		fmt.Printf("| %s | **flotilla / kfake** | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× | |\n",
			rd.label(), q.produce, q.produce, q.p50, q.p99, q.p999, q.consume, q.consume, q.rss)
	}
	med := medianRatios(rounds)
	fmt.Printf("| median | **flotilla / kfake** | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× | |\n\n",
		med.produce, med.produce, med.p50, med.p99, med.p999, med.consume, med.consume, med.rss)

	fmt.Println("CPU in cores (CPU seconds per second of the phase): the broker; the load generator (the producer or consumer, i.e. this program); the kernel (interrupts, softirqs such as loopback TCP, kernel threads such as page-cache writeback); other processes on the machine, which should be near 0 for a clean run. Broker CPU s/GiB is the broker's CPU time per GiB of values.")
	fmt.Println()
	fmt.Println("| round | broker | produce: broker | broker CPU s/GiB | load generator | kernel | other | consume: broker | broker CPU s/GiB | load generator | kernel | other |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, rd := range rounds {
		for _, r := range []targetResult{rd.flotilla, rd.kfake} {
			gib := float64(r.load.records) * benchValueBytes / (1 << 30)
			p, c := r.produceCPU, r.consumeCPU
			fmt.Printf("| %s | %s | %.2f | %.1f | %.2f | %.2f | %.2f | %.2f | %.1f | %.2f | %.2f | %.2f |\n", rd.label(), r.name,
				p.broker, p.broker*r.load.produceTime.Seconds()/gib, p.loadgen, p.kernel, p.other,
				c.broker, c.broker*r.load.consumeTime.Seconds()/gib, c.loadgen, c.kernel, c.other)
		}
	}
	fmt.Println()

	fmt.Println("Where flotilla's produce time went, from its own timers over the produce phase (means): a produce request in the broker; a batch from proposal on its leader to durable there and to applied; a partition's raft actor writing one Ready's batches into the segments (keep), during which it handles nothing else; a Persist in the storage actor (write and fsync waits); one WAL fsync; one sync of a partition's segments.")
	fmt.Println()
	fmt.Println(stageHeader("round"))
	for _, rd := range rounds {
		if st := rd.flotilla.stages; st != nil {
			fmt.Println(stageRow(rd.label(), *st, rd.flotilla.load.produceTime.Seconds()))
		}
	}
	fmt.Println()

	fmt.Println("The producer's view of its produce requests (kgo's BrokerE2E hook, means over the produce phase): from the request's creation to its write, in which kgo encodes it behind the write of any earlier one; the write; then from the write until its response was read whole, which holds the broker's time and the reading of earlier responses. A broker's timers above start only once it has read a request whole.")
	fmt.Println()
	fmt.Println(requestHeader())
	for _, rd := range rounds {
		for _, r := range []targetResult{rd.flotilla, rd.kfake} {
			fmt.Println(requestRow(rd.label(), r.name, r.load.requests))
		}
	}
	fmt.Println()

	var contended int
	for _, rd := range rounds {
		if rd.contended() {
			contended++
		}
	}
	if contended > 0 {
		fmt.Printf("- %d of %d rounds are marked contended: other processes kept more than %.2f cores busy in a phase of one of the brokers, so their numbers are not clean.\n",
			contended, len(rounds), contendedCores)
	}
	fmt.Printf("- Target produce throughput ≥ 2× kfake: median %.2f× — %s.\n", med.produce, verdict(med.produce >= 2))
	var peak int64
	for _, rd := range rounds {
		peak = max(peak, rd.flotilla.peakRSS)
	}
	through := float64(o.records) * benchValueBytes / (1 << 30)
	rss := verdict(peak < rssTargetBytes)
	if through < 2 {
		rss = "not checked: the target is for 2 GiB through"
	}
	fmt.Printf("- Target peak RSS of bin/flotilla < %s with 2 GiB through: %s (largest of the rounds) with %.2f GiB through — %s.\n\n", mib(rssTargetBytes), mib(peak), through, rss)
}

// contendedCores is the CPU of other processes above which a round is
// marked contended.
const contendedCores = 0.25

// contended reports whether other processes competed for the CPU in any
// phase of the round.
func (rd round) contended() bool {
	for _, r := range []targetResult{rd.flotilla, rd.kfake} {
		if r.produceCPU.other > contendedCores || r.consumeCPU.other > contendedCores {
			return true
		}
	}
	return false
}

// label is the round's number, marked when it was contended.
func (rd round) label() string {
	if rd.contended() {
		return fmt.Sprintf("%d (contended)", rd.flotilla.round)
	}
	return fmt.Sprint(rd.flotilla.round)
}

// ratios is flotilla / kfake for each column of a round.
type ratios struct {
	produce, consume, p50, p99, p999, rss float64
}

func (rd round) ratios() ratios {
	fl, kf := rd.flotilla, rd.kfake
	return ratios{
		produce: fl.load.produceRate() / kf.load.produceRate(),
		consume: fl.load.consumeRate() / kf.load.consumeRate(),
		p50:     latRatio(fl, kf, 50),
		p99:     latRatio(fl, kf, 99),
		p999:    latRatio(fl, kf, 99.9),
		rss:     float64(fl.peakRSS) / float64(kf.peakRSS),
	}
}

// medianRatios is the median of each ratio over the rounds.
func medianRatios(rounds []round) ratios {
	col := func(f func(ratios) float64) float64 {
		var v []float64
		for _, rd := range rounds {
			v = append(v, f(rd.ratios()))
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return ratios{
		produce: col(func(q ratios) float64 { return q.produce }),
		consume: col(func(q ratios) float64 { return q.consume }),
		p50:     col(func(q ratios) float64 { return q.p50 }),
		p99:     col(func(q ratios) float64 { return q.p99 }),
		p999:    col(func(q ratios) float64 { return q.p999 }),
		rss:     col(func(q ratios) float64 { return q.rss }),
	}
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "not met"
}

func latRatio(fl, kf targetResult, p float64) float64 {
	return float64(percentile(fl.load.latencies, p)) / float64(percentile(kf.load.latencies, p))
}

func (r loadResult) produceRate() float64 { return float64(r.records) / r.produceTime.Seconds() }
func (r loadResult) consumeRate() float64 { return float64(r.records) / r.consumeTime.Seconds() }
