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
//   - a list with no broker but self while other brokers, not yet
//     removed, are members (of the running config, or of the controller as
//     voters, learners or registered brokers);
//   - a list that drops a majority of the controller's voters at once.
//
// self is this broker's id, old the ids of the running config's peers,
// next those of the reloaded one, and view the controller state as this
// broker sees it.
func checkPeerChange(self uint64, old, next []uint64, view *controller.State) error {
	members := map[uint64]bool{}
	for _, id := range slices.Concat(old, view.Voters, view.Learners, slices.Collect(maps.Keys(view.Brokers))) {
		if !view.IsRemoved(id) {
			members[id] = true
		}
	}
	delete(members, self)
	if len(members) > 0 && !slices.ContainsFunc(next, func(id uint64) bool { return id != self }) {
		return fmt.Errorf("the new peers list only this broker (%d), which is what an empty or missing peers block means, "+
			"while brokers %v are members: refusing to remove them all; drop brokers from peers one at a time",
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
