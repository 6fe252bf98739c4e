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
// not alive, whatever else this broker hears: it said so itself, as a
// Kafka broker in controlled shutdown is fenced. Clients then leave it out
// of the brokers they ask, instead of meeting its closed sockets.
func aliveFunc(l *netactor.Liveness, self uint64, view func() *controller.State) func(id uint64) bool {
	return func(id uint64) bool {
		if l.Stopping(id) {
			return false
		}
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
