package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Framing errors; each closes the connection.
var (
	errNegativeSize = errors.New("negative request size")
	errTooLarge     = errors.New("request larger than the limit")
)

// readChunk bounds each step of growing a request buffer, so that a client
// announcing a huge request costs memory only as its bytes actually arrive.
// Requests up to exactSize (every ordinary produce) are read into a buffer
// of their exact size at once: growing one in steps copied and zeroed a
// 3 MB produce several times and cost a fifth of the produce path's CPU.
const (
	readChunk = 1 << 20
	exactSize = 8 << 20
)

// readRequest reads one size-prefixed request and returns its body. A size
// below zero or above limit is refused before anything is allocated. A body
// of at least minPooledBody bytes is read into a buffer of bodies when
// bodies is not nil.
func readRequest(r io.Reader, limit int, bodies *bodyPool) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	size := int32(binary.BigEndian.Uint32(hdr[:]))
	switch {
	case size < 0:
		return nil, fmt.Errorf("%w: %d", errNegativeSize, size)
	case int64(size) > int64(limit):
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, size, limit)
	}
	return readBody(r, int(size), bodies)
}

// readBody reads exactly n bytes, growing the buffer as they arrive.
func readBody(r io.Reader, n int, bodies *bodyPool) ([]byte, error) {
	if n <= exactSize {
		b := bodies.get(n)
		if m, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("read request body (%d of %d bytes): %w", m, n, err)
		}
		return b, nil
	}
	b := make([]byte, 0, readChunk)
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), cap(b), 64*readChunk))
		}
		m, err := r.Read(b[len(b):min(cap(b), n)])
		b = b[:len(b)+m]
		if err != nil && len(b) < n {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read request body (%d of %d bytes): %w", len(b), n, err)
		}
	}
	return b, nil
}

// Request bodies of produce requests are what a broker allocates most: a
// new buffer for each, zeroed by the runtime and then overwritten by the
// read, then garbage once the partitions have proposed the batches (raft
// copies them). A bodyPool lets the connection reuse them: a buffer goes
// back once every partition has answered its share of the request (see
// serviceConn.produceDone), when nothing reads it any more.
const (
	minPooledBody = 64 << 10  // smaller bodies are cheap to allocate
	maxPooledBody = exactSize // larger ones are read in steps (readBody)
	// maxFreeBodies and maxFreeBytes bound what a pool keeps unused. Kept
	// buffers count as live heap, which the garbage collector doubles
	// into its target, so each kept byte costs about two of RSS (a
	// sync.Pool, which keeps what the last two collections left, added
	// ~40 MiB to the produce benchmark's peak RSS). A few requests' worth
	// is what a connection's pipeline reuses.
	maxFreeBodies = 4
	maxFreeBytes  = 24 << 20
)

// bodyPool keeps a few unused request buffers. It is safe for concurrent
// use; the nil pool allocates every buffer.
type bodyPool struct {
	mu        sync.Mutex
	free      [][]byte
	freeBytes int
}

func newBodyPool() *bodyPool { return &bodyPool{} }

// get returns a buffer of n bytes, whose content is undefined: the
// smallest kept one that is large enough, or a new one with room for a
// slightly larger request later (a quarter of n's power of two at most).
func (p *bodyPool) get(n int) []byte {
	if p == nil || n < minPooledBody || n > maxPooledBody {
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
func (p *bodyPool) put(b []byte) {
	if p == nil || cap(b) < minPooledBody || cap(b) > maxPooledBody {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, b[:0])
	p.freeBytes += cap(b)
	for len(p.free) > maxFreeBodies || p.freeBytes > maxFreeBytes {
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

// appendResponse appends one size-prefixed response to dst: the header
// (correlation id, and an empty tagged-field section when the response is
// flexible, except for ApiVersions, whose header is always v0 because the
// client cannot know our versions yet) and the body.
func appendResponse(dst []byte, correlationID int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = slices.Grow(dst, 8+sizeHint(resp))
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if resp.IsFlexible() && resp.Key() != keyApiVersions {
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// sizeHint estimates an encoded response's size where it is large enough to
// matter: a Fetch response is mostly its record sets, and letting the
// encoder grow the buffer by appending copied them over and over (half of
// the consume path's CPU).
func sizeHint(resp kmsg.Response) int {
	fr, ok := resp.(*kmsg.FetchResponse)
	if !ok {
		return 0
	}
	n := 64
	for _, t := range fr.Topics {
		n += 32 + len(t.Topic)
		for _, p := range t.Partitions {
			n += 64 + len(p.RecordBatches)
		}
	}
	return n
}
