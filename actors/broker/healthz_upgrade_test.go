package broker

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/netactor"
)

// olderPeerListener makes every peer look, to the broker reading its
// frames, like a broker of the version before this one: it drops the
// controller group's leadership (that version broadcast partitions and
// offsets partitions only) and the mark that ends the leaderships sent
// at connect (that version sent none).
type olderPeerListener struct{ net.Listener }

func (l olderPeerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &olderPeerConn{Conn: c, r: bufio.NewReader(c)}, nil
}

type olderPeerConn struct {
	net.Conn
	r   *bufio.Reader
	out []byte
	err error
}

func (c *olderPeerConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		var hdr [netactor.FrameHeaderLen]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			c.err = err
			continue
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(c.r, body); err != nil {
			c.err = err
			continue
		}
		env, err := netactor.DecodeEnvelope(body)
		isController := func(li netactor.LeaderInfo) bool { return li.Group == controller.ControllerGroup }
		if err != nil || !env.LeadersComplete && !slices.ContainsFunc(env.Leaders, isController) {
			c.out = append(hdr[:], body...)
			continue
		}
		env.Leaders = slices.DeleteFunc(env.Leaders, isController)
		env.LeadersComplete = false
		if c.out, err = netactor.AppendFrame(nil, env); err != nil {
			c.err = err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// TestHealthzWithOlderControllerLeader: in a rolling upgrade the
// controller's leader may still run the version before this one, which
// broadcasts no ISR for the controller group. An upgraded voter must not
// wait for it: /healthz would answer 503 forever, and a rolling upgrade
// that waits for 200 would never get past the first broker. (Found by
// review.)
func TestHealthzWithOlderControllerLeader(t *testing.T) {
	c := &testCluster{wrapRaftListener: func(_ uint64, ln net.Listener) net.Listener { return olderPeerListener{ln} }}
	startCluster(t, 3, c, func(cfg *configs.Config) { cfg.Debug.Listen = "127.0.0.1:0" })
	c.waitReady()
	for i := range c.brokers {
		c.waitFor(15*time.Second, "/healthz 200 on every broker", func() bool {
			code, _ := c.healthz(i)
			return code == http.StatusOK
		})
	}
}
