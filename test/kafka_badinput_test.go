package test

import (
	"bytes"
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
	baseline := nd.mustMetric(t, "flotilla_kafka_connections_open")
	if baseline < 1 {
		t.Fatalf("flotilla_kafka_connections_open = %v with a client connected", baseline)
	}

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
		return nd.mustMetric(t, "flotilla_kafka_connections_open") <= baseline
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

// TestAcksZeroErrorClosesConnection: an acks=0 Produce gets no response, so
// a partition's refusal (not the leader, no such partition, a corrupt
// batch) closes the connection, as Kafka does, and the client refreshes
// its metadata; one that succeeds leaves the connection working.
func TestAcksZeroErrorClosesConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	const topic = "acks0"
	createTopic(t, nd.admin(t), topic, 1, nil)
	good := idempotentBatch(-1, -1, -1, 3)
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-1] ^= 0xff
	cases := []struct {
		name      string
		partition int32
		batch     []byte
		closes    bool
	}{
		{"accepted", 0, good, false},
		{"no such partition", 7, good, true},
		{"corrupt batch", 0, corrupt, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", nd.kafka, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			produce := kmsg.NewPtrProduceRequest()
			produce.Version, produce.Acks, produce.TimeoutMillis = 9, 0, 5000
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = topic
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition, rp.Records = c.partition, c.batch
			rt.Partitions = append(rt.Partitions, rp)
			produce.Topics = append(produce.Topics, rt)
			metadata := kmsg.NewPtrMetadataRequest()
			metadata.Version = 4
			var out []byte
			out = append(out, framed(append(requestHeader(0, 9, 1, "acks0", true), produce.AppendTo(nil)...))...)
			out = append(out, framed(append(requestHeader(3, 4, 2, "acks0", false), metadata.AppendTo(nil)...))...)
			if _, err := conn.Write(out); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			var size [4]byte
			_, err = io.ReadFull(conn, size[:])
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				t.Fatal("no Metadata response and the connection still open after 5 s")
			case c.closes && err == nil:
				t.Fatal("the connection answered after a refused acks=0 Produce; want it closed")
			case !c.closes && err != nil:
				t.Fatalf("the connection closed after an accepted acks=0 Produce: %v", err)
			}
			if !c.closes {
				body := make([]byte, binary.BigEndian.Uint32(size[:]))
				if _, err := io.ReadFull(conn, body); err != nil {
					t.Fatal(err)
				}
				if corr := int32(binary.BigEndian.Uint32(body)); corr != 2 {
					t.Fatalf("first response has correlation id %d, want 2 (the Metadata)", corr)
				}
			}
		})
	}
}
