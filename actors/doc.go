// Package actors is how Flotilla runs its actors. Every actor in a broker is
// spawned through a System, which gives it a kind and a stable name, an explicit
// supervisor, a receiver middleware that logs a panic with its stack before the
// supervisor restarts the actor, and the counters the debug endpoint lists
// (mailbox length, messages processed, restarts).
//
// The actor packages themselves live below this directory (storage, controller,
// debug, …) or beside it (raftactor, netactor); this package owns none of their
// state, only the bookkeeping common to all of them.
package actors
