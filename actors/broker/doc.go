// Package broker starts one Flotilla broker's actors in dependency order and
// stops them in reverse: the raft transport (listener and one sender per
// peer), the storage actor and its WAL, the controller group's raft actor,
// the controller actor, and the debug endpoint. It owns no state of its own
// beyond the handles needed to stop them; cmd/flotilla runs it for the
// binary, and the in-process cluster tests run three of it in one process.
//
// Start binds every port before it spawns anything, so that a taken port
// fails startup with an error instead of leaving half a broker running. On
// a data dir that holds no data it runs the transport alone until a
// majority of its peers have said that they know no cluster in which its
// node id is registered (awaitPeers), and fails with a DataLostError if one
// does: a broker that lost its data must not vote with the id that had it.
//
// Stop is a controlled shutdown (handover.go): before anything stops, the
// peers hear that this broker is stopping and every raft group it leads
// hands its leadership to another voter, so that its clients move to the
// new leaders instead of waiting out an election timeout.
package broker
