package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
)

// The move benchmark (issue 6: reassignments are throttled so that a move
// does not starve client traffic): what moving every partition of a large
// topic from brokers {1, 2} to {2, 3} does to a paced producer on another
// topic of the same three brokers.
const (
	movePartitions     = 12
	trafficTopic       = "traffic"
	trafficPartitions  = 3
	trafficTick        = 5 * time.Millisecond
	trafficWarmup      = 2 * time.Second // connection and metadata, left out of every window
	movePollInterval   = 100 * time.Millisecond
	trafficMaxInflight = 10000
)

// moveFrom and moveTo are the replicas of every partition of the moved
// topic before and after the move.
var moveFrom, moveTo = []int32{1, 2}, []int32{2, 3}

// moveOptions are the move benchmark's flags.
type moveOptions struct {
	prefill     int
	rate        int
	window      time.Duration
	moveTimeout time.Duration
	dir         string
}

func defaultMoveOptions() moveOptions {
	return moveOptions{prefill: 300_000, rate: 30_000, window: 10 * time.Second, moveTimeout: 5 * time.Minute}
}

func (o *moveOptions) register(fs *flag.FlagSet) {
	fs.IntVar(&o.prefill, "prefill", o.prefill, "1 KiB records in the moved topic before the move")
	fs.IntVar(&o.rate, "rate", o.rate, "records/s of the client traffic (1 KiB, acks=all)")
	fs.DurationVar(&o.window, "window", o.window, "length of the windows before and after the move")
	fs.DurationVar(&o.moveTimeout, "move-timeout", o.moveTimeout, "deadline of the move")
	fs.StringVar(&o.dir, "dir", o.dir, "parent of the temporary data dirs (default: the system temp dir)")
}

func (o moveOptions) validate() error {
	if o.prefill <= 0 || o.rate <= 0 || o.window < time.Second || o.moveTimeout <= 0 {
		return errors.New("-prefill, -rate and -move-timeout must be positive, -window at least 1s")
	}
	return nil
}

// benchMove starts three brokers, fills a 12-partition RF 2 topic on
// brokers 1 and 2, runs paced client traffic into a 3-partition RF 3 topic
// and, o.window into it, moves all 12 partitions to brokers 2 and 3 at
// once, then keeps the traffic going for o.window after the move is done.
func benchMove(o moveOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	syscall.Sync()
	ps, stop, err := startCluster(o.dir, "flotilla-bench-move")
	if err != nil {
		return err
	}
	defer stop()
	// Prefill, at most a minute of traffic before, the move, a minute of
	// slack, the window after.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+o.moveTimeout+2*o.window)
	defer cancel()
	var seeds, debugs []string
	var pids []int
	for _, p := range ps {
		seeds, debugs, pids = append(seeds, p.kafka), append(debugs, p.debug), append(pids, p.cmd.Process.Pid)
	}
	assignment := make([][]int32, movePartitions)
	for p := range assignment {
		assignment[p] = moveFrom
	}
	if err := createAssignedTopic(ctx, seeds[0], benchTopic, assignment); err != nil {
		return err
	}
	if err := createTopic(ctx, seeds[0], trafficTopic, trafficPartitions, 3); err != nil {
		return err
	}
	pool := newValuePool(benchPoolBytes)
	prefillTook, _, err := produceAll(ctx, seeds[0], produceOptions{records: o.prefill, inflight: trafficMaxInflight}, pool, func(string) {})
	if err != nil {
		return fmt.Errorf("prefill: %w", err)
	}

	admCl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	tr, err := startTraffic(ctx, seeds, o.rate, o.window+o.moveTimeout+o.window+time.Minute, pool)
	if err != nil {
		return err
	}
	defer tr.stop()
	var cpus []cpuSample
	sample := func() error {
		s, err := sampleCPU(pids...)
		cpus = append(cpus, s)
		return err
	}
	bounds := []time.Duration{trafficWarmup}
	// mark ends a window: its bound, and the CPU used up to it.
	mark := func() error {
		bounds = append(bounds, tr.elapsed())
		return sample()
	}
	if err := tr.waitUntil(ctx, bounds[0]); err != nil {
		return err
	}
	if err := sample(); err != nil {
		return err
	}
	if err := tr.waitUntil(ctx, bounds[0]+o.window); err != nil {
		return err
	}
	if err := mark(); err != nil {
		return err
	}
	peak, err := moveAll(ctx, adm, debugs, o.moveTimeout)
	if err != nil {
		return err
	}
	if err := mark(); err != nil {
		return err
	}
	if err := tr.waitUntil(ctx, bounds[2]+o.window); err != nil {
		return err
	}
	if err := mark(); err != nil {
		return err
	}
	acks, err := tr.stop()
	if err != nil {
		return fmt.Errorf("client traffic: %w", err)
	}
	if err := checkMoved(ctx, admCl); err != nil {
		return err
	}
	if err := checkTopic(ctx, seeds, o.prefill); err != nil {
		return fmt.Errorf("moved topic after the move: %w", err)
	}
	var use []cpuUse
	for i := 1; i < len(cpus); i++ {
		use = append(use, cpus[i].since(cpus[i-1]))
	}
	printMove(o, prefillTook, peak, windowStats(acks, bounds), use)
	return nil
}

// createAssignedTopic creates topic with the replicas of partition p on the
// brokers assignment[p] (CreateTopics with an explicit ReplicaAssignment,
// which kadm does not offer), retrying until the cluster accepts it, and
// waits until each partition is led by its first replica.
func createAssignedTopic(ctx context.Context, addr, topic string, assignment [][]int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, startupDeadline)
	defer cancel()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 5000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
	for p, replicas := range assignment {
		a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		a.Partition, a.Replicas = int32(p), replicas
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
	}
	req.Topics = append(req.Topics, rt)
	for { // bounded by ctx's deadline
		resp, err := req.RequestWith(ctx, cl)
		if err == nil {
			if len(resp.Topics) != 1 {
				err = fmt.Errorf("answered with %d topics", len(resp.Topics))
			} else {
				err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
			}
		}
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			break
		}
		if errors.Is(err, kerr.InvalidReplicaAssignment) || errors.Is(err, kerr.InvalidRequest) {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create topic %s: %w (last error: %v)", topic, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return waitLeaders(ctx, cl, topic, int32(len(assignment)), true)
}

// moveAll asks for every partition of the benchmark topic to move to
// moveTo in one AlterPartitionReassignments, then polls
// ListPartitionReassignments until none is listed, at most timeout. It
// returns the most partitions seen at once with a learner in their raft
// group (the moves under way, which the controller throttles: a move
// waiting its turn is listed too, with its old replicas) by the brokers
// whose debug endpoints are debugs.
func moveAll(ctx context.Context, adm *kadm.Client, debugs []string, timeout time.Duration) (peak int, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var req kadm.AlterPartitionAssignmentsReq
	for p := range movePartitions {
		req.Assign(benchTopic, int32(p), moveTo)
	}
	resp, err := adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("alter partition assignments: %w", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil {
			err = errors.Join(err, fmt.Errorf("move %s/%d: %w (%s)", r.Topic, r.Partition, r.Err, r.ErrMessage))
		}
	}
	if err != nil {
		return 0, err
	}
	topics := kadm.TopicsSet{}
	for p := range movePartitions {
		topics.Add(benchTopic, int32(p))
	}
	for { // bounded by ctx's deadline
		peak = max(peak, learning(debugs))
		listed, err := adm.ListPartitionReassignments(ctx, topics)
		if err == nil && len(listed.Sorted()) == 0 {
			return peak, nil
		}
		select {
		case <-ctx.Done():
			return peak, fmt.Errorf("reassignment not done: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(movePollInterval):
		}
	}
}

// learning returns how many partitions' raft groups have a learner, as
// the brokers whose debug endpoints are debugs see them (/debug/cluster);
// a broker that does not answer is left out.
func learning(debugs []string) int {
	hc := &http.Client{Timeout: movePollInterval}
	groups := map[uint64]bool{}
	for _, d := range debugs {
		resp, err := hc.Get("http://" + d + "/debug/cluster")
		if err != nil {
			continue
		}
		var v struct {
			Reassignments []struct {
				Group        uint64   `json:"group"`
				RaftLearners []uint64 `json:"raft_learners"`
			} `json:"reassignments"`
		}
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, r := range v.Reassignments {
			if len(r.RaftLearners) > 0 {
				groups[r.Group] = true
			}
		}
	}
	return len(groups)
}

// checkMoved checks that every partition of the moved topic is on moveTo,
// asking a broker (kadm's Metadata may answer from kgo's cache).
func checkMoved(ctx context.Context, cl *kgo.Client) error {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(benchTopic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("metadata after the move: %w", err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != movePartitions {
		return fmt.Errorf("metadata after the move: topic %s missing or with a partition missing", benchTopic)
	}
	want := slices.Sorted(slices.Values(moveTo))
	for _, p := range resp.Topics[0].Partitions {
		if got := slices.Sorted(slices.Values(p.Replicas)); !slices.Equal(got, want) {
			return fmt.Errorf("partition %d is on %v after the move, want %v", p.Partition, p.Replicas, moveTo)
		}
	}
	return nil
}

// trafficAck is one acknowledged record of the client traffic: when it was
// due to be sent and when its acknowledgement came, both since the start
// of the traffic.
type trafficAck struct{ sent, acked time.Duration }

// traffic is a producer sending 1 KiB records at a fixed rate with acks=all
// into the traffic topic. A record's latency runs from the moment the
// schedule says it is due, not from its Produce call: a producer held up
// by a full buffer does not hide the delay (coordinated omission).
type traffic struct {
	cl    *kgo.Client
	start time.Time
	done  chan struct{} // closed to stop sending
	sent  chan struct{} // closed when the sender has returned

	mu       sync.Mutex
	acks     []trafficAck
	failed   int
	firstErr error
}

// startTraffic sends rate records/s for at most limit.
func startTraffic(ctx context.Context, seeds []string, rate int, limit time.Duration, pool valuePool) (*traffic, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.DefaultProduceTopic(trafficTopic),
		kgo.MaxBufferedRecords(trafficMaxInflight),
	)
	if err != nil {
		return nil, fmt.Errorf("traffic producer: %w", err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("traffic producer ping: %w", err)
	}
	t := &traffic{cl: cl, start: time.Now(), done: make(chan struct{}), sent: make(chan struct{})}
	go t.send(ctx, rate, int(limit.Seconds()*float64(rate)), pool)
	return t, nil
}

func (t *traffic) send(ctx context.Context, rate, n int, pool valuePool) {
	defer close(t.sent)
	tick := time.NewTicker(trafficTick)
	defer tick.Stop()
	for i := 0; i < n; {
		select {
		case <-t.done:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := min(n, int(t.elapsed().Seconds()*float64(rate)))
		for ; i < due; i++ {
			sent := time.Duration(float64(i) / float64(rate) * float64(time.Second))
			t.cl.Produce(ctx, &kgo.Record{Value: pool.value(i)}, func(_ *kgo.Record, err error) {
				acked := t.elapsed()
				t.mu.Lock()
				defer t.mu.Unlock()
				if err != nil {
					t.failed++
					if t.firstErr == nil {
						t.firstErr = err
					}
					return
				}
				t.acks = append(t.acks, trafficAck{sent: sent, acked: acked})
			})
		}
	}
}

func (t *traffic) elapsed() time.Duration { return time.Since(t.start) }

// waitUntil waits until the traffic has run for d.
func (t *traffic) waitUntil(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d - t.elapsed()):
		return nil
	case <-t.sent:
		return errors.New("client traffic stopped early: its limit or the deadline was reached")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop stops sending, waits for the records sent to be acknowledged and
// returns their acknowledgements in the order they came. Later calls
// return nothing.
func (t *traffic) stop() ([]trafficAck, error) {
	if t.cl == nil {
		return nil, nil
	}
	defer func() { t.cl.Close(); t.cl = nil }()
	close(t.done)
	<-t.sent
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := t.cl.Flush(ctx); err != nil {
		return nil, fmt.Errorf("flush: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed > 0 {
		return nil, fmt.Errorf("%d records failed, the first with: %w", t.failed, t.firstErr)
	}
	return t.acks, nil
}

// windowStat is the client traffic in one window [from, to) of its run.
type windowStat struct {
	from, to time.Duration
	// acked is how many acknowledgements came in the window, and
	// worstSecond the fewest in any whole second of it (-1 if it is
	// shorter than a second).
	acked, worstSecond int
	// latencies are those of the records due to be sent in the window,
	// sorted.
	latencies []time.Duration
}

func (w windowStat) seconds() float64 { return (w.to - w.from).Seconds() }
func (w windowStat) rate() float64    { return float64(w.acked) / w.seconds() }

// windowStats splits acks into the windows between consecutive bounds:
// throughput by when the acknowledgements came, latency by when the
// records were due to be sent.
func windowStats(acks []trafficAck, bounds []time.Duration) []windowStat {
	var ws []windowStat
	for i := 1; i < len(bounds); i++ {
		w := windowStat{from: bounds[i-1], to: bounds[i], worstSecond: -1}
		perSecond := make([]int, int((w.to-w.from)/time.Second))
		for _, a := range acks {
			if a.acked >= w.from && a.acked < w.to {
				w.acked++
				if s := int((a.acked - w.from) / time.Second); s < len(perSecond) {
					perSecond[s]++
				}
			}
			if a.sent >= w.from && a.sent < w.to {
				w.latencies = append(w.latencies, a.acked-a.sent)
			}
		}
		if len(perSecond) > 0 {
			w.worstSecond = slices.Min(perSecond)
		}
		slices.Sort(w.latencies)
		ws = append(ws, w)
	}
	return ws
}

// printMove prints the windows' table as Markdown.
func printMove(o moveOptions, prefillTook time.Duration, peak int, ws []windowStat, use []cpuUse) {
	fmt.Printf("## Client traffic during reassignment: 3 brokers, %d partitions RF 2 moved from %v to %v\n\n", movePartitions, moveFrom, moveTo)
	fmt.Printf("Moved topic: %d × %d B records (%.0f MB) prefilled in %.1f s. "+
		"Client traffic: a kgo producer (acks=all, idempotent, linger 10 ms, at most %d records buffered) paced at %d records/s of %d B "+
		"into a topic of %d partitions RF 3 on the same brokers; latency from when a record was due to be sent to its ack. "+
		"Every partition's move asked for in one AlterPartitionReassignments; the move ends when ListPartitionReassignments lists none.\n\n",
		o.prefill, benchValueBytes, float64(o.prefill)*benchValueBytes/1e6, prefillTook.Seconds(),
		trafficMaxInflight, o.rate, benchValueBytes, trafficPartitions)
	fmt.Println("| window | seconds | rec/s acked | worst second | p50 | p99 | max | brokers' CPU (cores) | other (cores) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for i, w := range ws {
		name := []string{"before the move", "during the move", "after the move"}[min(i, 2)]
		var cpu cpuUse
		if i < len(use) {
			cpu = use[i]
		}
		fmt.Printf("| %s | %.1f | %.0f | %d | %s | %s | %s | %.2f | %.2f |\n", name, w.seconds(), w.rate(), w.worstSecond,
			usec(percentile(w.latencies, 50)), usec(percentile(w.latencies, 99)), usec(percentile(w.latencies, 100)), cpu.broker, cpu.other)
	}
	fmt.Println()
	if len(ws) > 1 {
		fmt.Printf("- The move of %d partitions (%.0f MB of segments copied to the added replicas in all) took %.1f s; at most %d partitions were seen with a learner in their raft group at once (the controller runs at most %d moves adding a replica to one broker at a time).\n",
			movePartitions, float64(o.prefill)*benchValueBytes/1e6, ws[1].seconds(), peak, controller.MaxMovesPerBroker)
	}
	for _, u := range use {
		if u.other > contendedCores {
			fmt.Printf("- Other processes kept more than %.2f cores busy in some window: the numbers are not clean.\n", contendedCores)
			break
		}
	}
	fmt.Println()
}
