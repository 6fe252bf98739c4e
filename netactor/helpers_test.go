package netactor

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/raftactor"
)

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// node is one broker's transport in a test: its own actor system, router,
// metrics and (once listening) listener.
type node struct {
	t        testing.TB
	id       uint64
	sys      *actors.System
	router   *Router
	reg      *prometheus.Registry
	metrics  *Metrics
	listener *actor.PID
	addr     string
	accepts  *atomic.Int32
	logs     *syncBuffer
	liveness *Liveness   // handed to the Listener; set before listen
	leaders  LeaderBoard // handed to the Listener; set before listen
	// idleTimeout is the Listener's IdleTimeout; set before listen.
	idleTimeout time.Duration
	// maxFrame and maxSnapshot are the Listener's MaxFrameBytes (8 MiB
	// when 0) and MaxSnapshotBytes (its default when 0); set before listen.
	maxFrame, maxSnapshot int
	// holdTimeout and peerAddr are the Listener's HoldTimeout and
	// PeerAddr; set before listen.
	holdTimeout time.Duration
	peerAddr    func(uint64) string
}

// syncBuffer collects a node's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newNode(t testing.TB, id uint64) *node {
	n := &node{t: t, id: id, sys: actors.NewSystem(zerolog.Nop()), router: NewRouter(), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	n.metrics = NewMetrics(n.reg)
	t.Cleanup(n.sys.Shutdown)
	return n
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// listen starts the node's Listener on addr ("127.0.0.1:0" for any port).
func (n *node) listen(addr string) {
	n.t.Helper()
	ln, err := Listen(addr)
	if err != nil {
		n.t.Fatal(err)
	}
	n.addr = ln.Addr().String()
	n.accepts = &atomic.Int32{}
	maxFrame := n.maxFrame
	if maxFrame == 0 {
		maxFrame = 8 << 20
	}
	pid, err := StartListener(n.sys, countingListener{ln, n.accepts}, ListenerOptions{
		Self: n.id, MaxFrameBytes: maxFrame, MaxSnapshotBytes: n.maxSnapshot, IdleTimeout: n.idleTimeout,
		Router: n.router, Metrics: n.metrics, Liveness: n.liveness, Leaders: n.leaders,
		HoldTimeout: n.holdTimeout, PeerAddr: n.peerAddr, Log: zerolog.New(n.logs),
	})
	if err != nil {
		n.t.Fatal(err)
	}
	n.listener = pid
	n.t.Cleanup(func() { n.sys.Root.Stop(pid) })
}

// stopListener stops the Listener and waits until its port refuses.
func (n *node) stopListener() {
	n.t.Helper()
	// Waits for the actor to be gone, not only its socket: the socket
	// closes while it stops, its name ("raft/listener") is free only
	// once it has, and a listen right after needs the name.
	if err := n.sys.Root.StopFuture(n.listener).Wait(); err != nil {
		n.t.Fatalf("stop listener: %v", err)
	}
	waitFor(n.t, 5*time.Second, "listener to close", func() bool {
		c, err := net.DialTimeout("tcp", n.addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
}

func (n *node) peers(peers map[uint64]string, opts SenderOptions) *Peers {
	n.t.Helper()
	opts.Metrics = n.metrics
	opts.Log = zerolog.New(n.logs)
	if opts.BackoffMax == 0 {
		opts.BackoffMin, opts.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
	}
	p, err := StartPeers(n.sys, n.id, peers, n.router, opts)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(p.Stop)
	return p
}

// group spawns a recorder standing in for the raft actor of a group.
func (n *node) group(id uint64) *recorder {
	n.t.Helper()
	r := &recorder{}
	pid, err := n.sys.Spawn("test", "group/"+strconv.FormatUint(id, 10), func() actor.Actor { return r })
	if err != nil {
		n.t.Fatal(err)
	}
	n.router.Set(id, pid)
	n.t.Cleanup(func() { n.sys.Root.Stop(pid) })
	return r
}

func (n *node) metric(name, label, value string) float64 {
	n.t.Helper()
	families, err := n.reg.Gather()
	if err != nil {
		n.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// recorder is a stand-in group actor that records what the transport tells it.
type recorder struct {
	mu          sync.Mutex
	msgs        []*pb.Message
	unreachable []uint64
	snaps       []raftactor.SnapshotStatus
	control     []ControlReceived
	probes      int
}

func (r *recorder) Receive(ctx actor.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch m := ctx.Message().(type) {
	case *raftactor.Step:
		for _, m := range m.Msgs {
			if bytes.Equal(m.Context, probe) {
				r.probes++
				continue
			}
			r.msgs = append(r.msgs, m)
		}
	case *raftactor.Unreachable:
		r.unreachable = append(r.unreachable, m.To)
	case *raftactor.SnapshotStatus:
		r.snaps = append(r.snaps, *m)
	case *ControlReceived:
		r.control = append(r.control, *m)
	}
}

func (r *recorder) controls() []ControlReceived {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ControlReceived(nil), r.control...)
}

func (r *recorder) received() []*pb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*pb.Message(nil), r.msgs...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *recorder) probeCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.probes
}

func (r *recorder) unreachableCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.unreachable)
}

func (r *recorder) unreachableTo(peer uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, to := range r.unreachable {
		if to == peer {
			n++
		}
	}
	return n
}

func (r *recorder) snapStatuses() []raftactor.SnapshotStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]raftactor.SnapshotStatus(nil), r.snaps...)
}

// probe marks the heartbeats connect sends; recorders keep them apart.
var probe = []byte("probe")

// connect sends probes from group through p until one reaches dst: messages
// sent before the sender is connected are dropped by design, so a test must
// know the connection is up.
func connect(t testing.TB, root actor.SenderContext, p *Peers, group uint64, to uint64, dst *recorder) {
	t.Helper()
	before := dst.probeCount()
	waitFor(t, 10*time.Second, "connection to the peer", func() bool {
		m := msg(pb.MessageType_MsgHeartbeat, to, 1, 0)
		m.Context = probe
		p.Send(root, group, []*pb.Message{m})
		deadline := time.Now().Add(20 * time.Millisecond)
		for time.Now().Before(deadline) {
			if dst.probeCount() > before {
				return true
			}
			time.Sleep(time.Millisecond)
		}
		return false
	})
}
