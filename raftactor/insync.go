package raftactor

import "slices"

// InSyncTracker keeps the ISR of a partition-like group (a partition, an
// offsets-topic partition, the controller) on its leader by Kafka's time
// rule (replica.lag.time.max.ms): a replica is in sync while it has caught
// up with its leader within the lag bound. It applies Kafka's rule for
// when a follower was last caught up (Replica.updateFetchState) to
// samples of the raft progress: a follower that matches the leader's
// durable end at a sample is caught up then; one that matches the end the
// leader had at the previous sample was caught up at that sample, as
// Kafka counts a fetch that reaches the log end of the follower's previous
// fetch. Without the second rule a follower that keeps up with a steady
// stream of appends, always the few milliseconds of a round trip behind,
// is seldom seen at the very end, and left the ISR under load (with
// min.insync.replicas 2, acks=all producers then got NOT_ENOUGH_REPLICAS
// from a healthy cluster). A follower raft has not heard from lately (a
// dead one's match stays at the end of an idle log) is never counted
// caught up, and one whose broker is stopping cleanly leaves at once.
//
// One whose broker restarted (ReplicaProgress.Restarts moved) leaves at
// once too, and comes back only once it matches the leader's end again:
// a broker killed and started again within the lag bound would otherwise
// count as caught up by what its previous process had, while everything
// written since it died is missing from it, and min.insync.replicas, the
// ISR in Metadata and the broker's /healthz would count it. Kafka fences a
// broker that registers with a new incarnation and takes it out of every
// ISR (ClusterControlManager.registerBroker, ReplicationControlManager.
// handleBrokerFenced), and refuses a replica of a stale broker epoch into
// one (KIP-903).
//
// Raft's RecentActive flag alone is no ISR: CheckQuorum clears it at
// every election timeout, so a sample taken just after sees only the
// leader, and samples paced in step with the ticks keep meeting the same
// phase. Here it only decides whether a follower's match is news.
//
// The zero value is ready to use; it is not safe for concurrent use.
type InSyncTracker struct {
	at       map[uint64]uint64 // replica → last tick at which it had what the leader had then
	restarts map[uint64]uint64 // replica → its broker's Restarts at its last sample
	prevEnd  uint64            // the leader's durable end at the previous sample
	prevTick uint64
	havePrev bool
	progress []ReplicaProgress // Sample's scratch
}

// ReplicaProgress is one replica's raft progress as the leader sees it.
type ReplicaProgress struct {
	ID, Match uint64
	// Active is raft's RecentActive: the leader heard from the replica
	// within the current election timeout.
	Active bool
	// Stopping is true when the replica's broker is stopping cleanly
	// (Config.Stopping): it leaves the ISR at once, as Kafka's controlled
	// shutdown takes a broker out of the ISRs.
	Stopping bool
	// Restarts is how many times the replica's broker was seen to restart
	// (Config.Restarts): when it moves between samples, the replica
	// leaves the ISR until it has caught up again.
	Restarts uint64
}

// Reset forgets every sample: a new leadership starts from what its
// replicas show it.
func (c *InSyncTracker) Reset() { *c = InSyncTracker{progress: c.progress[:0]} }

// Sample records the progress of h's group, which h leads, at tick now and
// returns the ISR, sorted: the leader and the replicas (members of
// replicas) caught up within lag ticks.
func (c *InSyncTracker) Sample(h *Handle, now uint64, replicas []uint64, lag uint64) []uint64 {
	self := h.NodeID()
	c.progress = c.progress[:0]
	h.WithProgress(func(id, match uint64, active bool) {
		p := ReplicaProgress{ID: id, Match: match, Active: active}
		if id != self {
			p.Stopping, p.Restarts = h.Stopping(id), h.Restarts(id)
		}
		c.progress = append(c.progress, p)
	})
	return c.Observe(now, self, replicas, c.progress, lag)
}

// Observe records the progress seen at tick now by leader self, its own
// included (its match is its durable end), and returns the ISR, sorted:
// self and the replicas (members of replicas) caught up within lag ticks.
// A member that is not a replica (one leaving, or not yet assigned) is
// never in it.
func (c *InSyncTracker) Observe(now, self uint64, replicas []uint64, progress []ReplicaProgress, lag uint64) []uint64 {
	if c.at == nil {
		c.at, c.restarts = map[uint64]uint64{}, map[uint64]uint64{}
	}
	var end uint64
	for _, p := range progress {
		if p.ID == self {
			end = p.Match
		}
	}
	var isr []uint64
	for _, p := range progress {
		if !slices.Contains(replicas, p.ID) {
			continue
		}
		if p.Stopping {
			delete(c.at, p.ID)
			continue
		}
		// A restart is news only against an earlier sample of the
		// replica: a new leadership starts from what it sees.
		last, seen := c.restarts[p.ID]
		restarted := seen && last != p.Restarts
		c.restarts[p.ID] = p.Restarts
		if restarted {
			delete(c.at, p.ID)
		}
		switch {
		case p.ID == self || p.Match >= end && p.Active:
			c.at[p.ID] = now
		// The previous sample may predate the restart: a restarted
		// replica is caught up once it has the end as of now. Its match
		// may be its previous process's acknowledgement, but that is
		// durable, so it still has what that match says.
		case !restarted && c.havePrev && p.Match >= c.prevEnd && p.Active:
			c.at[p.ID] = max(c.at[p.ID], c.prevTick)
		}
		if last, ok := c.at[p.ID]; ok && now-last <= lag {
			isr = append(isr, p.ID)
		}
	}
	// A replica that left the group (a reassignment took it out) forgets
	// its samples: added back, it starts empty, and is in sync only once
	// it has caught up again, not on the strength of what it had before.
	for id := range c.at {
		if !hasProgress(progress, id) {
			delete(c.at, id)
		}
	}
	for id := range c.restarts {
		if !hasProgress(progress, id) {
			delete(c.restarts, id)
		}
	}
	c.prevEnd, c.prevTick, c.havePrev = end, now, true
	slices.Sort(isr)
	return isr
}

// hasProgress reports whether progress has replica id's.
func hasProgress(progress []ReplicaProgress, id uint64) bool {
	for _, p := range progress {
		if p.ID == id {
			return true
		}
	}
	return false
}
