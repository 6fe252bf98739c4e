package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const electionRounds = 20

// proc is one bin/flotilla process of the election benchmark.
type proc struct {
	id     int
	config string
	kafka  string
	debug  string
	cmd    *exec.Cmd
}

func (p *proc) start() error {
	p.cmd = exec.Command("bin/flotilla", "--config", p.config)
	return p.cmd.Start()
}

func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

var client = &http.Client{Timeout: 200 * time.Millisecond}

// leaderOf returns the controller leader p reports and p's own role.
func (p *proc) leaderOf() (leader uint64, role string) {
	groups, err := raftGroups(client, p.debug)
	if err != nil {
		return 0, ""
	}
	for _, g := range groups {
		if g.Name == "controller" {
			return g.Leader, g.Role
		}
	}
	return 0, ""
}

// raftGroup is one Raft group as a broker's /debug/raft shows it.
type raftGroup struct {
	Name, Role   string
	Term, Leader uint64
}

// raftGroups returns the Raft groups of the broker whose debug endpoint is
// at debug.
func raftGroups(hc *http.Client, debug string) ([]raftGroup, error) {
	resp, err := hc.Get("http://" + debug + "/debug/raft")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/debug/raft: %s", debug, resp.Status)
	}
	var st struct{ Groups []raftGroup }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("%s/debug/raft: %w", debug, err)
	}
	return st.Groups, nil
}

// agreed returns the leader all of ps agree on (the leader itself in the
// leader role), or 0.
func agreed(ps []*proc) uint64 {
	var l uint64
	for _, p := range ps {
		got, role := p.leaderOf()
		if got == 0 || (l != 0 && got != l) || (uint64(p.id) == got && role != "leader") {
			return 0
		}
		l = got
	}
	return l
}

func waitAgreed(ps []*proc, d time.Duration, not uint64) (uint64, time.Duration, error) {
	start := time.Now()
	for time.Since(start) < d {
		if l := agreed(ps); l != 0 && l != not {
			return l, time.Since(start), nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, 0, fmt.Errorf("no agreed leader within %v", d)
}

func freeLoopbackPorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// newProcs writes the configs of a fresh three-broker cluster under dir.
func newProcs(dir string) ([]*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := freeLoopbackPorts(9)
	if err != nil {
		return nil, err
	}
	var peers strings.Builder
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&peers, "  - {id: %d, addr: \"127.0.0.1:%d\"}\n", i+1, ports[3*i+1])
	}
	var ps []*proc
	for i := 0; i < 3; i++ {
		p := &proc{id: i + 1, config: filepath.Join(dir, fmt.Sprintf("node%d.yaml", i+1)),
			kafka: fmt.Sprintf("127.0.0.1:%d", ports[3*i]), debug: fmt.Sprintf("127.0.0.1:%d", ports[3*i+2])}
		cfg := fmt.Sprintf("node_id: %d\ndata_dir: %q\nkafka: {listen: \"127.0.0.1:%d\"}\nraft: {listen: \"127.0.0.1:%d\"}\ndebug: {listen: %q}\nlog: {level: warn, format: json}\npeers:\n%s",
			i+1, filepath.Join(dir, fmt.Sprintf("node%d", i+1)), ports[3*i], ports[3*i+1], p.debug, peers.String())
		if err := os.WriteFile(p.config, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// startProcs starts a fresh three-broker cluster under dir; stop kills it.
func startProcs(dir string) (ps []*proc, stop func(), err error) {
	if ps, err = newProcs(dir); err != nil {
		return nil, nil, err
	}
	stop = func() {
		for _, p := range ps {
			p.kill()
		}
	}
	for _, p := range ps {
		if err := p.start(); err != nil {
			stop()
			return nil, nil, err
		}
	}
	return ps, stop, nil
}

// startCluster starts a fresh three-broker cluster of bin/flotilla in a new
// temporary directory under parent ("" for the system's), named after
// name, and waits until its brokers agree on a controller leader. stop
// kills the brokers and removes the directory.
func startCluster(parent, name string) (ps []*proc, stop func(), err error) {
	if _, err := os.Stat("bin/flotilla"); err != nil {
		return nil, nil, fmt.Errorf("bin/flotilla not built (run make build): %w", err)
	}
	base, err := os.MkdirTemp(parent, name)
	if err != nil {
		return nil, nil, fmt.Errorf("temp dir: %w", err)
	}
	ps, kill, err := startProcs(base)
	if err != nil {
		os.RemoveAll(base)
		return nil, nil, err
	}
	stop = func() {
		kill()
		os.RemoveAll(base)
	}
	if _, _, err := waitAgreed(ps, 10*time.Second, 0); err != nil {
		stop()
		return nil, nil, err
	}
	if err := waitRegistered(ps, startupDeadline); err != nil {
		stop()
		return nil, nil, err
	}
	return ps, stop, nil
}

// waitRegistered waits until Metadata from the first broker lists every
// broker of ps: a broker registers once its raft groups run, which a new
// one starts only once its peers have answered it, and a topic created
// before then gets fewer replicas or is refused.
func waitRegistered(ps []*proc, d time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(ps[0].kafka))
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for { // bounded by ctx's deadline
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
		if err == nil && len(resp.Brokers) == len(ps) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not every broker registered within %v (last: %v)", d, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// benchElection measures, with real bin/flotilla processes, the time from
// the start of the last of three brokers to an agreed controller leader
// (cold start, fresh data dirs), and from the SIGKILL of the leader to a
// new agreed leader among the other two.
func benchElection() error {
	if _, err := os.Stat("bin/flotilla"); err != nil {
		return fmt.Errorf("bin/flotilla not built (run make build): %w", err)
	}
	base, err := os.MkdirTemp("", "flotilla-bench-election")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)

	var cold, kill []time.Duration
	for r := 0; r < electionRounds; r++ {
		ps, err := newProcs(filepath.Join(base, fmt.Sprintf("cold%d", r)))
		if err != nil {
			return err
		}
		for _, p := range ps {
			if err := p.start(); err != nil {
				return err
			}
		}
		_, took, err := waitAgreed(ps, 10*time.Second, 0)
		for _, p := range ps {
			p.kill()
		}
		if err != nil {
			return fmt.Errorf("cold start %d: %w", r, err)
		}
		cold = append(cold, took)
	}

	ps, stop, err := startProcs(filepath.Join(base, "kills"))
	if err != nil {
		return err
	}
	defer stop()
	for r := 0; r < electionRounds; r++ {
		leader, _, err := waitAgreed(ps, 10*time.Second, 0)
		if err != nil {
			return fmt.Errorf("kill round %d: %w", r, err)
		}
		victim := ps[leader-1]
		var rest []*proc
		for _, p := range ps {
			if p != victim {
				rest = append(rest, p)
			}
		}
		victim.kill()
		_, took, err := waitAgreed(rest, 10*time.Second, leader)
		if err != nil {
			return fmt.Errorf("kill round %d: %w", r, err)
		}
		kill = append(kill, took)
		if err := victim.start(); err != nil {
			return err
		}
		// Let the restarted broker rejoin before the next kill, so each
		// round starts from three healthy brokers.
		if _, _, err := waitAgreed(ps, 10*time.Second, 0); err != nil {
			return fmt.Errorf("kill round %d rejoin: %w", r, err)
		}
	}
	fmt.Println("## Controller election (3 bin/flotilla processes on loopback, tick 50 ms, election 10 ticks)")
	fmt.Println()
	fmt.Println("| event | rounds | median | p99 | max |")
	fmt.Println("|---|---|---|---|---|")
	fmt.Printf("| cold start: last broker started → agreed leader | %d | %s | %s | %s |\n", len(cold), ms(percentile(cold, 50)), ms(percentile(cold, 99)), ms(percentile(cold, 100)))
	fmt.Printf("| SIGKILL of the leader → new agreed leader | %d | %s | %s | %s |\n\n", len(kill), ms(percentile(kill, 50)), ms(percentile(kill, 99)), ms(percentile(kill, 100)))
	return nil
}
