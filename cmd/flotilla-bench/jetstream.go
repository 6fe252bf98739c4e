package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream side of the replicated benchmark: one file-storage stream
// with three replicas, its subjects standing in for the partitions.
const (
	natsStream  = "BENCH"
	natsCluster = "flotilla-bench"
)

// natsSubject is the subject record i is published to: the records go
// round-robin over one subject per partition.
func natsSubject(i int) string { return fmt.Sprintf("bench.%d", i%replicatedPartitions) }

// serveNATS is the nats-server subcommand: it runs one clustered
// nats-server with JetStream on loopback, prints its client URL as the
// first line of stdout, and serves until stdin is closed or it gets SIGINT
// or SIGTERM. The replicated benchmark runs three of them as child
// processes, so each server, like each bin/flotilla, has a process of its
// own.
func serveNATS(args []string) error {
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	name := fs.String("name", "", "server name, unique in the cluster")
	store := fs.String("store", "", "JetStream storage directory")
	clusterPort := fs.Int("cluster-port", 0, "loopback port the other servers connect to")
	routes := fs.String("routes", "", "comma-separated nats-route:// URLs of the other servers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || *store == "" || *clusterPort == 0 {
		return errors.New("-name, -store and -cluster-port are required")
	}
	opts := &server.Options{
		ServerName: *name,
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		NoSigs:     true, // serveUntilQuit handles them
		JetStream:  true,
		StoreDir:   *store,
		// What the config file's `jetstream { sync_interval: always }`
		// sets (server/opts.go): the stream's Raft log is fsynced on every
		// write, before the leader counts the entry and acknowledges the
		// publish, like flotilla's WAL. (With more than one replica the
		// stream's own message blocks are synced at snapshots instead:
		// they are rebuilt from the Raft log after a crash.)
		SyncAlways: true,
		Cluster:    server.ClusterOpts{Name: natsCluster, Host: "127.0.0.1", Port: *clusterPort},
		Routes:     server.RoutesFromStr(*routes),
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats-server %s: %w", *name, err)
	}
	s.ConfigureLogger()
	s.Start()
	defer s.WaitForShutdown()
	defer s.Shutdown()
	if !s.ReadyForConnections(startupDeadline) {
		return fmt.Errorf("nats-server %s: not ready for connections within %v", *name, startupDeadline)
	}
	return serveUntilQuit(s.ClientURL())
}

// natsServer is one `flotilla-bench nats-server` child process.
type natsServer struct {
	name, url string
	pid       int
	log       string
	describe  func() string // how it exited, "" while it runs
	stop      func()
}

// startNATSCluster starts three nats-server child processes clustered on
// loopback, with their storage and logs under dir. stop ends them all; it
// is also called here on error.
func startNATSCluster(dir string) (servers []*natsServer, stop func(), err error) {
	ports, err := freeLoopbackPorts(replicatedBrokers)
	if err != nil {
		return nil, nil, fmt.Errorf("free ports: %w", err)
	}
	stop = func() {
		for _, s := range servers {
			s.stop()
		}
	}
	for i := range replicatedBrokers {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		logPath := filepath.Join(dir, name+".log")
		logFile, err := os.Create(logPath)
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("create nats-server log: %w", err)
		}
		c, url, stopOne, err := startSelf(logFile, "nats-server", "-name", name, "-store", filepath.Join(dir, name),
			"-cluster-port", fmt.Sprint(ports[i]), "-routes", strings.Join(routes, ","))
		logFile.Close() // the child has its own descriptor
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("%w; the end of its log:\n%s", err, tailFile(logPath, logTailBytes))
		}
		servers = append(servers, &natsServer{name: name, url: url, pid: c.pid(), log: logPath, describe: c.describeExit, stop: stopOne})
	}
	return servers, stop, nil
}

// natsFailure describes the servers that exited, with the end of their logs.
func natsFailure(servers []*natsServer) string {
	var b strings.Builder
	for _, s := range servers {
		if d := s.describe(); d != "" {
			fmt.Fprintf(&b, "%s: %s; the end of its log:\n%s\n", s.name, d, tailFile(s.log, logTailBytes))
		}
	}
	return b.String()
}

// createStream creates the benchmark stream (file storage, three
// replicas, the subjects of natsSubject), retrying until the cluster's
// JetStream is up, waits until its leader has both followers current, and
// returns the client URL of the leader.
func createStream(ctx context.Context, servers []*natsServer) (string, error) {
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.url)
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Name("flotilla-bench admin"))
	if err != nil {
		return "", fmt.Errorf("connect to nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", fmt.Errorf("jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, startupDeadline)
	defer cancel()
	cfg := jetstream.StreamConfig{Name: natsStream, Subjects: []string{"bench.*"}, Storage: jetstream.FileStorage, Replicas: replicatedBrokers}
	for { // bounded by ctx's deadline
		// A request sent before the cluster has a meta leader may go
		// unanswered: each attempt gets a short deadline of its own.
		url, err := tryCreateStream(ctx, js, cfg, servers)
		if err == nil && url != "" {
			return url, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("stream %s: not created with a leader and current followers: %w (last error: %v)", natsStream, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tryCreateStream creates the stream (or finds it created) and returns
// its leader's URL if it is ready, "" if not yet.
func tryCreateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, servers []*natsServer) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, cfg)
	if err != nil {
		return "", err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return "", err
	}
	url, _ := streamReady(info, servers)
	return url, nil
}

// streamReady returns the leader's URL once the stream has a leader and
// every follower is current.
func streamReady(info *jetstream.StreamInfo, servers []*natsServer) (string, bool) {
	c := info.Cluster
	if c == nil || c.Leader == "" || len(c.Replicas) != len(servers)-1 {
		return "", false
	}
	for _, r := range c.Replicas {
		if !r.Current || r.Offline {
			return "", false
		}
	}
	for _, s := range servers {
		if s.name == c.Leader {
			return s.url, true
		}
	}
	return "", false
}

// publishAll publishes o.records records to the stream through the server
// at url with asynchronous publishes, at most o.inflight unacknowledged,
// the JetStream counterpart of produceAll's window. It returns the time
// until the last acknowledgement and each record's latency, from the
// publish call (time blocked waiting for window space included) to its
// acknowledgement. start is called as the timing starts.
func publishAll(ctx context.Context, url string, o produceOptions, pool valuePool, start func()) (time.Duration, []time.Duration, error) {
	nc, err := nats.Connect(url, nats.Name("flotilla-bench publisher"))
	if err != nil {
		return 0, nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	defer nc.Close()

	lat := make([]time.Duration, o.records)
	at := make([]time.Time, o.records)
	var mu sync.Mutex
	pending := make(map[*nats.Msg]int, o.inflight) // message → record index
	var failed int
	var firstErr error
	done := func(m *nats.Msg, err error) {
		mu.Lock()
		defer mu.Unlock()
		i, ok := pending[m]
		if !ok {
			return
		}
		delete(pending, m)
		lat[i] = time.Since(at[i])
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(o.inflight),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) { done(m, nil) }),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { done(m, err) }),
	)
	if err != nil {
		return 0, nil, fmt.Errorf("jetstream: %w", err)
	}
	subjects := make([]string, replicatedPartitions)
	for i := range subjects {
		subjects[i] = natsSubject(i)
	}
	// A window that stays full for this long means the cluster stopped
	// acknowledging: fail rather than wait for the deadline.
	stall := jetstream.WithStallWait(30 * time.Second)

	start()
	t0 := time.Now()
	for i := range o.records {
		if err := ctx.Err(); err != nil {
			return 0, nil, fmt.Errorf("published %d of %d records: %w", i, o.records, context.Cause(ctx))
		}
		m := &nats.Msg{Subject: subjects[i%len(subjects)], Data: pool.value(i)}
		mu.Lock()
		at[i] = time.Now()
		pending[m] = i
		mu.Unlock()
		if _, err := js.PublishMsgAsync(m, stall); err != nil {
			return 0, nil, fmt.Errorf("publish record %d: %w", i, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("waiting for %d acknowledgements: %w", js.PublishAsyncPending(), context.Cause(ctx))
	}
	took := time.Since(t0)
	mu.Lock()
	defer mu.Unlock()
	if failed > 0 {
		return 0, nil, fmt.Errorf("%d of %d records failed, the first with: %w", failed, o.records, firstErr)
	}
	if len(pending) > 0 {
		return 0, nil, fmt.Errorf("%d records were never acknowledged", len(pending))
	}
	return took, lat, nil
}

// checkStream checks that the stream holds n messages of
// benchValueBytes each.
func checkStream(ctx context.Context, url string, n int) error {
	nc, err := nats.Connect(url, nats.Name("flotilla-bench check"))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	stream, err := js.Stream(ctx, natsStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", natsStream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s info: %w", natsStream, err)
	}
	if info.State.Msgs != uint64(n) {
		return fmt.Errorf("stream %s holds %d messages, published %d", natsStream, info.State.Msgs, n)
	}
	return nil
}
