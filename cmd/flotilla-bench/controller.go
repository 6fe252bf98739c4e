package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors/broker"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/raftactor"
)

// Controller benchmark parameters: a bounded run, with a window of
// proposals in flight so that group commit has something to group.
const (
	controllerProposals = 20000
	controllerWindow    = 256
	controllerEntry     = 1024
	controllerDeadline  = 2 * time.Minute
)

// benchController runs three brokers in this process over real TCP on
// loopback, each with its own WAL (fsync on), and proposes 1 KiB controller
// commands at the leader, measuring proposals applied per second on the
// leader and each proposal's latency from Propose to applied.
func benchController() error {
	base, err := os.MkdirTemp("", "flotilla-bench-controller")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)
	brokers, err := startInProcess(base, 3)
	if err != nil {
		return err
	}
	defer func() {
		for _, b := range brokers {
			b.Stop()
		}
	}()
	leader, err := waitLeader(brokers, 10*time.Second)
	if err != nil {
		return err
	}

	value := strings.Repeat("x", controllerEntry-64) // the JSON around it fills the rest of the KiB
	done := make(chan result, controllerWindow)
	sys := leader.Actors()
	var sent sync.Map // id → time sent
	collector, err := sys.Spawn("bench", "bench/proposer", func() actor.Actor {
		return actor.ReceiveFunc(func(ctx actor.Context) {
			if p, ok := ctx.Message().(*raftactor.Proposed); ok {
				at, _ := sent.LoadAndDelete(p.ID)
				done <- result{err: p.Err, latency: time.Since(at.(time.Time))}
			}
		})
	})
	if err != nil {
		return err
	}
	propose := func(i int) {
		cmd := &controller.Command{SetConfig: &controller.SetConfig{Key: fmt.Sprintf("bench.%d", i%100), Value: fmt.Sprintf("%06d%s", i, value)}}
		sent.Store(uint64(i), time.Now())
		sys.Root.Send(leader.RaftGroup(), &raftactor.Propose{ID: uint64(i), Data: cmd.Encode(), ReplyTo: collector})
	}

	start := time.Now()
	next, completed, failed := 0, 0, 0
	var lat []time.Duration
	for ; next < controllerWindow; next++ {
		propose(next)
	}
	deadline := time.After(controllerDeadline)
	for completed < controllerProposals {
		select {
		case r := <-done:
			completed++
			if r.err != nil {
				failed++
			} else {
				lat = append(lat, r.latency)
			}
			if next < controllerProposals {
				propose(next)
				next++
			}
		case <-deadline:
			return fmt.Errorf("controller bench: only %d of %d proposals done in %v", completed, controllerProposals, controllerDeadline)
		}
	}
	elapsed := time.Since(start)
	rate := float64(completed-failed) / elapsed.Seconds()
	fmt.Println("## Controller proposals (3 brokers in one process, real TCP on loopback, WAL fsync on)")
	fmt.Println()
	fmt.Println("| proposals | entry | in flight | proposals/s | MB/s | p50 | p99 | p99.9 | failed |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	fmt.Printf("| %d | %d B | %d | %.0f | %.1f | %s | %s | %s | %d |\n\n", completed, controllerEntry, controllerWindow, rate,
		rate*controllerEntry/1e6, usec(percentile(lat, 50)), usec(percentile(lat, 99)), usec(percentile(lat, 99.9)), failed)
	return nil
}

type result struct {
	err     error
	latency time.Duration
}

func usec(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// startInProcess starts n brokers on loopback ports chosen by the kernel.
func startInProcess(base string, n int) ([]*broker.Broker, error) {
	lns := make([]net.Listener, n)
	peers := make([]configs.Peer, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns[i] = ln
		peers[i] = configs.Peer{ID: uint64(i + 1), Addr: ln.Addr().String()}
	}
	// The brokers start at once: each waits for a majority of the others
	// to say that they know no cluster it belongs to.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := make([]*broker.Broker, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range lns {
		cfg := configs.Default()
		cfg.NodeID = uint64(i + 1)
		cfg.DataDir = fmt.Sprintf("%s/node%d", base, i+1)
		cfg.Raft.Listen = peers[i].Addr
		cfg.Kafka.Listen = fmt.Sprintf("127.0.0.1:%d", 30000+i) // advertised only: nothing listens yet
		cfg.Debug.Listen = ""
		cfg.Peers = peers
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		wg.Go(func() {
			out[i], errs[i] = broker.Start(ctx, broker.Options{Config: &cfg, Log: zerolog.Nop(), RaftListener: lns[i]})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, b := range out {
			if b != nil {
				b.Stop()
			}
		}
		return nil, err
	}
	return out, nil
}

func waitLeader(brokers []*broker.Broker, d time.Duration) (*broker.Broker, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, b := range brokers {
			if st := b.Board().Get(controller.ControllerGroup); st != nil && st.Role == "leader" {
				return b, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil, fmt.Errorf("no controller leader within %v", d)
}
