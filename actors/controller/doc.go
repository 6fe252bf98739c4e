// Package controller owns the cluster's metadata: the state machine of raft
// group 0 (the controller group), which every voter broker applies in the same
// order, and the controller actor, which keeps this broker's own entries in
// that state (its registration, the cluster id) by proposing them until they
// are applied.
//
// The state machine (StateMachine) is driven by the group's raftactor and
// publishes every applied state as an immutable *State through View, which
// anyone may read without messages: the debug endpoint, Kafka Metadata later,
// the controller actor itself.
//
// The controller actor (kind "controller", name "controller") takes:
//   - raftactor.Tick: every few ticks it compares the applied state with what
//     this broker should have there and proposes the difference to the
//     controller group. Proposals on a follower are forwarded by raft to the
//     leader; a forwarded proposal can be lost (leader change, dropped
//     message), so nothing is assumed applied until it shows in the state.
//     While this broker leads the controller group it also keeps the group's
//     ISR by the partitions' rule and broadcasts it with their leaderships
//     (insync.go), so that a voter's /healthz knows whether it is caught up.
//   - raftactor.Proposed: the outcome of its last proposal.
//
// A broker whose data dir holds no data runs the probe actor (NewProbe,
// probe.go) before anything else: it asks the peers whether its id is a
// registered broker of their cluster, which every controller actor answers.
//
// Invariants: the state changes only in Apply, in log order, identically on
// every replica; Apply never reads the clock or the local config; commands
// are idempotent, so a retried proposal applied twice changes nothing more.
package controller
