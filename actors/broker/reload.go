package broker

import (
	"fmt"
	"maps"
	"slices"

	"github.com/flotilla/flotilla/actors/controller"
)

// checkPeerChange refuses a reloaded peers list that would remove more of
// the cluster than an operator shrinking it means to. Removal is for good
// (node ids are never reused), and a peers block lost from the YAML reads
// as "this node alone" once Validate fills the default, so a reload that
// silently drained every other broker would be the most likely outcome of
// a mistake. It refuses:
//
//   - a list that Validate filled (defaulted: the file gave none) while
//     other brokers, not yet removed, are members (of the running config,
//     or of the controller as voters, learners or registered brokers);
//   - a list that drops a majority of the controller's voters at once.
//
// An explicit list naming this broker alone is a shrink to one broker: of
// two, it drops one, and is taken. A list taken asks for the removal of
// the brokers it drops, which starts only once a majority of the voters
// that stay asked (controller.State.RemovalAgreed): a file read while it
// was being written, cut inside its peers list, is a list that drops a
// few, and one broker's request removes nobody from three or more.
//
// self is this broker's id, old the ids of the running config's peers,
// next those of the reloaded one, and view the controller state as this
// broker sees it.
func checkPeerChange(self uint64, old, next []uint64, defaulted bool, view *controller.State) error {
	members := map[uint64]bool{}
	for _, id := range slices.Concat(old, view.Voters, view.Learners, slices.Collect(maps.Keys(view.Brokers))) {
		if !view.IsRemoved(id) {
			members[id] = true
		}
	}
	delete(members, self)
	if defaulted && len(members) > 0 {
		return fmt.Errorf("the config has no peers, which means this broker (%d) alone, "+
			"while brokers %v are members: refusing to remove them all; to shrink the cluster, list the brokers that stay",
			self, slices.Sorted(maps.Keys(members)))
	}

	// Majority of the voters the controller committed; before this broker
	// has seen any (it is still catching up), of the running config's.
	voters := view.Voters
	if len(voters) == 0 {
		voters = old
	}
	var dropped []uint64
	for _, id := range voters {
		if slices.Contains(old, id) && !slices.Contains(next, id) {
			dropped = append(dropped, id)
		}
	}
	if 2*len(dropped) > len(voters) {
		slices.Sort(dropped)
		return fmt.Errorf("the new peers drop brokers %v, a majority of the %d voters %v: refusing to remove them; drop brokers from peers one at a time",
			dropped, len(voters), slices.Sorted(slices.Values(voters)))
	}
	return nil
}
