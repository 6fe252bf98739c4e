package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// pending is one request of a connection from the moment it is read until
// its response leaves the connection's order.
type pending struct {
	correlationID int32
	key, version  int16
	bytes         int64     // size on the wire, held against the in-flight budget
	start         time.Time // when it was read, for the latency histogram
	noResponse    bool      // acks=0 Produce: nothing is ever written for it

	done    bool
	resp    kmsg.Response // nil: nothing to write
	release func()        // Response.Release
	close   bool          // close the connection after it
}

// orderQueue holds a connection's requests in arrival order so that
// responses leave in that order, whatever order they complete in. Sequence
// numbers are consecutive: the request at the front has sequence head.
type orderQueue struct {
	head  uint64
	slots []pending
}

// push adds a request at the back and returns its sequence number.
func (q *orderQueue) push(p pending) uint64 {
	if len(q.slots) == 0 {
		q.slots = q.slots[:0:0] // drop a drained backing array's dead front
	}
	q.slots = append(q.slots, p)
	return q.head + uint64(len(q.slots)) - 1
}

// get returns the request numbered seq while it is in the queue.
func (q *orderQueue) get(seq uint64) *pending {
	if seq < q.head || seq-q.head >= uint64(len(q.slots)) {
		return nil
	}
	return &q.slots[seq-q.head]
}

// pop removes the front request if it is done.
func (q *orderQueue) pop() (pending, bool) {
	if len(q.slots) == 0 || !q.slots[0].done {
		return pending{}, false
	}
	p := q.slots[0]
	q.slots[0] = pending{} // let the response be collected
	q.slots = q.slots[1:]
	q.head++
	return p, true
}

// len is the number of requests not yet popped.
func (q *orderQueue) len() int { return len(q.slots) }

// drain removes every request, done or not, and returns them.
func (q *orderQueue) drain() []pending {
	out := q.slots
	q.head += uint64(len(out))
	q.slots = nil
	return out
}
