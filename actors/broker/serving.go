package broker

import (
	"slices"
	"time"
)

// leadersWait bounds how long a broker that has caught up with the
// controller waits for its live peers to tell it what they lead before it
// serves Kafka clients. A peer sends it as soon as its connection to this
// broker is up (netactor's leaders.go), and redials at least every
// netactor.DefaultBackoffMax (1 s), with the raft listener open from the
// start: a live peer is heard from well within this. One that never sends
// it (a broker from before this change, or one that is down but still
// counts alive in the first session timeout after this broker started)
// holds the listener closed this long at most.
const leadersWait = 2 * time.Second

// serveWhenLeadersKnown closes serving, which opens the Kafka listener and
// lets /healthz answer 200, once the controller state has caught up and
// every live peer has told this broker everything it leads, or leadersWait
// after the catch-up. A broker that served before that would answer
// Metadata with LEADER_NOT_AVAILABLE for partitions that live brokers lead,
// each of which a client then parks until its next metadata refresh (5 s
// with kgo's defaults); Kafka answers LEADER_NOT_AVAILABLE only when the
// leader is not a live broker (KRaftMetadataCache.getPartitionMetadata), and
// a Kafka broker serves only once its metadata cache has caught up. It
// returns early when stop is closed.
func (b *Broker) serveWhenLeadersKnown(serving chan<- struct{}, stop <-chan struct{}) {
	select {
	case <-b.machine.WhenCaughtUp():
	case <-stop:
		return
	}
	caughtUp := time.Now()
	deadline := time.NewTimer(leadersWait)
	defer deadline.Stop()
	// Liveness changes without a signal: a peer that announces it stops
	// is waited for no more.
	recheck := time.NewTicker(b.cfg.TickInterval())
	defer recheck.Stop()
	for {
		waiting := b.peersNotHeard()
		if len(waiting) == 0 {
			b.log.Info().Dur("waited_ms", time.Since(caughtUp)).Msg("every live peer's leaderships known; serving Kafka clients")
			b.servedFrom.Store(b.machine.View().Applied)
			close(serving)
			return
		}
		select {
		case <-b.leaders.Completed():
		case <-recheck.C:
		case <-deadline.C:
			b.log.Info().Uints64("peers", waiting).Dur("waited_ms", time.Since(caughtUp)).
				Msg("serving Kafka clients without having heard what these peers lead")
			b.servedFrom.Store(b.machine.View().Applied)
			close(serving)
			return
		case <-stop:
			return
		}
	}
}

// peersNotHeard returns the registered brokers besides this one that count
// alive and have not yet sent everything they lead.
func (b *Broker) peersNotHeard() []uint64 {
	view := b.machine.View()
	var ids []uint64
	for id := range view.Brokers {
		if id == b.cfg.NodeID || view.IsRemoved(id) || b.leaders.Complete(id) ||
			!b.liveness.Alive(id) || b.liveness.Stopping(id) {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
