package kafka

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestSlowButSteadyReaderGetsItsResponse: a consumer on a slow link that
// keeps reading gets a large Fetch response whole, however long the whole
// takes to arrive, as from a Kafka broker (which has no write deadline:
// only connections.max.idle.ms). The write timeout bounds a lack of
// progress only. Scaled down: a 16 MiB answer read at 8 MB/s under a
// 500 ms write timeout stands for a 48 MiB one read at 1.25 MB/s under
// the default 30 s. (The kernel wakes a blocked writer only once a good
// part of the send buffer, up to a few MiB, has drained, so the timeout
// cannot be much shorter.)
func TestSlowButSteadyReaderGetsItsResponse(t *testing.T) {
	const (
		size    = 16 << 20
		rate    = 8_000_000 // bytes per second
		timeout = 500 * time.Millisecond
	)
	payload := make([]byte, size)
	h := fetchHandler{newTestHandler()}
	h.inline = func(r *Request) *Response {
		req := r.Msg.(*kmsg.FetchRequest)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = req.Topics[0].Topic
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.RecordBatches = payload
		rt.Partitions = append(rt.Partitions, rp)
		resp.Topics = append(resp.Topics, rt)
		return r.Reply(resp)
	}
	b := startBroker(t, func(o *Options) {
		o.Handler = h
		o.WriteTimeout = timeout
	})
	conn, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "orders"
	rt.Partitions = append(rt.Partitions, kmsg.NewFetchRequestTopicPartition())
	req.Topics = append(req.Topics, rt)
	if _, err := conn.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var hdr [4]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		t.Fatal(err)
	}
	want := int(binary.BigEndian.Uint32(hdr[:]))
	if want < size {
		t.Fatalf("response of %d bytes, want at least %d", want, size)
	}
	buf := make([]byte, 32<<10)
	for got := 0; got < want; {
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf[:min(len(buf), want-got)])
		got += n
		if err != nil {
			t.Fatalf("after %v and %d of %d bytes, read steadily at %d B/s: %v", time.Since(start).Round(time.Millisecond), got, want, rate, err)
		}
		// Pace the reading at rate.
		if ahead := time.Duration(float64(got)/rate*float64(time.Second)) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
}
