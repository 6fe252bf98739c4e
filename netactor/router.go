package netactor

import (
	"maps"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// Router maps a raft group id to the PID of the actor that hosts the group on
// this node. Every connection reader looks groups up on every frame, while
// groups are created and deleted rarely, so the table is an immutable map
// replaced as a whole on each change: readers take no lock.
type Router struct {
	mu    sync.Mutex // serialises writers so that no update is lost
	table atomic.Pointer[map[uint64]*actor.PID]
}

// NewRouter returns an empty Router.
func NewRouter() *Router {
	r := &Router{}
	empty := map[uint64]*actor.PID{}
	r.table.Store(&empty)
	return r
}

// Lookup returns the actor hosting group.
func (r *Router) Lookup(group uint64) (*actor.PID, bool) {
	pid, ok := (*r.table.Load())[group]
	return pid, ok
}

// Set routes group to pid, replacing any previous route.
func (r *Router) Set(group uint64, pid *actor.PID) {
	r.update(func(m map[uint64]*actor.PID) { m[group] = pid })
}

// Remove stops routing group; its messages are dropped from now on.
func (r *Router) Remove(group uint64) {
	r.update(func(m map[uint64]*actor.PID) { delete(m, group) })
}

// Len returns the number of routed groups.
func (r *Router) Len() int {
	return len(*r.table.Load())
}

func (r *Router) update(change func(map[uint64]*actor.PID)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := maps.Clone(*r.table.Load())
	if next == nil {
		next = map[uint64]*actor.PID{}
	}
	change(next)
	r.table.Store(&next)
}
