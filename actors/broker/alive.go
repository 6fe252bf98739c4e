package broker

import (
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/netactor"
)

// aliveFunc returns who this broker counts alive, for Metadata, the leader
// hints and the placement of new replicas: the liveness's judgement,
// unless that finds most of the controller's voters dead. Then this broker
// is far more likely the one cut off from the others, and it fences
// nobody, as a Kafka broker cut off from its controller goes on serving
// its last metadata: its clients keep the brokers they can still reach,
// where a Metadata listing this broker alone would leave them nowhere else
// to ask.
//
// A broker that announced it is stopping (netactor.Liveness.Stopping) is
// alive here: as a Kafka broker in controlled shutdown, it stays
// unfenced for what it still leads (kafka.ClusterSource.stoppingLeaders).
// What must not count on it staying asks Stopping too (stayingFunc).
func aliveFunc(l *netactor.Liveness, self uint64, view func() *controller.State) func(id uint64) bool {
	return func(id uint64) bool {
		if l.Alive(id) {
			return true
		}
		voters := view().Voters
		live := 0
		for _, v := range voters {
			if v == self || l.Alive(v) {
				live++
			}
		}
		return 2*live <= len(voters)
	}
}

// stayingFunc returns who this broker counts alive and not stopping
// (alive, from aliveFunc), for the controller: new replicas, and the
// removals it drives, count on a broker that will stay, and one that
// announced a clean stop will not, whatever else this broker hears.
func stayingFunc(l *netactor.Liveness, alive func(id uint64) bool) func(id uint64) bool {
	return func(id uint64) bool { return !l.Stopping(id) && alive(id) }
}
