package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/partition"
)

// rawRequest sends req to the broker at addr over a connection of its own
// and returns the response: what a client sees, without a client's
// retries.
func rawRequest(t *testing.T, addr string, req kmsg.Request) kmsg.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sendRaw(t, conn, req)
	resp, err := readRaw(conn, req, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// sendRaw writes req on conn.
func sendRaw(t *testing.T, conn net.Conn, req kmsg.Request) {
	t.Helper()
	b := kmsg.NewRequestFormatter(kmsg.FormatterClientID("probe")).AppendRequest(nil, req, 7)
	if err := conn.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readRaw reads the answer to req from conn by deadline.
func readRaw(conn net.Conn, req kmsg.Request, deadline time.Time) (kmsg.Response, error) {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, err
	}
	resp := req.ResponseKind()
	skip := 4 // correlation id
	if req.IsFlexible() {
		skip = 5 // and the header's tags
	}
	if err := resp.ReadFrom(body[skip:]); err != nil {
		return nil, err
	}
	return resp, nil
}

// TestRestartDoesNotResurrectDeletedTopic: a broker restarted after a
// topic was deleted must not start that topic's replicas again, even for
// a moment. Its controller group restores a snapshot that still has the
// topic and applies the deletion after it; a replica started from the
// snapshot's state would start empty (its group was tombstoned), found its
// raft group afresh, elect itself on a single broker and acknowledge
// writes that the next reconcile deletes.
func TestRestartDoesNotResurrectDeletedTopic(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "keep", 1, 1, nil)
	keep := partition.TopicPartition{Topic: "keep", Partition: 0}
	for round := range 6 {
		cl := c.client()
		name := fmt.Sprintf("gone-%d", round)
		c.createTopic(ctx, cl, name, 4, 1, nil)
		for p := range int32(4) {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: name, Partition: p, Value: []byte("old")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		var groups []uint64
		for _, p := range c.brokers[0].Controller().View().Topics[name].Partitions {
			groups = append(groups, p.Group)
		}
		// More entries than a snapshot's interval between the creation
		// and the deletion: the restart restores a state with the topic,
		// and replays the deletion after entries that take a few Readys.
		for i := range 20 {
			c.createTopic(ctx, cl, fmt.Sprintf("filler-%d-%d", round, i), 1, 1, nil)
		}
		if _, err := kadm.NewClient(cl).DeleteTopics(ctx, name); err != nil {
			t.Fatal(err)
		}
		// The replicas' directories go just before their tombstones are
		// sent to the storage, which writes them before it stops.
		c.waitFor(10*time.Second, name+"'s directories removed", func() bool {
			for _, g := range groups {
				if m, _ := filepathGlob(c.cfgs[0].DataDir, g); len(m) > 0 {
					return false
				}
			}
			return true
		})
		cl.Close()
		c.stop(0)
		c.start(0)
		// Watch every replica set the manager publishes until the one that
		// has keep's replica: from then on it reconciles a caught-up state.
		c.waitFor(15*time.Second, "keep's replica restarted", func() bool {
			all := c.brokers[0].Replicas().All()
			var back []int32
			for tp := range all {
				if tp.Topic == name {
					back = append(back, tp.Partition)
				}
			}
			if len(back) > 0 {
				c.failResurrected(round, name, back)
			}
			return all[keep] != nil
		})
	}
}

// failResurrected fails the test for the replicas back of a deleted topic,
// saying whether a produce to them was acknowledged.
func (c *testCluster) failResurrected(round int, name string, back []int32) {
	c.t.Helper()
	applied := c.brokers[0].Controller().View().Applied
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 7, -1, 2000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = name
	for _, p := range back {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = p, testBatch(c.t, "after-delete")
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp := rawRequest(c.t, c.brokers[0].KafkaAddr(), req).(*kmsg.ProduceResponse)
	var acked []string
	for _, rp := range resp.Topics[0].Partitions {
		if rp.ErrorCode == 0 {
			acked = append(acked, fmt.Sprintf("%s/%d@%d", name, rp.Partition, rp.BaseOffset))
		}
	}
	c.t.Fatalf("round %d: the restarted broker started replicas %v of the deleted topic %s (controller state applied %d); produces acknowledged: %v", round, back, name, applied, acked)
}

// TestRestartWithoutQuorumStartsNoReplicas: a broker restarted while its
// controller group has no quorum cannot tell whether its state is
// current (a topic may have been deleted, a replica moved away, while it
// was down): it replays its own log, but starts no replica and leaves a
// client's request unanswered until a quorum is back.
func TestRestartWithoutQuorumStartsNoReplicas(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client()
	createOn(ctx, t, cl, "solo", 3)
	tp := partition.TopicPartition{Topic: "solo", Partition: 0}
	c.waitFor(10*time.Second, "broker 3 leads solo/0", func() bool {
		v := c.replicaView(2, tp)
		return v != nil && v.Leader
	})
	applied := c.brokers[2].Controller().View().Applied
	cl.Close()
	for i := range c.brokers {
		c.stop(i)
	}
	c.start(2)
	// Its own log replayed: the state it had, topic included.
	c.waitFor(10*time.Second, "broker 3's controller state replayed", func() bool {
		return c.brokers[2].Controller().View().Applied >= applied
	})
	// Forty ticks, twenty reconciles of the replica manager.
	for deadline := time.Now().Add(40 * 20 * time.Millisecond); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if r := c.brokers[2].Replicas().Get(tp); r != nil {
			t.Fatalf("a replica of solo/0 started without a controller quorum")
		}
	}
	// Nothing of the state it cannot vouch for: a client's request waits
	// unanswered, as on a Kafka broker that has not caught up.
	conn, err := net.DialTimeout("tcp", c.brokers[2].KafkaAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := metadataRequest("solo")
	sendRaw(t, conn, req)
	if resp, err := readRaw(conn, req, time.Now().Add(500*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Metadata without a controller quorum answered %+v (err %v); want no answer yet", resp, err)
	}
	c.start(0)
	c.waitFor(20*time.Second, "solo/0 back once the quorum is", func() bool {
		v := c.replicaView(2, tp)
		return v != nil && v.Leader && c.brokers[2].Controller().CaughtUp()
	})
	// The request that waited is answered from the caught-up state.
	resp, err := readRaw(conn, req, time.Now().Add(20*time.Second))
	if err != nil {
		t.Fatalf("the Metadata request held while the broker caught up: %v", err)
	}
	id := c.brokers[2].Controller().View().Topics["solo"].ID
	if mt := resp.(*kmsg.MetadataResponse).Topics[0]; mt.TopicID != id || len(mt.Partitions) != 1 {
		t.Fatalf("Metadata for solo once caught up: error %d, id %x, %d partitions; want id %x and its partition", mt.ErrorCode, mt.TopicID, len(mt.Partitions), id)
	}
}

// filepathGlob returns the partition directories of group under dataDir.
func filepathGlob(dataDir string, group uint64) ([]string, error) {
	return filepath.Glob(filepath.Join(dataDir, "partitions", fmt.Sprintf("*-g%d", group)))
}
