package broker

import (
	"slices"
	"time"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/raftactor"
)

// handOverTimeouts bounds the hand-over of a clean stop, in election
// timeouts: raft gives up a transfer that has not finished within one, and
// the new leader is heard from a heartbeat later.
const handOverTimeouts = 2

// handOverPoll is how often the hand-over looks at the groups' status: a
// transfer takes a round trip or two on a LAN.
const handOverPoll = 5 * time.Millisecond

// handOverDrain is how long the broker goes on serving its Kafka clients
// after its leaderships moved. Clients that read metadata during the
// hand-over, from this broker or from one that had not heard of the new
// leader yet, send to this broker again at once (franz-go) or after
// retry.backoff.ms (the Java client: 100 ms); answered, they get
// NOT_LEADER_OR_FOLLOWER naming the new leader (KIP-951) and move there
// directly, where a closed socket costs them a reconnection backoff first.
const handOverDrain = 100 * time.Millisecond

// handOver is the first step of a clean stop, Kafka's controlled shutdown.
// Without it, every group this broker leads is left without a leader for an
// election timeout once the broker stops, as after a crash. The peers hear
// first that this broker is stopping, so that none hands it a leadership
// meanwhile (a preferred leader coming back); then every raft group it
// leads (partitions, offsets partitions, the controller) hands its
// leadership to its most caught-up voter that is alive
// (raftactor.StepDown), and handOver returns once each reports another
// leader, or after handOverTimeouts election timeouts. A group with no
// other live voter (replication factor 1, a single broker, peers down)
// has nobody to hand over to and is left as it is.
func (b *Broker) handOver() {
	electionTimeout := time.Duration(b.cfg.Raft.ElectionTicks) * b.cfg.TickInterval()
	start := time.Now()
	self := b.cfg.NodeID
	// A voter can take over if this broker heard from it within an
	// election timeout (a follower that long silent would start an
	// election itself) and it is not stopping too.
	alive := func(id uint64) bool {
		ago, heard := b.liveness.LastHeard(id)
		return heard && ago < electionTimeout && !b.liveness.Stopping(id)
	}
	canTakeOver := func(st *raftactor.GroupStatus) bool {
		return slices.ContainsFunc(st.Voters, func(id uint64) bool { return id != self && alive(id) })
	}

	// The peers acknowledge the notice, so none of them takes this broker
	// for a live voter to hand a leadership to once the transfers start.
	// The wait has a bound of its own: a live peer that never acknowledges
	// (an older version, a broker still asking whether it may start, one
	// that died a moment ago) must not use up the transfers' time, or
	// nothing would be handed over at all.
	announced := make(chan struct{})
	b.sys.Root.Send(b.controller, &controller.AnnounceStop{Alive: alive, Done: announced})
	wait := time.NewTimer(electionTimeout / 2)
	select {
	case <-announced:
	case <-wait.C:
	}
	wait.Stop()
	deadline := time.Now().Add(handOverTimeouts * electionTimeout)

	// asked holds when, and in which term, each group was asked to step
	// down. A group that leads again in a later term is asked again, and
	// so is one still leading an election timeout later: raft has given
	// up its transfer then (its voter may have died since), and the next
	// pick sees a fresher progress.
	type ask struct {
		term uint64
		at   time.Time
	}
	asked := make(map[uint64]ask)
	kept := 0
	poll := time.NewTicker(handOverPoll)
	defer poll.Stop()
	for {
		pending := 0
		kept = 0
		for _, st := range b.board.All() {
			a, wasAsked := asked[st.Group]
			switch {
			case st.Role == "leader" && !canTakeOver(st):
				kept++
			case st.Role == "leader":
				pending++
				if wasAsked && a.term == st.Term && time.Since(a.at) < electionTimeout {
					continue
				}
				if pid, ok := b.router.Lookup(st.Group); ok {
					asked[st.Group] = ask{term: st.Term, at: time.Now()}
					b.sys.Root.Send(pid, &raftactor.StepDown{Alive: alive})
				}
			case wasAsked && st.Leader == 0:
				pending++ // stepped down; the new leader is not heard from yet
			}
		}
		if pending == 0 || !time.Now().Before(deadline) {
			ev := b.log.Info()
			if pending > 0 {
				ev = b.log.Warn()
			}
			ev.Int("groups", len(asked)).Int("not_handed_over", pending).Int("without_successor", kept).
				Dur("took_ms", time.Since(start)).Msg("leaderships handed over before stopping")
			if len(asked) > pending {
				time.Sleep(handOverDrain)
			}
			return
		}
		<-poll.C
	}
}
