package partition

import "fmt"

// A partition's raft entries are its own: one type byte, then the body.
// Record batches travel as the leader stamped them, so the body of a batch
// entry is exactly what the segment stores.
const (
	entryBatch    byte = 1 // body: one stamped record batch
	entryLogStart byte = 2 // body: 8-byte big-endian new log start offset
)

func batchEntry(batch []byte) []byte {
	e := make([]byte, 1+len(batch))
	e[0] = entryBatch
	copy(e[1:], batch)
	return e
}

func logStartEntry(offset int64) []byte {
	e := make([]byte, 9)
	e[0] = entryLogStart
	for i := 0; i < 8; i++ {
		e[1+i] = byte(uint64(offset) >> (56 - 8*i))
	}
	return e
}

// decodeEntry splits an entry into its type and body.
func decodeEntry(data []byte) (byte, []byte, error) {
	if len(data) == 0 {
		return 0, nil, fmt.Errorf("empty partition entry")
	}
	switch data[0] {
	case entryBatch:
		return entryBatch, data[1:], nil
	case entryLogStart:
		if len(data) != 9 {
			return 0, nil, fmt.Errorf("log start entry of %d bytes", len(data))
		}
		return entryLogStart, data[1:], nil
	}
	return 0, nil, fmt.Errorf("unknown partition entry type %d", data[0])
}

func bodyOffset(b []byte) int64 {
	var v uint64
	for i := 0; i < 8; i++ {
		v = v<<8 | uint64(b[i])
	}
	return int64(v)
}
