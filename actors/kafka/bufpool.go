package kafka

import (
	"math/bits"
	"slices"
	"sync"
)

// The largest buffers a broker allocates are the bodies of produce requests
// and the encoded Fetch responses: each a new buffer, zeroed by the runtime
// and then overwritten, then garbage once used. A bufPool lets the
// listener's connections reuse them:
//
//   - A produce body goes back once every partition has answered its share
//     of the request (see serviceConn.produceDone), when nothing reads it
//     any more.
//   - A response buffer larger than a connection keeps for itself
//     (keepWriteBytes) goes back once the writer has written it. Clearing
//     a fresh multi-MiB buffer for each Fetch response was a quarter of
//     the consume path's CPU.
//   - The record sets a Fetch reads from the partitions' segments go back
//     once the response that carries them is encoded (Response.Release);
//     clearing them was most of what was left.
const (
	minPooledBody = 64 << 10  // smaller bodies are cheap to allocate
	maxPooledBody = exactSize // larger ones are read in steps (readBody)
	// Response buffers above keepWriteBytes go to the pool; one larger
	// than maxPooledWrite is left to the garbage collector, as it would
	// take most of what a pool keeps.
	maxPooledWrite = 16 << 20
	// A pool keeps at most maxFreeBuffers (maxFreeRecordSets for record
	// sets, of which a Fetch response has one per partition) and
	// maxFreeBytes unused. Kept buffers count as live heap, which the
	// garbage collector doubles into its target, so each kept byte costs
	// about two of RSS (a sync.Pool, which keeps what the last two
	// collections left, added ~40 MiB to the produce benchmark's peak
	// RSS). A few requests' or responses' worth is what the connections'
	// pipelines reuse. A listener's three pools (bodies, responses,
	// record sets) keep at most 72 MiB between them.
	maxFreeBuffers    = 4
	maxFreeRecordSets = 32
	maxFreeBytes      = 24 << 20
)

// bufPool keeps a few unused buffers of between min and max bytes, at most
// maxFree of them. It is safe for concurrent use; the nil pool allocates
// every buffer.
type bufPool struct {
	min, max  int
	maxFree   int
	mu        sync.Mutex
	free      [][]byte
	freeBytes int
}

// newBodyPool returns the pool of produce request bodies.
func newBodyPool() *bufPool {
	return &bufPool{min: minPooledBody, max: maxPooledBody, maxFree: maxFreeBuffers}
}

// newWritePool returns the pool of large response buffers.
func newWritePool() *bufPool {
	return &bufPool{min: keepWriteBytes + 1, max: maxPooledWrite, maxFree: maxFreeBuffers}
}

// newRecordSetPool returns the pool of the record sets Fetch reads; those
// under minPooledBody are cheap to allocate.
func newRecordSetPool() *bufPool {
	return &bufPool{min: minPooledBody, max: maxPooledBody, maxFree: maxFreeRecordSets}
}

// get returns a buffer of n bytes, whose content is undefined: the
// smallest kept one that is large enough, or a new one with room for a
// slightly larger request or response later (a quarter of n's power of
// two at most).
func (p *bufPool) get(n int) []byte {
	if p == nil || n < p.min || n > p.max {
		return make([]byte, n)
	}
	p.mu.Lock()
	best := -1
	for i, b := range p.free {
		if cap(b) >= n && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := p.free[best]
		p.free = slices.Delete(p.free, best, best+1)
		p.freeBytes -= cap(b)
		p.mu.Unlock()
		return b[:n]
	}
	p.mu.Unlock()
	step := 1 << (bits.Len(uint(n)) - 3) // n's power of two / 4
	return make([]byte, n, (n+step-1)/step*step)
}

// put gives back a buffer that get returned. The caller must be the last
// to hold any part of it. Over the bounds, the smallest kept buffers go
// to the garbage collector first.
func (p *bufPool) put(b []byte) {
	if p == nil || cap(b) < p.min || cap(b) > p.max {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.free {
		if &f[:1][0] == &b[:1][0] {
			// Two owners would read and write it at once: stop the
			// connection that tried rather than corrupt a response.
			panic("kafka: a pooled buffer was given back twice")
		}
	}
	p.free = append(p.free, b[:0])
	p.freeBytes += cap(b)
	for len(p.free) > p.maxFree || p.freeBytes > maxFreeBytes {
		small := 0
		for i, f := range p.free {
			if cap(f) < cap(p.free[small]) {
				small = i
			}
		}
		p.freeBytes -= cap(p.free[small])
		p.free = slices.Delete(p.free, small, small+1)
	}
}
