package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla/flotilla/internal/testports"
)

// flotillaBin is the bin/flotilla built once for the whole package.
var flotillaBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flotilla-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	flotillaBin = filepath.Join(dir, "flotilla")
	args := []string{"build", "-o", flotillaBin}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/flotilla")...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build flotilla:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is one broker process of a test cluster.
type node struct {
	id                 uint64
	bin                string // the binary it runs; flotillaBin when empty
	dir                string
	config             string
	kafka, raft, debug string
	mu                 sync.Mutex
	cmd                *exec.Cmd
	log                *bytes.Buffer
	exited             chan struct{}
}

// newCluster writes configs for n brokers; it starts none of them.
func newCluster(t *testing.T, n int) []*node {
	t.Helper()
	return newClusterWith(t, n, "")
}

// newClusterWith is newCluster with extra settings in each broker's kafka
// section, e.g. "replica_lag_time_max_ms: 1000".
func newClusterWith(t *testing.T, n int, kafkaExtra string) []*node {
	t.Helper()
	// Every test that starts a broker comes here: -short skips them all,
	// as doc.go and make test-short promise, even one that forgets to.
	if testing.Short() {
		t.Skip("starts real processes")
	}
	base := t.TempDir()
	ports := testports.Free(t, 3*n)
	nodes := make([]*node, n)
	var peers strings.Builder
	for i := range nodes {
		nodes[i] = &node{
			id:    uint64(i + 1),
			dir:   filepath.Join(base, fmt.Sprintf("node%d", i+1)),
			kafka: fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			raft:  fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
			debug: fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]),
		}
		fmt.Fprintf(&peers, "  - {id: %d, addr: %q}\n", i+1, nodes[i].raft)
	}
	extra := ""
	if kafkaExtra != "" {
		extra = ", " + kafkaExtra
	}
	for _, nd := range nodes {
		nd.config = filepath.Join(base, fmt.Sprintf("node%d.yaml", nd.id))
		cfg := fmt.Sprintf(`node_id: %d
data_dir: %q
bootstrap: true
kafka: {listen: %q%s}
raft: {listen: %q}
debug: {listen: %q}
log: {level: info, format: json}
peers:
%s`, nd.id, nd.dir, nd.kafka, extra, nd.raft, nd.debug, peers.String())
		if err := os.WriteFile(nd.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.kill()
		}
		for _, nd := range nodes {
			if line := nd.bindFailure(); line != "" {
				t.Errorf("node %d could not bind a port (a clash with another process, not a broker bug): %s", nd.id, line)
			}
			if report := nd.dataRace(); report != "" {
				t.Errorf("node %d: the race detector reported a data race:\n%s", nd.id, report)
			}
		}
		if t.Failed() {
			for _, nd := range nodes {
				t.Logf("--- node %d log (tail) ---\n%s", nd.id, nd.tail(4000))
			}
		}
	})
	return nodes
}

func (nd *node) start(t *testing.T) {
	t.Helper()
	if err := nd.launch(); err != nil {
		t.Fatal(err)
	}
}

// launch is start for a goroutine other than the test's, which must not
// call t.Fatal.
func (nd *node) launch() error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.log == nil {
		nd.log = &bytes.Buffer{}
	}
	bin := nd.bin
	if bin == "" {
		bin = flotillaBin
	}
	cmd := exec.Command(bin, "--config", nd.config)
	w := &lockedWriter{mu: &nd.mu, b: nd.log}
	cmd.Stdout, cmd.Stderr = w, w
	// The broker dies with the test binary even when no cleanup runs (a
	// -timeout panic, os.Exit). Pdeathsig fires when the thread that forked
	// the broker exits, not the process; Go ends a thread only when a
	// goroutine exits locked to it, which no goroutine of this package does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start node %d: %w", nd.id, err)
	}
	nd.cmd = cmd
	nd.exited = make(chan struct{})
	done := nd.exited
	go func() { _ = cmd.Wait(); close(done) }()
	return nil
}

// bindFailure returns the log line of the node's failure to bind one of
// its ports, or "" if there is none.
func (nd *node) bindFailure() string {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.log == nil {
		return ""
	}
	for line := range strings.Lines(nd.log.String()) {
		if strings.Contains(line, "address already in use") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// dataRace returns the first data race report in the node's output (a
// -race build prints it to stderr and goes on), or "" if there is none.
func (nd *node) dataRace() string {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.log == nil {
		return ""
	}
	s := nd.log.String()
	i := strings.Index(s, "WARNING: DATA RACE")
	if i < 0 {
		return ""
	}
	s = s[i:]
	if end := strings.Index(s, "\n==================\n"); end >= 0 {
		s = s[:end+1]
	}
	return s
}

// checkStarted fails the test at once if one of nodes exited because it
// could not bind a port, instead of letting a wait for it time out.
func checkStarted(t *testing.T, nodes ...*node) {
	t.Helper()
	for _, nd := range nodes {
		if nd.running() {
			continue
		}
		if line := nd.bindFailure(); line != "" {
			t.Fatalf("node %d could not bind a port (a clash with another process, not a broker bug): %s", nd.id, line)
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (nd *node) kill() {
	nd.signal(syscall.SIGKILL)
	nd.wait(10 * time.Second)
}

func (nd *node) signal(sig syscall.Signal) {
	nd.mu.Lock()
	cmd := nd.cmd
	nd.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// wait waits for the process to exit and returns its exit code (-1 if it
// did not exit in time).
func (nd *node) wait(d time.Duration) int {
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.exited
	nd.mu.Unlock()
	if cmd == nil {
		return 0
	}
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

// running reports whether the node's process has been started and has not
// exited. (wait's -1 cannot tell: a process killed by a signal has no exit
// code either.)
func (nd *node) running() bool {
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.exited
	nd.mu.Unlock()
	if cmd == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func (nd *node) tail(n int) string {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.log == nil {
		return ""
	}
	s := nd.log.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// raftStatus is the part of /debug/raft the tests read.
type raftStatus struct {
	NodeID uint64 `json:"node_id"`
	Groups []struct {
		Name     string `json:"name"`
		Role     string `json:"role"`
		Term     uint64 `json:"term"`
		Vote     uint64 `json:"vote"`
		Leader   uint64 `json:"leader"`
		Commit   uint64 `json:"commit"`
		Applied  uint64 `json:"applied"`
		Progress map[string]struct {
			Match uint64 `json:"match"`
			Next  uint64 `json:"next"`
			State string `json:"state"`
		} `json:"progress"`
	} `json:"groups"`
}

// httpClient is for the debug endpoints. Its timeout is generous: one
// slow answer on a loaded machine must not fail a test, and a request in a
// poll is retried anyway (a stopped broker refuses at once).
var httpClient = &http.Client{Timeout: 5 * time.Second}

func getJSON(url string, v any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// controller returns the node's view of the controller group, or ok=false
// when the node does not answer.
func (nd *node) controller() (role string, term, leader, commit, applied uint64, ok bool) {
	var st raftStatus
	if err := getJSON("http://"+nd.debug+"/debug/raft", &st); err != nil {
		return "", 0, 0, 0, 0, false
	}
	for _, g := range st.Groups {
		if g.Name == "controller" {
			return g.Role, g.Term, g.Leader, g.Commit, g.Applied, true
		}
	}
	return "", 0, 0, 0, 0, false
}

// waitFor polls f every 10ms until it reports done or d passes.
func waitFor(t *testing.T, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if f() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, d)
	return 0
}

// agreedLeader returns the leader every live node in nodes agrees on, with
// the leader itself reporting the leader role; 0 if there is none yet.
func agreedLeader(nodes []*node) uint64 {
	leader, _ := agreedLeaderTerm(nodes)
	return leader
}

// agreedLeaderTerm is agreedLeader with the term every node of nodes
// reports; 0, 0 if they do not all agree on both.
func agreedLeaderTerm(nodes []*node) (leader, term uint64) {
	for _, nd := range nodes {
		role, tm, l, _, _, ok := nd.controller()
		if !ok || l == 0 || (leader != 0 && (l != leader || tm != term)) {
			return 0, 0
		}
		leader, term = l, tm
		if nd.id == l && role != "leader" {
			return 0, 0
		}
	}
	return leader, term
}

// waitLeader waits until nodes agree on a controller leader among them and
// returns it, failing at once if one of them could not bind its ports.
func waitLeader(t *testing.T, d time.Duration, nodes []*node) *node {
	t.Helper()
	var leader *node
	waitFor(t, d, "controller election", func() bool {
		checkStarted(t, nodes...)
		leader = nodeByID(nodes, agreedLeader(nodes))
		return leader != nil
	})
	return leader
}

// nodeByID returns the node of nodes with the given id, or nil (for id 0:
// no leader).
func nodeByID(nodes []*node, id uint64) *node {
	for _, nd := range nodes {
		if nd.id == id {
			return nd
		}
	}
	return nil
}

// TestPortClashReported: a broker that cannot bind its port exits, and the
// harness names the clash (bindFailure, which checkStarted and the
// cluster's cleanup report) instead of leaving a wait to time out.
func TestPortClashReported(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := newCluster(t, 1)[0]
	ln, err := net.Listen("tcp", nd.kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if line := nd.bindFailure(); line != "" {
		t.Fatalf("bind failure before the start: %s", line)
	}
	nd.start(t)
	if code := nd.wait(15 * time.Second); code != 1 {
		t.Fatalf("broker with its Kafka port taken: exit %d, want 1\n%s", code, nd.tail(2000))
	}
	line := nd.bindFailure()
	if !strings.Contains(line, nd.kafka) {
		t.Fatalf("bind failure line %q does not name the Kafka port %s; log:\n%s", line, nd.kafka, nd.tail(2000))
	}
	t.Logf("reported: %s", line)
	// The clash was made on purpose: the cleanup must not report it.
	nd.mu.Lock()
	nd.log.Reset()
	nd.mu.Unlock()
}

// TestDataRaceFound: the cleanup's check finds a race detector report in a
// broker's output and cuts it at the report's end.
func TestDataRaceFound(t *testing.T) {
	report := "WARNING: DATA RACE\nWrite at 0x00c000 by goroutine 7:\n  main.main()\n"
	tests := []struct {
		name, log, want string
	}{
		{"none", `{"level":"info","message":"started"}` + "\n", ""},
		{"report", "{}\n==================\n" + report + "==================\n{}\n", report},
		{"cut off", "==================\n" + report, report},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nd := &node{log: bytes.NewBufferString(tt.log)}
			if got := nd.dataRace(); got != tt.want {
				t.Fatalf("dataRace() = %q, want %q", got, tt.want)
			}
		})
	}
}
