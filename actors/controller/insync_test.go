package controller

import (
	"slices"
	"testing"
	"time"

	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// TestControllerISR: the controller leader's ISR, sampled from the status
// board: a voter raft streams appends to counts as heard from even when
// the copy of its RecentActive is false (CheckQuorum clears it at every
// election timeout, and the board's copies may always come just after);
// one that is probed and silent leaves after the lag; one whose broker is
// stopping leaves at once; and none is known while this broker does not
// lead.
func TestControllerISR(t *testing.T) {
	const lag = 20
	board := raftactor.NewStatusBoard()
	liveness := netactor.NewLiveness(1, time.Minute, time.Now)
	c := &controllerActor{o: Options{NodeID: 1, Board: board, Liveness: liveness, ReplicaLagTicks: lag}}
	leading := func(progress map[string]raftactor.Progress) {
		board.Publish(&raftactor.GroupStatus{Group: ControllerGroup, Role: "leader", Leader: 1, Term: 2, Commit: 10, Voters: []uint64{1, 2, 3, 4}, Progress: progress})
	}
	leading(map[string]raftactor.Progress{
		"2": {Match: 10, State: "replicate", RecentActive: true},
		"3": {Match: 10, State: "replicate", RecentActive: true},
		"4": {Match: 10, State: "replicate", RecentActive: true},
	})
	c.sampleISR()
	if !slices.Equal(c.isr.isr, []uint64{1, 2, 3, 4}) {
		t.Fatalf("ISR %v, want [1 2 3 4]", c.isr.isr)
	}
	// Idle: 2's RecentActive is always seen cleared; 3 went silent and is
	// probed.
	leading(map[string]raftactor.Progress{
		"2": {Match: 10, State: "replicate"},
		"3": {Match: 10, State: "probe"},
		"4": {Match: 10, State: "replicate", RecentActive: true},
	})
	for c.ticks = 0; c.ticks <= 2*lag; c.ticks += isrEveryTicks {
		c.sampleISR()
	}
	if !slices.Equal(c.isr.isr, []uint64{1, 2, 4}) {
		t.Fatalf("ISR %v after %d ticks, want [1 2 4]", c.isr.isr, c.ticks)
	}
	liveness.MarkStopping(4)
	c.sampleISR()
	if !slices.Equal(c.isr.isr, []uint64{1, 2}) {
		t.Fatalf("ISR %v with broker 4 stopping, want [1 2]", c.isr.isr)
	}
	board.Publish(&raftactor.GroupStatus{Group: ControllerGroup, Role: "follower", Leader: 2, Term: 3, Voters: []uint64{1, 2, 3, 4}})
	c.sampleISR()
	if c.isr.term != 0 || c.isr.isr != nil {
		t.Fatalf("a follower keeps the ISR %v of term %d", c.isr.isr, c.isr.term)
	}
}
