package broker

import (
	"fmt"
	"time"

	"github.com/flotilla/flotilla/netactor"
)

// DuplicateIDError is why a broker stops before it serves: a peer takes
// its node id's raft messages from another live process (netactor's
// holds), as Kafka's controller refuses a broker registration whose id
// has a live session with another incarnation
// (DUPLICATE_BROKER_REGISTRATION). The running process is left alone.
type DuplicateIDError struct {
	*netactor.RefusedError
}

func (e *DuplicateIDError) Error() string {
	return fmt.Sprintf("%v. Two processes must not run with one node id: stop this one, or give it a node_id of its own "+
		"(a new broker joins with bootstrap: false and an empty data_dir)", e.RefusedError)
}

func (e *DuplicateIDError) Unwrap() error { return e.RefusedError }

// Duplicate is sent, once, a *DuplicateIDError when a peer refuses this
// broker's raft connections, before the broker serves, because another
// live process holds its node id there, and goes on refusing them for a
// hold timeout (netactor.HoldTimeout): the broker must then stop, as Start
// does while it waits for its peers. A predecessor on its way out (a
// clean stop still handing over, a crash whose connections a busy peer
// has yet to see close) loses its hold within that time, and its
// successor starts as it would have. A broker that already serves keeps
// running (it is the process its peers knew, which lost its hold during a
// network cut), and its senders redial until the other process is gone.
func (b *Broker) Duplicate() <-chan error { return b.duplicate }

// onRefused is the raft transport's OnRefused.
func (b *Broker) onRefused(err *netactor.RefusedError) {
	select {
	case <-b.serving:
		b.refusedServing.Do(func() {
			b.log.Error().Err(err).Msg("a peer takes this broker's node id for another process's; this broker serves already, and goes on: stop the other process")
		})
		return
	default:
	}
	// One peer's refusals on end, not two moments of two peers': each
	// could be a predecessor's connection a peer had yet to see close.
	if time.Since(err.Since) >= netactor.HoldTimeout(b.cfg.TickInterval()) {
		b.duplicateOnce.Do(func() {
			b.duplicate <- &DuplicateIDError{RefusedError: err}
		})
	}
}
