package raftactor

import (
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"
)

func TestSuccessor(t *testing.T) {
	replicate := func(match uint64, active bool) tracker.Progress {
		return tracker.Progress{Match: match, State: tracker.StateReplicate, RecentActive: active}
	}
	probe := func(match uint64) tracker.Progress {
		return tracker.Progress{Match: match, State: tracker.StateProbe, RecentActive: true}
	}
	all := func(uint64) bool { return true }
	tests := []struct {
		name     string
		progress map[uint64]tracker.Progress // node 1 is the leader
		eligible func(uint64) bool
		want     uint64
	}{
		{"the furthest along", map[uint64]tracker.Progress{1: replicate(10, true), 2: replicate(8, true), 3: replicate(9, true)}, all, 3},
		{"replicating before probing", map[uint64]tracker.Progress{1: replicate(10, true), 2: probe(10), 3: replicate(9, true)}, all, 3},
		{"heard from before silent", map[uint64]tracker.Progress{1: replicate(10, true), 2: replicate(10, false), 3: replicate(10, true)}, all, 3},
		{"the lowest id of equals", map[uint64]tracker.Progress{1: replicate(10, true), 3: replicate(10, true), 2: replicate(10, true)}, all, 2},
		{"never a learner", map[uint64]tracker.Progress{1: replicate(10, true), 2: {Match: 10, State: tracker.StateReplicate, IsLearner: true}, 3: probe(1)}, all, 3},
		{"never an ineligible voter", map[uint64]tracker.Progress{1: replicate(10, true), 2: replicate(10, true), 3: probe(1)}, func(id uint64) bool { return id != 2 }, 3},
		{"nobody", map[uint64]tracker.Progress{1: replicate(10, true), 2: replicate(10, true)}, func(id uint64) bool { return id != 2 }, 0},
		{"a single voter", map[uint64]tracker.Progress{1: replicate(10, true)}, all, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := raft.Status{BasicStatus: raft.BasicStatus{ID: 1}, Progress: tt.progress}
			if got := successor(st, tt.eligible); got != tt.want {
				t.Errorf("successor = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestStepDownSkipsStoppingVoters: no leadership goes to a node that is
// stopping, whether asked by hand (TransferLeader) or by StepDown, which
// picks another voter.
func TestStepDownSkipsStoppingVoters(t *testing.T) {
	var stopping atomic.Uint64
	sms := map[uint64]StateMachine{1: &countingMachine{}, 2: &countingMachine{}, 3: &countingMachine{}}
	c := newMemCluster(t, nil, sms, func(cfg *Config) {
		cfg.Stopping = func(id uint64) bool { return id == stopping.Load() }
	})
	leader := c.leader(t)
	others := []uint64{}
	for id := uint64(1); id <= 3; id++ {
		if id != leader {
			others = append(others, id)
		}
	}
	stopper, heir := others[0], others[1]
	stopping.Store(stopper)
	c.sys.Root.Send(c.pids[leader], &TransferLeader{To: stopper})
	c.sys.Root.Send(c.pids[leader], &StepDown{})
	got := waitFor(t, 5*time.Second, func() (uint64, bool) {
		for id, b := range c.boards {
			if s := b.Get(0); id != leader && s != nil && s.Role == "leader" {
				return id, true
			}
		}
		return 0, false
	})
	if got != heir {
		t.Fatalf("node %d took over from %d; node %d is stopping, %d should have", got, leader, stopper, heir)
	}
	// The group goes on committing under its new leader.
	c.sys.Root.Send(c.pids[heir], &Propose{ID: 1, Data: []byte("after")})
	waitFor(t, 5*time.Second, func() (struct{}, bool) {
		return struct{}{}, sms[heir].(*countingMachine).count() > 0
	})
}
