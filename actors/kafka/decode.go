package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Decoding errors. Each closes the connection: Kafka has no way to answer a
// request it cannot read, or one of an API or version it does not serve
// (ApiVersions aside, see decodedRequest).
var (
	errMalformed          = errors.New("malformed request")
	errUnknownAPI         = errors.New("unknown api key")
	errUnsupportedVersion = errors.New("unsupported api version")
)

// decodedRequest is a request as the reader hands it to the connection actor.
type decodedRequest struct {
	key           int16
	version       int16
	correlationID int32
	clientID      *string
	// msg is the decoded body. It is nil for an ApiVersions request of a
	// version we do not serve, whose body we cannot read: KIP-511 answers it
	// with UNSUPPORTED_VERSION and the versions we have, so that the client
	// retries with one of them.
	msg kmsg.Request
	// body is the request's bytes, which msg's byte fields share, when
	// they are to go back to bodies once the request is answered.
	body   []byte
	bodies *bufPool
}

// decodeRequest decodes a request body (everything after the size): the
// header (api key, api version, correlation id, client id, and tagged fields
// when the request version is flexible), then the request itself. It never
// panics and never allocates more than a small multiple of len(body).
func decodeRequest(body []byte, served *versions) (*decodedRequest, error) {
	if len(body) < 8 {
		return nil, fmt.Errorf("%w: %d bytes is shorter than a request header", errMalformed, len(body))
	}
	d := &decodedRequest{
		key:           int16(binary.BigEndian.Uint16(body)),
		version:       int16(binary.BigEndian.Uint16(body[2:])),
		correlationID: int32(binary.BigEndian.Uint32(body[4:])),
	}
	rest := body[8:]
	// ControlledShutdown v0 predates the client id; every other header has it.
	if d.key != keyControlledShut || d.version != 0 {
		var err error
		if d.clientID, rest, err = readNullableString(rest); err != nil {
			return nil, fmt.Errorf("%w: client id: %w", errMalformed, err)
		}
	}
	r, ok := served.lookup(d.key)
	if !ok {
		return nil, fmt.Errorf("%w %d", errUnknownAPI, d.key)
	}
	if d.version < r.Min || d.version > r.Max {
		if d.key == keyApiVersions {
			return d, nil
		}
		return nil, fmt.Errorf("%w: %s v%d, served are v%d..v%d", errUnsupportedVersion, kmsg.NameForKey(d.key), d.version, r.Min, r.Max)
	}
	msg := kmsg.RequestForKey(d.key)
	msg.SetVersion(d.version)
	if msg.IsFlexible() {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return nil, fmt.Errorf("%w: header tags: %w", errMalformed, err)
		}
	}
	if err := msg.ReadFrom(rest); err != nil {
		return nil, fmt.Errorf("%w: %s v%d: %w", errMalformed, kmsg.NameForKey(d.key), d.version, err)
	}
	// Only a flexible version's compact strings can be longer than
	// maxString, and only in a body longer than that: most requests are
	// not walked at all.
	if msg.IsFlexible() && len(rest) > maxString {
		if n := longString(reflect.ValueOf(msg)); n > 0 {
			return nil, fmt.Errorf("%w: %s v%d: a string of %d bytes, longer than Kafka reads (%d)", errMalformed, kmsg.NameForKey(d.key), d.version, n, maxString)
		}
	}
	d.msg = msg
	return d, nil
}

// maxString is the longest string Kafka reads in a request. Its
// generated readers refuse a longer one even where the length is a
// varint (compact strings, flexible versions: "string field ... had
// invalid length", MessageDataGenerator), so the request is not served
// and the connection is closed, for every request (Produce's
// transactional id and topics, Fetch's rack and topics too). Flotilla
// refuses it alike: such a string would not fit the int16-length strings
// that the group coordinator's records hold, or any other Kafka
// structure.
const maxString = math.MaxInt16

// longString returns the length of the first string in v, a decoded
// request, longer than maxString (0: none is). Byte slices are data, not
// strings.
func longString(v reflect.Value) int {
	switch v.Kind() {
	case reflect.String:
		if v.Len() > maxString {
			return v.Len()
		}
	case reflect.Pointer:
		if !v.IsNil() {
			return longString(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if n := longString(v.Field(i)); n > 0 {
				return n
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return 0
		}
		for i := range v.Len() {
			if n := longString(v.Index(i)); n > 0 {
				return n
			}
		}
	}
	return 0
}

var errShort = errors.New("not enough data")

// readNullableString reads an int16-length string; length -1 is null.
func readNullableString(b []byte) (*string, []byte, error) {
	if len(b) < 2 {
		return nil, nil, errShort
	}
	n := int(int16(binary.BigEndian.Uint16(b)))
	b = b[2:]
	switch {
	case n == -1:
		return nil, b, nil
	case n < 0:
		return nil, nil, fmt.Errorf("negative string length %d", n)
	case n > len(b):
		return nil, nil, errShort
	}
	s := string(b[:n])
	return &s, b[n:], nil
}

// skipTags skips a tagged-field section: a count, then each tag's key, size
// and data, all sizes unsigned varints.
func skipTags(b []byte) ([]byte, error) {
	n, b, err := readUvarint(b)
	if err != nil {
		return nil, err
	}
	for ; n > 0; n-- {
		if _, b, err = readUvarint(b); err != nil { // the tag's key
			return nil, err
		}
		var size uint32
		if size, b, err = readUvarint(b); err != nil {
			return nil, err
		}
		if uint64(size) > uint64(len(b)) {
			return nil, errShort
		}
		b = b[size:]
	}
	return b, nil
}

// readUvarint reads an unsigned varint of at most 32 bits.
func readUvarint(b []byte) (uint32, []byte, error) {
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, nil, errShort
	case n < 0 || v > 1<<32-1:
		return 0, nil, errors.New("varint overflows 32 bits")
	}
	return uint32(v), b[n:], nil
}
