package raftactor

import (
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/raft/v3/raftpb"
)

// leaderWatcher is a state machine that records the leader its node knew
// at each LeaderChanged.
type leaderWatcher struct {
	countingMachine
	mu   sync.Mutex
	seen []uint64
}

func (w *leaderWatcher) Receive(*Handle, actor.Context, any)           {}
func (w *leaderWatcher) Persisted(*Handle, actor.Context, []*pb.Entry) {}
func (w *leaderWatcher) Applied(*Handle, actor.Context)                {}
func (w *leaderWatcher) Tick(*Handle, actor.Context)                   {}
func (w *leaderWatcher) LeaderChanged(h *Handle, _ actor.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, h.Leader())
}

func (w *leaderWatcher) saw(leader uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.seen {
		if l == leader {
			return true
		}
	}
	return false
}

// TestLeaderChangedWhenTheLeaderIsLearned: an Extension hears of a change
// of the leader its node knows, not only of role and term: a follower
// votes in a new term knowing no leader, and learns it from the winner's
// first append, in the same term and role. A partition that steps down
// holds its clients' answers until then (partition's awaitleader.go).
func TestLeaderChangedWhenTheLeaderIsLearned(t *testing.T) {
	ws := map[uint64]*leaderWatcher{1: {}, 2: {}, 3: {}}
	sms := map[uint64]StateMachine{1: ws[1], 2: ws[2], 3: ws[3]}
	c := newMemCluster(t, nil, sms)
	leader := c.leader(t)
	for _, w := range ws {
		waitFor(t, 5*time.Second, func() (struct{}, bool) { return struct{}{}, w.saw(leader) })
	}
}
