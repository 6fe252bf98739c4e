package controller

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// TopicID is a topic's UUID, as Kafka's Metadata v10+ and DeleteTopics v6+
// carry it. A recreated topic gets a new id, so clients can tell the two
// apart.
type TopicID [16]byte

// NewTopicID returns a random (version 4) topic id; never the zero id, which
// Kafka reserves for "no id".
func NewTopicID() TopicID {
	var id TopicID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails on Linux
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// String is the id in hex.
func (id TopicID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText encodes the id as hex, so the log and /debug/cluster show it readably.
func (id TopicID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes a hex id.
func (id *TopicID) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(id) {
		return fmt.Errorf("topic id %q: want %d hex digits", b, 2*len(id))
	}
	_, err := hex.Decode(id[:], b)
	return err
}
