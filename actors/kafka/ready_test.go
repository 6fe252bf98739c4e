package kafka

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestListenerWaitsForReady: a client that connects before the broker is
// ready (its controller state not caught up) is answered once it is, not
// before, and not with an error.
func TestListenerWaitsForReady(t *testing.T) {
	ready := make(chan struct{})
	b := startBroker(t, func(o *Options) { o.Ready = ready })
	c := dial(t, b.addr)
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 12
	c.send(req, 1)
	// Nothing answers meanwhile: a short read times out.
	if err := c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	_, err := c.conn.Read(one[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a request sent before Ready was answered or refused (read: %v)", err)
	}
	close(ready)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	if corr := c.read(resp); corr != 1 {
		t.Fatalf("correlation id %d, want 1", corr)
	}
	if len(resp.Topics) != 2 {
		t.Fatalf("Metadata after Ready lists %d topics, want the source's 2", len(resp.Topics))
	}
}

// TestListenerStopsBeforeReady: a listener stopped before it was ever
// ready closes its socket and leaves no accept loop behind.
func TestListenerStopsBeforeReady(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.Ready = make(chan struct{}) })
	if err := b.sys.Root.StopFuture(b.pid).Wait(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	for {
		conn, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err != nil {
			return // the socket is closed
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the stopped listener's socket still accepts connections")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
