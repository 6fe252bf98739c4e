package broker

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/netactor"
)

// oneWayCuts blackholes, at the TCP level, the frames one broker sends to
// another after its hello: the receiver's reads block and nothing closes,
// as a one-way packet loss looks to the receiver until TCP gives up.
type oneWayCuts struct {
	mu  sync.Mutex
	cut map[[2]uint64]bool // from, to
}

func (c *oneWayCuts) set(from, to uint64, v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut == nil {
		c.cut = map[[2]uint64]bool{}
	}
	c.cut[[2]uint64{from, to}] = v
}

func (c *oneWayCuts) is(from, to uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut[[2]uint64{from, to}]
}

// listener wraps broker self's raft listener.
func (c *oneWayCuts) listener(self uint64, ln net.Listener) net.Listener {
	return &cutListener{Listener: ln, cuts: c, self: self}
}

type cutListener struct {
	net.Listener
	cuts *oneWayCuts
	self uint64
}

func (l *cutListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &cutConn{Conn: c, l: l}, nil
}

// cutConn reads the hello to learn the sender, then holds every read
// while the sender's frames to this broker are cut.
type cutConn struct {
	net.Conn
	l      *cutListener
	once   sync.Once
	buf    []byte
	from   uint64
	err    error
	closed atomic.Bool
}

func (c *cutConn) Close() error { c.closed.Store(true); return c.Conn.Close() }

func (c *cutConn) Read(p []byte) (int, error) {
	c.once.Do(func() {
		var hdr [netactor.FrameHeaderLen]byte
		if _, c.err = io.ReadFull(c.Conn, hdr[:]); c.err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, c.err = io.ReadFull(c.Conn, body); c.err != nil {
			return
		}
		c.buf = append(hdr[:], body...)
		if env, err := netactor.DecodeEnvelope(body); err == nil {
			c.from = env.From
		}
	})
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	for c.l.cuts.is(c.from, c.l.self) {
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c.Conn.Read(p)
}

// quietPartition is one RF-3 partition on a three-broker cluster.
type quietPartition struct {
	c  *testCluster
	tp partition.TopicPartition
}

func newQuietPartition(t *testing.T, c *testCluster, topic string) *quietPartition {
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c.createTopic(ctx, c.client(), topic, 1, 3, nil)
	return &quietPartition{c: c, tp: partition.TopicPartition{Topic: topic, Partition: 0}}
}

// waitQuiet waits for the partition to be quiet everywhere with a full
// ISR and returns its leader's index and term.
func (q *quietPartition) waitQuiet() (int, uint64) {
	leader, term := -1, uint64(0)
	q.c.waitFor(20*time.Second, "a quiet partition with a full ISR", func() bool {
		leader = -1
		for i, b := range q.c.brokers {
			r := b.Replicas().Get(q.tp)
			if r == nil {
				return false
			}
			st := b.Board().Get(r.Group)
			if st == nil || !st.Quiet {
				return false
			}
			if v := r.Machine.View(); v.Leader && len(v.ISR) == 3 {
				leader, term = i, st.Term
			}
		}
		return leader >= 0
	})
	return leader, term
}

// leaders returns the brokers whose replica is a raft leader.
func (q *quietPartition) leaders() (out []int) {
	for i, b := range q.c.brokers {
		if r := b.Replicas().Get(q.tp); r != nil {
			if st := b.Board().Get(r.Group); st != nil && st.Role == "leader" {
				out = append(out, i)
			}
		}
	}
	return out
}

func (q *quietPartition) term(i int) uint64 {
	b := q.c.brokers[i]
	if st := b.Board().Get(b.Replicas().Get(q.tp).Group); st != nil {
		return st.Term
	}
	return 0
}

func (q *quietPartition) isr(i int) []uint64 {
	return q.c.brokers[i].Replicas().Get(q.tp).Machine.View().ISR
}

// TestQuietLeaderDropsStoppedFollowerFromISR: a follower replica whose
// actor stops (it halted on a storage error, its supervisor gave up)
// while its broker lives answers nothing, and the transport loses no
// peer. Its quiet leader, missing its answer to a renewed quiet heartbeat,
// wakes, and its ISR drops the replica after replica.lag.time.max.ms, as
// a leader that never slept would.
func TestQuietLeaderDropsStoppedFollowerFromISR(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Kafka.ReplicaLagTimeMaxMs = 1000 })
	q := newQuietPartition(t, c, "quiet-stopped")
	leader, _ := q.waitQuiet()
	victim := (leader + 1) % 3
	r := c.brokers[victim].Replicas().Get(q.tp)
	c.brokers[victim].Actors().Root.Stop(r.PID)
	c.waitFor(10*time.Second, "the follower replica halted", func() bool {
		st := c.brokers[victim].Board().Get(r.Group)
		return st != nil && st.Role == "halted"
	})
	start := time.Now()
	// Renewal every 10 election timeouts (2 s at the tests' 20 ms
	// ticks), an election timeout for the answer and one for
	// CheckQuorum, then the 1 s lag: about 3.5 s.
	c.waitFor(8*time.Second, "the leader's ISR drops the stopped replica", func() bool {
		return !slices.Contains(q.isr(leader), uint64(victim+1))
	})
	t.Logf("broker %d's ISR dropped broker %d's stopped replica after %v", leader+1, victim+1, time.Since(start))
}

// TestQuietLeaderDropsDeafFollowerFromISR: a quiet follower hears nobody
// (frames to its broker are lost; its own arrive). Woken by its
// transport, it pre-votes, which wakes the leader; the leader, which must
// not go quiet again on what raft saw before it slept, drops it from the
// ISR about when a leader that never slept would, and keeps leading in its
// term.
func TestQuietLeaderDropsDeafFollowerFromISR(t *testing.T) {
	cuts := &oneWayCuts{}
	const tick = 20
	c := startCluster(t, 3, &testCluster{wrapRaftListener: cuts.listener}, func(cfg *configs.Config) {
		cfg.Raft.TickMs = tick
		cfg.Kafka.ReplicaLagTimeMaxMs = 100 * tick
	})
	q := newQuietPartition(t, c, "quiet-deaf")
	l, term := q.waitQuiet()
	f := (l + 1) % 3
	fid := uint64(f + 1)
	for i := range 3 {
		if i != f {
			cuts.set(uint64(i+1), fid, true)
		}
	}
	// Count the leader's returns to quiet until the ISR drops the deaf
	// follower: its pre-votes wake the leader, which must stay awake until
	// CheckQuorum has seen the follower silent, not go quiet again on the
	// follower's stale RecentActive at each pre-vote (which held the ISR
	// full for several seconds more). A count, not a time: CI is slow.
	start, quietAgain, wasQuiet := time.Now(), 0, true
	c.waitFor(10*time.Second, "the ISR drops the deaf follower", func() bool {
		b := c.brokers[l]
		if st := b.Board().Get(b.Replicas().Get(q.tp).Group); st != nil {
			if st.Quiet && !wasQuiet {
				quietAgain++
			}
			wasQuiet = st.Quiet
		}
		return !slices.Contains(q.isr(l), fid)
	})
	t.Logf("ISR dropped the deaf follower after %v; the leader went quiet again %d times", time.Since(start), quietAgain)
	if quietAgain > 1 {
		t.Errorf("the leader went quiet again %d times before its ISR dropped the deaf follower", quietAgain)
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ls := q.leaders(); !slices.Equal(ls, []int{l}) || q.term(l) != term {
			t.Fatalf("leaders %v, term %d (was %d on %d)", ls, q.term(l), term, l)
		}
	}
}
