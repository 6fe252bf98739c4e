package test

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// requestHeader is a Kafka request header v1 (key, version, correlation id,
// client id); flexible versions add an empty tagged-field section.
func requestHeader(key, version int16, correlationID int32, clientID string, flexible bool) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(correlationID))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	if flexible {
		b = append(b, 0)
	}
	return b
}

// framed prefixes body with its size.
func framed(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// TestKafkaPortBadInput sends the Kafka port what no client should: each
// payload gets its connection closed by the broker (counted by reason in
// /metrics), nothing else is disturbed, and a client connected all along
// keeps producing and consuming.
func TestKafkaPortBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	const topic = "survivor"
	createTopic(t, nd.admin(t), topic, 1, nil)
	cl := nd.client(t, kgo.DefaultProduceTopic(topic))
	ctx := testCtx(t, 60*time.Second)
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatalf("produce before the bad input: %v", err)
	}

	// The clients' own connections; kgo may close idle ones, never opens
	// more without being asked to.
	baseline := nd.metric(t, "flotilla_kafka_connections_open")

	rng := rand.New(rand.NewPCG(1, 2))
	junk := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	metadataV4 := func() []byte {
		req := kmsg.NewPtrMetadataRequest()
		req.Version = 4
		for _, name := range []string{"one", "two", "three"} {
			mt := kmsg.NewMetadataRequestTopic()
			mt.Topic = kmsg.StringPtr(name)
			req.Topics = append(req.Topics, mt)
		}
		return append(requestHeader(3, 4, 1, "bad", false), req.AppendTo(nil)...)
	}()

	cases := []struct {
		name    string
		payload []byte
		// halfClose ends our side after the payload (a request cut short
		// by a client that goes away); otherwise the broker must close on
		// its own.
		halfClose bool
		reason    string // the rejection counted in /metrics; "" for none
	}{
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: kafka\r\n\r\n"), false, "request_too_large"},
		{"oversized size", binary.BigEndian.AppendUint32(nil, 1<<31-1), false, "request_too_large"},
		{"200 MB size", append(binary.BigEndian.AppendUint32(nil, 200<<20), junk(1000)...), false, "request_too_large"},
		{"negative size", binary.BigEndian.AppendUint32(nil, 0xffffff00), false, "negative_size"},
		{"header shorter than a header", framed([]byte{0, 3, 0}), false, "malformed_request"},
		{"unknown api key", framed(append(requestHeader(0x4242, 0, 1, "bad", false), junk(64)...)), false, "unknown_api"},
		{"unsupported version", framed(append(requestHeader(0, 99, 1, "bad", false), junk(64)...)), false, "unsupported_version"},
		{"produce v9 of random bytes", framed(append(requestHeader(0, 9, 1, "bad", true), junk(4096)...)), false, "malformed_request"},
		{"truncated metadata request", framed(metadataV4[:len(metadataV4)-6]), false, "malformed_request"},
		{"array of 2^31-1 topics in 30 bytes", framed(binary.BigEndian.AppendUint32(requestHeader(3, 4, 1, "bad", false), 1<<31-1)), false, "malformed_request"},
		{"frame cut short", append(binary.BigEndian.AppendUint32(nil, 1000), metadataV4...), true, ""},
		{"random bytes", junk(64 << 10), false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			series := `flotilla_kafka_connections_rejected_total{reason="` + c.reason + `"}`
			before := nd.metric(t, series)
			conn, err := net.DialTimeout("tcp", nd.kafka, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(c.payload); err != nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("write: %v", err)
			}
			if c.halfClose {
				_ = conn.(*net.TCPConn).CloseWrite()
			}
			// The broker closes the connection: the read ends (EOF or a
			// reset when it closed with our bytes unread), it does not time
			// out, and no response is ever sent for any of these.
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := io.Copy(io.Discard, conn)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open 5 s after the payload")
			}
			if n != 0 {
				t.Errorf("the broker answered %d bytes", n)
			}
			if c.reason != "" {
				if after := nd.metric(t, series); after != before+1 {
					t.Errorf("%s went from %v to %v, want +1", series, before, after)
				}
			}
		})
	}

	// Every bad connection is released by the broker.
	waitFor(t, 5*time.Second, "bad connections released", func() bool {
		return nd.metric(t, "flotilla_kafka_connections_open") <= baseline
	})
	// The client connected all along still produces, and reads everything.
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("produce after the bad input: %v", err)
	}
	got := consumeAll(t, ctx, nd, topic, 2)
	if len(got) != 2 || string(got[0].Value) != "before" || string(got[1].Value) != "after" {
		t.Fatalf("read back %d records, want before and after", len(got))
	}
	if !nd.running() {
		t.Fatalf("the broker exited")
	}
}
