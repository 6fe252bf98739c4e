// Package debug owns the broker's debug HTTP endpoint: the actor that runs
// the HTTP server on debug.listen, and the handlers, which read only
// immutable published views (actor stats, raft group status, the controller
// state, Prometheus registries) and never message the actors they describe,
// so a stuck actor cannot stall the endpoint that is meant to show it.
//
// Routes: /debug/actors, /debug/raft, /debug/cluster (JSON), /healthz,
// /metrics (Prometheus), /debug/pprof/, and a page for a person at /.
//
// The actor (kind "debug", name "debug") takes no messages of its own: it
// serves from Started and shuts the server down on Stopping.
package debug
