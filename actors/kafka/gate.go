package kafka

import "sync"

// inflightGate is the credit between a connection's reader goroutine and its
// actor: the reader adds each request's bytes and waits before reading the
// next while the total is over the limit; the actor releases the bytes as
// responses are written. One request is always admitted when nothing is in
// flight, so a request up to MaxRequestBytes gets through whatever the limit.
type inflightGate struct {
	limit int64
	wake  chan struct{} // capacity one: a release since the reader last looked
	done  chan struct{} // closed when the connection ends

	mu       sync.Mutex
	inflight int64
	closed   bool
}

func newInflightGate(limit int64) *inflightGate {
	return &inflightGate{limit: limit, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// wait blocks while the bytes in flight are over the limit. It returns false
// when the connection has ended.
func (g *inflightGate) wait() bool {
	for {
		g.mu.Lock()
		over, closed := g.inflight > g.limit, g.closed
		g.mu.Unlock()
		switch {
		case closed:
			return false
		case !over:
			return true
		}
		select {
		case <-g.wake:
		case <-g.done:
			return false
		}
	}
}

// add counts n more bytes in flight.
func (g *inflightGate) add(n int64) {
	g.mu.Lock()
	g.inflight += n
	g.mu.Unlock()
}

// release counts n bytes as no longer in flight and wakes the reader.
func (g *inflightGate) release(n int64) {
	if n == 0 {
		return
	}
	g.mu.Lock()
	g.inflight -= n
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// close ends the connection for the goroutines that watch done.
func (g *inflightGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		close(g.done)
	}
}

// ended reports whether close was called.
func (g *inflightGate) ended() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// inFlight returns the bytes in flight.
func (g *inflightGate) inFlight() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inflight
}
