package raftactor

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
)

// quietMachine is an Extension that lets its group go quiet and counts its
// ticks.
type quietMachine struct {
	countingMachine
	ticks atomic.Uint64
	hold  atomic.Bool // CanQuiesce answers false
}

func (q *quietMachine) Receive(*Handle, actor.Context, any)           {}
func (q *quietMachine) Persisted(*Handle, actor.Context, []*pb.Entry) {}
func (q *quietMachine) Applied(*Handle, actor.Context)                {}
func (q *quietMachine) Tick(*Handle, actor.Context)                   { q.ticks.Add(1) }
func (q *quietMachine) LeaderChanged(*Handle, actor.Context)          {}
func (q *quietMachine) CanQuiesce(*Handle) bool                       { return !q.hold.Load() }
func (q *quietMachine) QuietTicks() uint64                            { return math.MaxUint64 }

// countingTransport is memTransport that counts what it carries.
type countingTransport struct {
	memTransport
	sent atomic.Uint64
}

func (t *countingTransport) Send(ctx actor.SenderContext, group uint64, msgs []*pb.Message) {
	t.sent.Add(uint64(len(msgs)))
	t.memTransport.Send(ctx, group, msgs)
}

// quietCluster is three nodes of one group, each with its own Ticker (as
// each broker has), and a peer filter for Config.Quiet.
type quietCluster struct {
	sys      *actors.System
	pids     map[uint64]*actor.PID
	boards   map[uint64]*StatusBoard
	tickers  map[uint64]*Ticker
	machines map[uint64]*quietMachine
	tr       *countingTransport
	mu       sync.Mutex
	noQuiet  map[uint64]bool // peers Config.Quiet refuses
	// onQuiet, if set, is called by Config.Quiet of node, about peer.
	onQuiet func(node, peer uint64)
}

func newQuietCluster(t *testing.T) *quietCluster {
	t.Helper()
	c := &quietCluster{sys: actors.NewSystem(zerolog.Nop()), pids: map[uint64]*actor.PID{}, boards: map[uint64]*StatusBoard{},
		tickers: map[uint64]*Ticker{}, machines: map[uint64]*quietMachine{}, noQuiet: map[uint64]bool{}}
	t.Cleanup(c.sys.Shutdown)
	c.tr = &countingTransport{memTransport: memTransport{nodes: map[uint64]*actor.PID{}, down: map[uint64]bool{}}}
	for id := uint64(1); id <= 3; id++ {
		st, err := c.sys.Spawn("storage", fmt.Sprintf("storage/%d", id), func() actor.Actor { return &slowStorage{node: id} })
		if err != nil {
			t.Fatal(err)
		}
		c.boards[id] = NewStatusBoard()
		c.machines[id] = &quietMachine{}
		prod, err := NewProducer(Config{
			Group: 7, Name: "quiet", NodeID: id, Bootstrap: true, Peers: []uint64{1, 2, 3},
			ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
			Storage: st, Transport: c.tr, StateMachine: c.machines[id], Board: c.boards[id], Log: zerolog.Nop(),
			Quiet: func(peer uint64) bool {
				c.mu.Lock()
				on, ok := c.onQuiet, !c.noQuiet[peer]
				c.mu.Unlock()
				if on != nil {
					on(id, peer)
				}
				return ok
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		pid, err := c.sys.Spawn("raft", fmt.Sprintf("raft/%d", id), prod)
		if err != nil {
			t.Fatal(err)
		}
		c.tr.mu.Lock()
		c.tr.nodes[id] = pid
		c.tr.mu.Unlock()
		c.pids[id] = pid
		tk := NewTicker(c.sys.Root, 5*time.Millisecond)
		t.Cleanup(tk.Stop)
		tk.Subscribe(pid)
		c.tickers[id] = tk
	}
	return c
}

// allQuiet reports whether every live node's group is quiet, and has
// applied at least index.
func (c *quietCluster) allQuiet(index uint64) bool {
	for id, b := range c.boards {
		c.tr.mu.Lock()
		down := c.tr.down[id]
		c.tr.mu.Unlock()
		if down {
			continue
		}
		s := b.Get(7)
		if s == nil || !s.Quiet || s.Applied < index {
			return false
		}
	}
	return true
}

// waitQuietFor waits until the cluster is quiet, and stays so with no
// message sent while its tickers fire 30 times more.
func (c *quietCluster) waitQuiet(t *testing.T, index uint64) {
	t.Helper()
	waitFor(t, 10*time.Second, func() (struct{}, bool) { return struct{}{}, c.allQuiet(index) })
	// The answers to the quiet heartbeats may still be on their way.
	start := c.tickers[1].now.Load()
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, c.tickers[1].now.Load() >= start+3 })
	sent := c.tr.sent.Load()
	start = c.tickers[1].now.Load()
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, c.tickers[1].now.Load() >= start+30 })
	if got := c.tr.sent.Load(); got != sent {
		t.Fatalf("%d raft messages sent in 30 ticks of a quiet group", got-sent)
	}
	if !c.allQuiet(index) {
		t.Fatal("the group woke with nothing to do")
	}
}

// TestIdleGroupGoesQuiet: once everything is replicated and committed, a
// group sends nothing while its ticks go by; a proposal wakes it, and it is
// applied everywhere before the group goes quiet again; the Extension is
// ticked all along.
func TestIdleGroupGoesQuiet(t *testing.T) {
	c := newQuietCluster(t)
	leader := waitLeader(t, c.boards, 7)
	c.waitQuiet(t, 1)
	ticks := c.machines[leader].ticks.Load()
	c.sys.Root.Send(c.pids[leader], &Propose{ID: 1, Data: []byte("wake up")})
	waitFor(t, 5*time.Second, func() (struct{}, bool) {
		for _, m := range c.machines {
			if m.count() != 1 {
				return struct{}{}, false
			}
		}
		return struct{}{}, true
	})
	c.waitQuiet(t, c.boards[leader].Get(7).Commit)
	if c.machines[leader].ticks.Load() <= ticks {
		t.Fatal("the Extension of a quiet group was not ticked")
	}
}

// TestLeaderStaysAwakeForAPeerThatCannotFollowQuietly: a follower that
// Config.Quiet refuses (a broker of an earlier version) keeps its leader
// heartbeating.
func TestLeaderStaysAwakeForAPeerThatCannotFollowQuietly(t *testing.T) {
	c := newQuietCluster(t)
	c.mu.Lock()
	c.noQuiet[3] = true
	c.mu.Unlock()
	leader := waitLeader(t, c.boards, 7)
	if leader == 3 {
		// Node 3's view of the others is not filtered: make one of them lead.
		c.sys.Root.Send(c.pids[3], &TransferLeader{To: 1})
		waitFor(t, 5*time.Second, func() (struct{}, bool) {
			s := c.boards[1].Get(7)
			return struct{}{}, s != nil && s.Role == "leader"
		})
	}
	start := c.tickers[1].now.Load()
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, c.tickers[1].now.Load() >= start+40 })
	sent := c.tr.sent.Load()
	start = c.tickers[1].now.Load()
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, c.tickers[1].now.Load() >= start+20 })
	if c.tr.sent.Load() == sent {
		t.Fatal("the leader went quiet with a follower that cannot follow quietly")
	}
	for id, b := range c.boards {
		if s := b.Get(7); s.Quiet && s.Role == "leader" {
			t.Fatalf("node %d leads quietly", id)
		}
	}
}

// TestQuietGroupWakes: every kind of activity wakes a quiet group: a raft
// message other than the quiet heartbeats and their answers, a leadership
// transfer, the loss of a peer it depends on.
func TestQuietGroupWakes(t *testing.T) {
	c := newQuietCluster(t)
	leader := waitLeader(t, c.boards, 7)
	follower := leader%3 + 1
	other := follower%3 + 1
	c.waitQuiet(t, 1)
	// wakes checks that do wakes the group: it sends messages again (at
	// least the quiet heartbeats of a leader going quiet again), and then
	// goes quiet again.
	wakes := func(what string, do func()) {
		t.Helper()
		sent := c.tr.sent.Load()
		do()
		deadline := time.Now().Add(5 * time.Second)
		for c.tr.sent.Load() == sent {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not wake the group", what)
			}
			time.Sleep(time.Millisecond)
		}
		c.waitQuiet(t, 1)
	}

	// The loss of a follower's broker wakes the leader; the loss of the
	// leader's broker a follower, which the leader's quiet heartbeat puts
	// back to sleep once it is heard again.
	wakes("the loss of a follower", func() { c.tickers[leader].WakePeer(follower) })
	wakes("the loss of the leader", func() { c.tickers[follower].WakePeer(leader) })
	// A raft message: a restarted follower's vote request.
	term := c.boards[leader].Get(7).Term
	wakes("a vote request", func() {
		c.sys.Root.Send(c.pids[leader], &Step{Msgs: []*pb.Message{{
			Type: pb.MsgPreVote.Enum(), From: new(other), To: new(leader), Term: new(term + 1), LogTerm: new(term), Index: new(uint64(1)),
		}}})
	})
	// A leadership transfer: the new leader's group goes quiet too.
	wakes("a transfer", func() { c.sys.Root.Send(c.pids[leader], &TransferLeader{To: follower}) })
	if s := c.boards[follower].Get(7); s.Role != "leader" {
		t.Fatalf("node %d did not take over: %+v", follower, s)
	}
	leader, follower = follower, leader

	// An Extension that keeps it from going quiet.
	c.machines[leader].hold.Store(true)
	c.tickers[leader].WakePeer(follower)
	sent := c.tr.sent.Load()
	start := c.tickers[1].now.Load()
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, c.tickers[1].now.Load() >= start+20 })
	if got := c.tr.sent.Load() - sent; got < 20 {
		t.Fatalf("a leader whose Extension cannot quiesce sent %d messages in 20 ticks", got)
	}
}

// TestQuietFollowerWakesWithAFreshElectionTimeout: a quiet follower sleeps
// through any number of ticks; woken by the loss of its leader, it
// campaigns its own randomized election timeout later, not at once for the
// ticks it slept through.
func TestQuietFollowerWakesWithAFreshElectionTimeout(t *testing.T) {
	const election = 10
	qm := &quietMachine{}
	h := newHandTicked(t, "quiet", election, qm, func(uint64) bool { return true })
	sys, ticker, tr, board, pid, fire := h.sys, h.ticker, h.tr, h.board, h.pid, h.fire
	seen := 0
	for round, term := 0, uint64(2); round < 5; round, term = round+1, term+10 {
		// The leader of a new term heartbeats, then goes quiet.
		for _, quiet := range []bool{false, true} {
			sys.Root.Send(pid, &Step{Msgs: []*pb.Message{{
				Type: pb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(term), Commit: new(uint64(2)), Reject: new(quiet),
			}}})
		}
		waitFor(t, 5*time.Second, func() (struct{}, bool) {
			s := board.Get(5)
			return struct{}{}, s != nil && s.Role == "follower" && s.Leader == 1 && s.Term == term && s.Quiet
		})
		ticks := qm.ticks.Load()
		for range 5 * election {
			fire()
		}
		if _, next, ok := tr.firstSent(seen, pb.MsgPreVote); ok {
			t.Fatalf("round %d: a quiet follower campaigned", round)
		} else {
			seen = next
		}
		// The transport loses the leader.
		woken := ticker.now.Load()
		ticker.WakePeer(1)
		waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, !board.Get(5).Quiet })
		if got := qm.ticks.Load() - ticks; got != 5*election {
			t.Fatalf("round %d: the Extension of a quiet group was ticked %d times in %d ticks", round, got, 5*election)
		}
		var vote stamped
		for {
			fire()
			var ok bool
			if vote, seen, ok = tr.firstSent(seen, pb.MsgPreVote); ok {
				break
			}
			if ticker.now.Load() > woken+3*election {
				t.Fatalf("round %d: no campaign %d ticks after the wake-up", round, ticker.now.Load()-woken)
			}
		}
		if after := vote.tick - woken; after < election || after > 2*election {
			t.Fatalf("round %d: campaigned %d ticks after the wake-up, want %d to %d", round, after, election, 2*election)
		}
	}
}

// TestQuietFollowersElectWhenTheLeaderGroupStops: a leader whose raft node
// goes (halted, stopped, restarted) while its broker lives wakes its quiet
// followers, which elect a new leader; the transport, still hearing the
// broker, would not.
func TestQuietFollowersElectWhenTheLeaderGroupStops(t *testing.T) {
	c := newQuietCluster(t)
	leader := waitLeader(t, c.boards, 7)
	c.waitQuiet(t, 1)
	c.sys.Root.Stop(c.pids[leader])
	delete(c.boards, leader)
	next := waitLeader(t, c.boards, 7)
	if next == leader {
		t.Fatalf("node %d still leads", leader)
	}
}

// TestQuietGroupsNoticeWhatTheTransportCannot: raft messages to and from a
// quiet leader are lost while its broker's transport stays up (no peer is
// lost): the followers, missing its renewed quiet heartbeats, wake and
// elect another leader, and the old leader, missing their answers, wakes
// and steps down.
func TestQuietGroupsNoticeWhatTheTransportCannot(t *testing.T) {
	c := newQuietCluster(t)
	leader := waitLeader(t, c.boards, 7)
	c.waitQuiet(t, 1)
	c.tr.mu.Lock()
	c.tr.down[leader] = true
	c.tr.mu.Unlock()
	others := map[uint64]*StatusBoard{}
	for id, b := range c.boards {
		if id != leader {
			others[id] = b
		}
	}
	waitLeader(t, others, 7)
	waitFor(t, 10*time.Second, func() (struct{}, bool) {
		s := c.boards[leader].Get(7)
		return struct{}{}, s.Role != "leader"
	})
}

// recentActive reports what node's board says of raft's RecentActive for
// peer, and whether node's group is quiet.
func (c *quietCluster) recentActive(node, peer uint64) (active, quiet bool) {
	s := c.boards[node].Get(7)
	if s == nil {
		return false, false
	}
	return s.Progress[fmt.Sprint(peer)].RecentActive, s.Quiet
}

// TestQuietLeaderWakesForAFollowerThatStopsAnswering: a follower's group
// stops answering (its actor halted) while its broker lives, so no
// transport wakes the quiet leader. The leader, missing its answer to a
// renewed quiet heartbeat, wakes, and raft's CheckQuorum then finds the
// follower inactive: it leaves the ISR, where a quorum of answers would
// have kept it for ever.
func TestQuietLeaderWakesForAFollowerThatStopsAnswering(t *testing.T) {
	c := newQuietCluster(t)
	leader := waitLeader(t, c.boards, 7)
	follower := leader%3 + 1
	c.waitQuiet(t, 1)
	c.tr.mu.Lock()
	c.tr.down[follower] = true
	c.tr.mu.Unlock()
	// Renewal every 100 ticks (500 ms), then an election timeout for the
	// answer and one for CheckQuorum.
	waitFor(t, 5*time.Second, func() (struct{}, bool) {
		active, quiet := c.recentActive(leader, follower)
		return struct{}{}, !active && !quiet
	})
	if s := c.boards[leader].Get(7); s.Role != "leader" {
		t.Fatalf("node %d lost its leadership with a quorum: %+v", leader, s)
	}
}

// TestWokenQuietLeaderLooksAgainBeforeGoingQuiet: a quiet leader woken by
// a message (here a deaf follower's pre-vote) stays awake until raft's
// CheckQuorum has looked at its followers: it finds the deaf one inactive
// within a couple of election timeouts, instead of going quiet again at
// once on what raft saw before it slept.
func TestWokenQuietLeaderLooksAgainBeforeGoingQuiet(t *testing.T) {
	const election = 10
	c := newQuietCluster(t)
	leader := waitLeader(t, c.boards, 7)
	deaf := leader%3 + 1
	c.waitQuiet(t, 1)
	c.tr.mu.Lock()
	c.tr.drop = func(m *pb.Message) bool { return m.GetTo() == deaf }
	c.tr.mu.Unlock()
	term := c.boards[leader].Get(7).Term
	start := c.tickers[leader].now.Load()
	c.sys.Root.Send(c.pids[leader], &Step{Msgs: []*pb.Message{{
		Type: pb.MsgPreVote.Enum(), From: new(deaf), To: new(leader), Term: new(term + 1), LogTerm: new(term), Index: new(uint64(1)),
	}}})
	waitFor(t, 5*time.Second, func() (struct{}, bool) {
		active, _ := c.recentActive(leader, deaf)
		return struct{}{}, !active
	})
	if took := c.tickers[leader].now.Load() - start; took > 5*election {
		t.Fatalf("the woken leader found the deaf follower inactive %d ticks later; the election timeout is %d", took, election)
	}
}

// TestQuietGroupAsksAgainAfterPublishingItsPeers: a transport (netactor.
// Liveness) wakes the quiet groups that depend on a peer once per
// silence, and only if Config.Quiet found the peer fit since the last
// one. Here the peer's silence is noticed just as the leader first asks
// about it, before the leader publishes its peers to the Ticker, so the
// Ticker finds no group to wake. The leader asks again once they are
// published: the peer's next silence wakes it.
func TestQuietGroupAsksAgainAfterPublishingItsPeers(t *testing.T) {
	c := newQuietCluster(t)
	leader := waitLeader(t, c.boards, 7)
	follower := leader%3 + 1
	c.waitQuiet(t, 1)
	// The transport's view of follower, as Liveness keeps it.
	var armed, raced atomic.Bool
	var asked atomic.Uint64
	lose := func() {
		if armed.Swap(false) {
			c.tickers[leader].WakePeer(follower)
		}
	}
	c.mu.Lock()
	c.onQuiet = func(node, peer uint64) {
		if node != leader || peer != follower {
			return
		}
		armed.Store(true)
		asked.Add(1)
		if raced.CompareAndSwap(false, true) {
			lose()
		}
	}
	c.mu.Unlock()
	c.tickers[leader].WakePeer(follower)
	waitFor(t, 5*time.Second, func() (struct{}, bool) {
		s := c.boards[leader].Get(7)
		return struct{}{}, raced.Load() && s.Quiet
	})
	// Woken, the leader goes quiet again, and asks about its peers.
	n := asked.Load()
	lose()
	waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, asked.Load() > n })
}
