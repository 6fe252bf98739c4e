package controller

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/netactor"
)

// controlSpy is a Network that records the control messages sent.
type controlSpy struct{ sent map[uint64][][]byte }

func (s *controlSpy) SetPeer(uint64, string) error { return nil }
func (s *controlSpy) RemovePeer(uint64)            {}
func (s *controlSpy) SendControl(_ actor.SenderContext, to uint64, data []byte) bool {
	s.sent[to] = append(s.sent[to], data)
	return true
}

// TestStopAnnouncement: a stopping broker tells every peer it knows, by
// config or by membership, and is done once the live ones acknowledged;
// it repeats the notice to those that have not. A peer takes the notice
// only from the broker it names, marks it stopping in its liveness and
// acknowledges.
func TestStopAnnouncement(t *testing.T) {
	sm := NewStateMachine(zerolog.Nop())
	for i, id := range []uint64{1, 2, 4} {
		sm.Apply(uint64(i+1), 1, (&Command{RegisterBroker: &RegisterBroker{NodeID: id, KafkaAddr: "127.0.0.1:9092", RaftAddr: "127.0.0.1:9192"}}).Encode())
	}
	spy := &controlSpy{sent: map[uint64][][]byte{}}
	stopper := NewActor(Options{NodeID: 1, Machine: sm, Network: spy, Log: zerolog.Nop(),
		ConfigPeers: func() map[uint64]string { return map[uint64]string{1: "a", 2: "b", 3: "c"} },
	})().(*controllerActor)
	done := make(chan struct{})
	stopper.announceStop(nil, &AnnounceStop{Alive: func(id uint64) bool { return id != 4 }, Done: done})
	if got := slices.Sorted(maps.Keys(spy.sent)); !slices.Equal(got, []uint64{2, 3, 4}) {
		t.Fatalf("notices sent to %v, want 2, 3 and 4", got)
	}
	closed := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}

	// Broker 2 takes the notice and acknowledges; a copy relayed by
	// broker 3 is not believed.
	liveness := netactor.NewLiveness(2, time.Second, time.Now)
	peerSpy := &controlSpy{sent: map[uint64][][]byte{}}
	peer := NewActor(Options{NodeID: 2, Machine: sm, Network: peerSpy, Liveness: liveness, Log: zerolog.Nop()})().(*controllerActor)
	notice := spy.sent[2][0]
	peer.onControl(nil, 3, notice)
	if liveness.Stopping(1) || liveness.Stopping(3) || len(peerSpy.sent) > 0 {
		t.Fatal("a notice naming broker 1 taken from broker 3")
	}
	peer.onControl(nil, 1, notice)
	if !liveness.Stopping(1) || len(peerSpy.sent[1]) != 1 {
		t.Fatalf("broker 1's own notice: stopping %v, answers %d; want true, 1", liveness.Stopping(1), len(peerSpy.sent[1]))
	}

	stopper.onControl(nil, 2, peerSpy.sent[1][0])
	if closed() {
		t.Fatal("done with broker 3's acknowledgement missing")
	}
	stopper.ticks = stopNoticeEveryTicks
	stopper.repeatStopNotice(nil)
	if len(spy.sent[3]) != 2 || len(spy.sent[2]) != 1 || len(spy.sent[4]) != 1 {
		t.Fatalf("notices after a repeat: %d to 2, %d to 3, %d to 4; want 1, 2, 1", len(spy.sent[2]), len(spy.sent[3]), len(spy.sent[4]))
	}
	stopper.onControl(nil, 3, (&control{StoppingSeen: &stoppingNotice{NodeID: 3}}).encode())
	if !closed() {
		t.Fatal("not done once brokers 2 and 3 acknowledged (4 is dead)")
	}
}
