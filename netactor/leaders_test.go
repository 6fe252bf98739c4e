package netactor

import (
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPendingLeaders: leaderships waiting for the next frame keep every
// group's latest, whoever broadcast it, unless it is of an earlier term
// than the one waiting; what a frame takes leaves, and what comes after
// goes behind what is left.
func TestPendingLeaders(t *testing.T) {
	tests := []struct {
		name          string
		pending, next []LeaderInfo
		want          []LeaderInfo
	}{
		{"nothing pending", nil, []LeaderInfo{{Group: 1, Leader: 2, Term: 3}}, []LeaderInfo{{Group: 1, Leader: 2, Term: 3}}},
		{"another broadcaster's groups", []LeaderInfo{{Group: 100, Leader: 1, Term: 5}}, []LeaderInfo{{Group: 200, Leader: 1, Term: 5}},
			[]LeaderInfo{{Group: 100, Leader: 1, Term: 5}, {Group: 200, Leader: 1, Term: 5}}},
		{"a newer leadership of the same group", []LeaderInfo{{Group: 100, Leader: 1, Term: 5}, {Group: 101, Leader: 1, Term: 2}},
			[]LeaderInfo{{Group: 100, Leader: 1, Term: 6, ISR: []uint64{1, 2}}, {Group: 300, Leader: 1, Term: 1}},
			[]LeaderInfo{{Group: 100, Leader: 1, Term: 6, ISR: []uint64{1, 2}}, {Group: 101, Leader: 1, Term: 2}, {Group: 300, Leader: 1, Term: 1}}},
		{"the same term with a new ISR", []LeaderInfo{{Group: 100, Leader: 1, Term: 5, ISR: []uint64{1}}},
			[]LeaderInfo{{Group: 100, Leader: 1, Term: 5, ISR: []uint64{1, 3}}},
			[]LeaderInfo{{Group: 100, Leader: 1, Term: 5, ISR: []uint64{1, 3}}}},
		{"an earlier term after a later one", []LeaderInfo{{Group: 100, Leader: 1, Term: 6}},
			[]LeaderInfo{{Group: 100, Leader: 1, Term: 5, ISR: []uint64{1, 2}}},
			[]LeaderInfo{{Group: 100, Leader: 1, Term: 6}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p pendingLeaders
			p.merge(tt.pending)
			p.merge(tt.next)
			if got := p.take(); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("pending %+v, want %+v", got, tt.want)
			}
			if !p.empty() {
				t.Fatalf("%d leaderships left after a frame took them all", len(p.infos))
			}
		})
	}

	// A frame takes the first maxFrameLeaders; a group taken is new
	// again, one left is replaced where it waits.
	var p pendingLeaders
	for g := range uint64(maxFrameLeaders + 2) {
		p.merge([]LeaderInfo{{Group: g, Leader: 1, Term: 1}})
	}
	if got := p.take(); len(got) != maxFrameLeaders || got[0].Group != 0 {
		t.Fatalf("first frame: %d leaderships from group %d", len(got), got[0].Group)
	}
	p.merge([]LeaderInfo{{Group: maxFrameLeaders + 1, Leader: 1, Term: 2}, {Group: 0, Leader: 1, Term: 2}})
	want := []LeaderInfo{{Group: maxFrameLeaders, Leader: 1, Term: 1}, {Group: maxFrameLeaders + 1, Leader: 1, Term: 2}, {Group: 0, Leader: 1, Term: 2}}
	if got := p.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("second frame: %+v, want %+v", got, want)
	}
}

// leaderBoard is a LeaderBoard that records what it is told.
type leaderBoard struct {
	mu  sync.Mutex
	led map[uint64]LeaderInfo // group → latest
	// completed holds, per peer, the groups the board knew it to lead
	// when each of its complete sets ended.
	completed map[uint64][][]uint64
}

func newLeaderBoard() *leaderBoard {
	return &leaderBoard{led: map[uint64]LeaderInfo{}, completed: map[uint64][][]uint64{}}
}

func (b *leaderBoard) PeerLeads(peer uint64, infos []LeaderInfo, complete bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, li := range infos {
		b.led[li.Group] = li
	}
	if complete {
		var groups []uint64
		for g, li := range b.led {
			if li.Leader == peer {
				groups = append(groups, g)
			}
		}
		slices.Sort(groups)
		b.completed[peer] = append(b.completed[peer], groups)
	}
}

// sets returns the groups peer was known to lead at the end of each of
// its complete sets so far.
func (b *leaderBoard) sets(peer uint64) [][]uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.completed[peer])
}

func (b *leaderBoard) forget() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.led)
}

// TestLeadershipsSentOnConnect: a sender that connects sends its peer
// everything the node leads at that moment (Peers.Leads), the last frame
// of it marked complete, and again, as it is then, after each
// reconnection. More leaderships than a frame carries are marked complete
// only on the frame that carries the last of them; a node that leads
// nothing, or has not said yet what it leads, sends the mark alone.
func TestLeadershipsSentOnConnect(t *testing.T) {
	many := make([]LeaderInfo, maxFrameLeaders+3)
	for i := range many {
		many[i] = LeaderInfo{Group: 10_000 + uint64(i), Leader: 1, Term: 1}
	}
	groups := func(infos []LeaderInfo) []uint64 {
		var gs []uint64
		for _, li := range infos {
			gs = append(gs, li.Group)
		}
		slices.Sort(gs)
		return gs
	}
	for _, tt := range []struct {
		name          string
		first, second []LeaderInfo // what the node leads at each connection
		unset         bool         // Leads is never called
	}{
		{"leaderships", []LeaderInfo{{Group: 1024, Leader: 1, Term: 2}, {Group: 2000, Leader: 1, Term: 4, ISR: []uint64{1, 2}}},
			[]LeaderInfo{{Group: 1024, Leader: 1, Term: 2}, {Group: 1026, Leader: 1, Term: 5}}, false},
		{"nothing led", nil, nil, false},
		{"not said yet", nil, nil, true},
		{"more than a frame", many, many[:3], false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := freeAddr(t)
			n1, n2 := newNode(t, 1), newNode(t, 2)
			p := n1.peers(map[uint64]string{2: addr}, SenderOptions{})
			var now atomic.Pointer[[]LeaderInfo]
			now.Store(&tt.first)
			if !tt.unset {
				p.Leads(func() []LeaderInfo { return slices.Clone(*now.Load()) })
			}
			board := newLeaderBoard()
			n2.leaders = board
			n2.listen(addr)
			waitFor(t, 10*time.Second, "a complete set", func() bool { return len(board.sets(1)) == 1 })
			if got, want := board.sets(1)[0], groups(tt.first); !slices.Equal(got, want) {
				t.Fatalf("complete set of %d groups, want %d: %v…", len(got), len(want), got[:min(len(got), 5)])
			}
			// Once more after a reconnection, as things are then.
			now.Store(&tt.second)
			n2.stopListener()
			board.forget()
			n2.listen(addr)
			waitFor(t, 10*time.Second, "a second complete set", func() bool { return len(board.sets(1)) == 2 })
			if got, want := board.sets(1)[1], groups(tt.second); !slices.Equal(got, want) {
				t.Fatalf("complete set after reconnecting: %d groups, want %d", len(got), len(want))
			}
		})
	}
}

// frameCountingBoard is a leaderBoard that also counts the frames that
// brought leaderships.
type frameCountingBoard struct {
	*leaderBoard
	frames atomic.Int64
}

func (b *frameCountingBoard) PeerLeads(peer uint64, infos []LeaderInfo, complete bool) {
	if len(infos) > 0 {
		b.frames.Add(1)
	}
	b.leaderBoard.PeerLeads(peer, infos, complete)
}

// TestLeadershipBurstTravelsInFewFrames: leaderships announced one at a
// time, as many new leaders do when they become ready together (a
// topic's partitions, a dead broker's), reach the peer merged into a few
// frames, each group at its latest term.
func TestLeadershipBurstTravelsInFewFrames(t *testing.T) {
	addr := freeAddr(t)
	n1, n2 := newNode(t, 1), newNode(t, 2)
	p := n1.peers(map[uint64]string{2: addr}, SenderOptions{})
	p.Leads(func() []LeaderInfo { return nil })
	board := &frameCountingBoard{leaderBoard: newLeaderBoard()}
	n2.leaders = board
	n2.listen(addr)
	waitFor(t, 10*time.Second, "the connect-time set", func() bool { return len(board.sets(1)) == 1 })

	const burst = 1000
	for g := range uint64(burst) {
		p.Broadcast(n1.sys.Root, []LeaderInfo{{Group: 1000 + g, Leader: 1, Term: 2, ISR: []uint64{1}}})
		if g%10 == 0 { // a few go on to a later term meanwhile
			p.Broadcast(n1.sys.Root, []LeaderInfo{{Group: 1000 + g, Leader: 1, Term: 3, ISR: []uint64{1}}})
		}
	}
	waitFor(t, 10*time.Second, "every leadership", func() bool {
		board.mu.Lock()
		defer board.mu.Unlock()
		return len(board.led) == burst
	})
	board.mu.Lock()
	for g, li := range board.led {
		want := uint64(2)
		if (g-1000)%10 == 0 {
			want = 3
		}
		if li.Term != want {
			t.Errorf("group %d at term %d, want %d", g, li.Term, want)
		}
	}
	board.mu.Unlock()
	if n := board.frames.Load(); n > burst/4 {
		t.Fatalf("%d leaderships announced one by one took %d frames", burst, n)
	} else {
		t.Logf("%d leaderships announced one by one took %d frames", burst, n)
	}
}
