package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

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
func readRequest(r io.Reader, limit int, bodies *bufPool) ([]byte, error) {
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
func readBody(r io.Reader, n int, bodies *bufPool) ([]byte, error) {
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

// responseHeaderBytes is the most a response's size prefix and header take.
const responseHeaderBytes = 9

// appendResponse appends one size-prefixed response to dst: the header
// (correlation id, and an empty tagged-field section when the response is
// flexible, except for ApiVersions, whose header is always v0 because the
// client cannot know our versions yet) and the body.
func appendResponse(dst []byte, correlationID int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = slices.Grow(dst, responseHeaderBytes+sizeHint(resp))
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
