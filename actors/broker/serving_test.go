package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/netactor"
)

// holdingListener holds back what one peer sends on the connections it
// opens, named by the hello it sends first, until release is closed.
type holdingListener struct {
	net.Listener
	peer    uint64
	release <-chan struct{}
}

func (l *holdingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &holdingConn{Conn: c, l: l}, nil
}

// holdingConn reads the hello on the first Read, and waits for release
// before handing it on if it is the held peer's.
type holdingConn struct {
	net.Conn
	l      *holdingListener
	once   sync.Once
	buf    []byte
	helloE error
}

func (c *holdingConn) Read(p []byte) (int, error) {
	c.once.Do(func() {
		var hdr [netactor.FrameHeaderLen]byte
		if _, c.helloE = io.ReadFull(c.Conn, hdr[:]); c.helloE != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, c.helloE = io.ReadFull(c.Conn, body); c.helloE != nil {
			return
		}
		c.buf = append(hdr[:], body...)
		if env, err := netactor.DecodeEnvelope(body); err == nil && env.From == c.l.peer {
			<-c.l.release
		}
	})
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	if c.helloE != nil {
		return 0, c.helloE
	}
	return c.Conn.Read(p)
}

// metadataLeaderless asks the broker at addr alone for topic's metadata,
// and returns the partitions it answers without a leader, or with one
// missing from its broker list (which clients cannot reach either); ok is
// false when it does not answer within timeout.
func metadataLeaderless(addr, topic string, timeout time.Duration) (leaderless []int32, ok bool) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0), kgo.DialTimeout(timeout))
	if err != nil {
		return nil, false
	}
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, mt)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kresp, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		return nil, false
	}
	resp := kresp.(*kmsg.MetadataResponse)
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 || len(resp.Topics[0].Partitions) == 0 {
		return []int32{-1}, true
	}
	listed := map[int32]bool{}
	for _, b := range resp.Brokers {
		listed[b.NodeID] = true
	}
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 || p.Leader < 0 || !listed[p.Leader] {
			leaderless = append(leaderless, p.Partition)
		}
	}
	return leaderless, true
}

// TestRestartedBrokerServesOnceItKnowsTheLeaders: a restarted broker opens
// its Kafka port only once every live peer has told it what it leads. What
// one peer sends it is held back past the broker's catch-up with the
// controller: its Kafka port stays closed meanwhile, and its first Metadata
// answer names every partition's leader. Served at the catch-up, as it
// was, it answered LEADER_NOT_AVAILABLE for the partitions that peer leads
// (its own replicas had not heard from their leader either), and a client
// parked them until its next metadata refresh.
func TestRestartedBrokerServesOnceItKnowsTheLeaders(t *testing.T) {
	const topic = "held"
	// A long election timeout: the replicas of the restarted broker that
	// the held peer leads wait for it without campaigning.
	c := newTestCluster(t, 3, func(cfg *configs.Config) { cfg.Raft.ElectionTicks = 50 })
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c.createTopic(ctx, c.client(), topic, 6, 3, nil)
	const victim = 2
	c.stop(victim)
	c.waitFor(15*time.Second, "a controller leader", func() bool { return c.leader() >= 0 })
	held := uint64(1) // a peer that does not lead the controller: the victim catches up without it
	if c.leader() == 0 {
		held = 2
	}
	c.waitFor(30*time.Second, "the other brokers to name every partition's leader", func() bool {
		for _, b := range c.brokers[:victim] {
			if ps, ok := metadataLeaderless(b.KafkaAddr(), topic, time.Second); !ok || len(ps) > 0 {
				return false
			}
		}
		return true
	})

	release := make(chan struct{})
	c.wrapRaftListener = func(self uint64, ln net.Listener) net.Listener {
		if self != uint64(victim+1) {
			return ln
		}
		return &holdingListener{Listener: ln, peer: held, release: release}
	}
	c.start(victim)
	b := c.brokers[victim]
	c.waitFor(30*time.Second, "the restarted broker to catch up with the controller", b.Controller().CaughtUp)
	bad, answered := 0, 0
	var first string
	check := func(ps []int32) {
		if len(ps) > 0 {
			if bad++; first == "" {
				first = fmt.Sprint(ps)
			}
		}
	}
	for heldAt := time.Now(); time.Since(heldAt) < 300*time.Millisecond; {
		if ps, ok := metadataLeaderless(b.KafkaAddr(), topic, 50*time.Millisecond); ok {
			answered++
			check(ps)
		}
	}
	close(release)
	c.waitFor(10*time.Second, "a Metadata answer naming every leader", func() bool {
		ps, ok := metadataLeaderless(b.KafkaAddr(), topic, time.Second)
		check(ps)
		return ok && len(ps) == 0
	})
	if bad > 0 {
		t.Errorf("the restarted broker answered Metadata with leaderless partitions %d times, first %s (%d answers while peer %d's leaderships were held back)",
			bad, first, answered, held)
	}
}
