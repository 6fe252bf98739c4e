package raftactor

import (
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
)

// tickStamped records what a group sends, with the Ticker's count at the
// time.
type tickStamped struct {
	ticker *Ticker
	mu     sync.Mutex
	sent   []stamped
}

type stamped struct {
	tick uint64
	msg  *pb.Message
}

func (r *tickStamped) Send(_ actor.SenderContext, _ uint64, msgs []*pb.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.sent = append(r.sent, stamped{r.ticker.now.Load(), m})
	}
}

// firstSent returns the first message of type t sent since index from.
func (r *tickStamped) firstSent(from int, t pb.MessageType) (stamped, int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := from; i < len(r.sent); i++ {
		if r.sent[i].msg.GetType() == t {
			return r.sent[i], len(r.sent), true
		}
	}
	return stamped{}, len(r.sent), false
}

func processed(sys *actors.System, name string) uint64 {
	for _, s := range sys.List() {
		if s.Name == name {
			return s.Processed
		}
	}
	return 0
}

// handTicked is one raft group, node 2 of the voters {1, 2}, whose
// Ticker is fired by hand (handTicked.fire) and whose transport records
// what it sends with the tick it was sent at.
type handTicked struct {
	t      *testing.T
	name   string
	sys    *actors.System
	ticker *Ticker
	tr     *tickStamped
	board  *StatusBoard
	pid    *actor.PID
	sub    *subscription
}

// newHandTicked starts group 5 under the name raft/<name> with sm, and
// quiet as Config.Quiet, and hands it its first tick.
func newHandTicked(t *testing.T, name string, election int, sm StateMachine, quiet func(uint64) bool) *handTicked {
	t.Helper()
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	st, err := sys.Spawn("storage", "storage", func() actor.Actor { return &slowStorage{} })
	if err != nil {
		t.Fatal(err)
	}
	ticker := NewTicker(sys.Root, time.Hour) // fired by hand
	t.Cleanup(ticker.Stop)
	h := &handTicked{t: t, name: "raft/" + name, sys: sys, ticker: ticker, tr: &tickStamped{ticker: ticker}, board: NewStatusBoard()}
	prod, err := NewProducer(Config{
		Group: 5, Name: name, NodeID: 2, Bootstrap: true, Peers: []uint64{1, 2},
		ElectionTicks: election, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64,
		Storage: st, Transport: h.tr, StateMachine: sm, Board: h.board, Log: zerolog.Nop(),
		Quiet: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	if h.pid, err = sys.Spawn("raft", h.name, prod); err != nil {
		t.Fatal(err)
	}
	ticker.Subscribe(h.pid)
	h.sub = ticker.subscription(h.pid)
	h.fire()
	return h
}

// fire sends one tick and waits until the group has handled it, or until
// it had time to if it sleeps.
func (h *handTicked) fire() {
	before := processed(h.sys, h.name)
	asleep := h.ticker.now.Load()+1 < h.sub.wakeAt.Load()
	h.ticker.fire()
	if !asleep {
		waitFor(h.t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, processed(h.sys, h.name) > before })
	}
}

// TestFollowerSleepsAndCountsEveryTick: a follower that heard from its
// leader is not sent the next ElectionTicks-1 ticks, yet campaigns when
// raft would have had every tick been delivered: between ElectionTicks and
// 2*ElectionTicks-1 ticks after the last heartbeat. A follower that lost
// the ticks it slept through would campaign up to ElectionTicks-1 ticks
// late; five rounds of randomised timeouts make that show.
func TestFollowerSleepsAndCountsEveryTick(t *testing.T) {
	const election = 10
	h := newHandTicked(t, "sleepy", election, &countingMachine{}, nil)
	sys, ticker, tr, board, pid, sub, fire := h.sys, h.ticker, h.tr, h.board, h.pid, h.sub, h.fire
	seen := 0
	for round, term := 0, uint64(2); round < 5; round, term = round+1, term+10 {
		// The leader of a new term heartbeats: the group follows it and
		// sleeps until ElectionTicks after this contact.
		contact := ticker.now.Load()
		sys.Root.Send(pid, &Step{Msgs: []*pb.Message{{
			Type: pb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(term), Commit: new(uint64(0)),
		}}})
		waitFor(t, 5*time.Second, func() (struct{}, bool) {
			s := board.Get(5)
			return struct{}{}, s != nil && s.Role == "follower" && s.Leader == 1 && s.Term == term
		})
		waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, sub.wakeAt.Load() == contact+election })
		quiet := processed(sys, "raft/sleepy")
		for ticker.now.Load() < contact+election-1 {
			fire()
		}
		if got := processed(sys, "raft/sleepy"); got != quiet {
			t.Fatalf("round %d: the follower handled %d messages while asleep", round, got-quiet)
		}
		// From the wake-up tick on it is ticked again, and campaigns
		// (PreVote) once its randomised election timeout has passed.
		var vote stamped
		for {
			fire()
			var ok bool
			if vote, seen, ok = tr.firstSent(seen, pb.MsgPreVote); ok {
				break
			}
			if ticker.now.Load() > contact+3*election {
				t.Fatalf("round %d: no campaign %d ticks after the last heartbeat", round, ticker.now.Load()-contact)
			}
		}
		if after := vote.tick - contact; after < election || after > 2*election-1 {
			t.Fatalf("round %d: campaigned %d ticks after the last heartbeat, want %d to %d", round, after, election, 2*election-1)
		}
		if sub.wakeAt.Load() != 0 {
			t.Fatalf("round %d: a campaigning node still sleeps", round)
		}
		if s := board.Get(5); s == nil || s.Role == RoleName(raft.StateFollower) {
			t.Fatalf("round %d: status %+v after campaigning", round, s)
		}
	}
}
