package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/group"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/netactor"
)

// lostLeaderships loses, on the raft connections into every broker, what
// the peers broadcast of one raft group's leadership, while set: a new
// leader's broadcasts stay out for as long as a test needs, where they
// would otherwise arrive within 0.5 s, at a time no test controls.
// Everything else passes.
type lostLeaderships struct {
	group atomic.Uint64 // 0: none lost
}

// listener wraps a broker's raft listener.
func (l *lostLeaderships) listener(_ uint64, ln net.Listener) net.Listener {
	return &lostLeadersListener{Listener: ln, l: l}
}

type lostLeadersListener struct {
	net.Listener
	l *lostLeaderships
}

func (ln *lostLeadersListener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lostLeadersConn{Conn: c, l: ln.l}, nil
}

// lostLeadersConn reads whole frames and hands them on, re-encoded
// without the lost group's leaderships when they carry some.
type lostLeadersConn struct {
	net.Conn
	l   *lostLeaderships
	out []byte
}

func (c *lostLeadersConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		var hdr [netactor.FrameHeaderLen]byte
		if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
			return 0, err
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(c.Conn, body); err != nil {
			return 0, err
		}
		c.out = append(hdr[:], body...)
		g := c.l.group.Load()
		lost := func(li netactor.LeaderInfo) bool { return li.Group == g }
		if env, err := netactor.DecodeEnvelope(body); g != 0 && err == nil && slices.ContainsFunc(env.Leaders, lost) {
			env.Leaders = slices.DeleteFunc(env.Leaders, lost)
			if c.out, err = netactor.AppendFrame(nil, env); err != nil {
				return 0, err
			}
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// TestMoveLeaderAwayKeepsMetadata: a partition on [1 2 3], led by 1,
// moves to [2 3 4]: broker 1's replica hands its leadership over, to 2,
// and is taken out. The new leader's broadcasts are lost until the test
// ends the move. No broker's Metadata names a leader out of the replicas
// or the ISR it answers; every broker that hosted the partition names its
// leader, broker 1 too, whose replica saw its successor before it
// stopped. Broker 5, which hosts nothing and heard only of broker 1's
// leadership, names none once the move completed (LEADER_NOT_AVAILABLE)
// until the new leader's broadcast comes. Broker 1 dropped its own
// leadership when its replica stopped, and answered LEADER_NOT_AVAILABLE
// until that broadcast; broker 5 answered leader 1, replicas [2 3 4].
func TestMoveLeaderAwayKeepsMetadata(t *testing.T) {
	lost := &lostLeaderships{}
	c := startCluster(t, 5, &testCluster{wrapRaftListener: lost.listener})
	c.waitReady()
	const topic = "leader-leaves"
	tp := partition.TopicPartition{Topic: topic}
	g := c.createLedBy(topic, []uint64{1, 2, 3})
	c.waitLeaderKnown(g, 1, []uint64{1, 2, 3})
	lost.group.Store(g)
	const bystander = 5
	w := c.watchMetadata(c.client(), topic, func(broker int, p kmsg.MetadataResponseTopicPartition) string {
		switch {
		case p.Leader >= 0 && !slices.Contains(p.Replicas, p.Leader):
			return "a leader out of the replicas"
		case p.Leader >= 0 && !slices.Contains(p.ISR, p.Leader):
			return "a leader out of the ISR"
		case broker != bystander && p.ErrorCode != 0:
			return "no leader from a broker that hosted the partition"
		}
		return ""
	})
	target := []uint64{2, 3, 4}
	c.reassign(topic, 0, target)
	c.waitMoved(topic, 0, target)
	c.waitFor(20*time.Second, "broker 1 deletes its replica", func() bool {
		return c.brokers[0].Replicas().Get(tp) == nil && !c.partitionDirExists(0, topic, 0)
	})
	w.answered(20)
	if li, _ := c.brokers[bystander-1].Leaders().Get(g); li.Leader != 1 {
		t.Fatalf("broker %d heard of %+v: the new leader's broadcasts were not lost", bystander, li)
	}
	lost.group.Store(0)
	c.waitFor(20*time.Second, "every broker hears of the new leader", func() bool {
		for _, b := range c.brokers {
			if li, ok := b.Leaders().Get(g); !ok || li.Leader != 2 {
				return false
			}
		}
		return true
	})
	w.answered(20)
	w.stop()
	w.report("while the leader moved away")
	if p := metadataOfPartition(t, c.client(), bystander, topic, 0); p.ErrorCode != 0 || p.Leader != 2 {
		t.Errorf("broker %d, having heard of the new leader: error %d leader %d, want leader 2", bystander, p.ErrorCode, p.Leader)
	}
}

// metadataOfPartition returns broker's Metadata answer for a partition.
func metadataOfPartition(t *testing.T, cl *kgo.Client, broker int, topic string, part int32) kmsg.MetadataResponseTopicPartition {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	raw, err := cl.Broker(broker).Request(ctx, req)
	if err != nil {
		t.Fatalf("Metadata from broker %d: %v", broker, err)
	}
	for _, rt := range raw.(*kmsg.MetadataResponse).Topics {
		for _, p := range rt.Partitions {
			if p.Partition == part {
				return p
			}
		}
	}
	t.Fatalf("Metadata from broker %d: no %s/%d", broker, topic, part)
	return kmsg.MetadataResponseTopicPartition{}
}

// offsetsPartition commits an offset for groupID, which creates the
// offsets topic, and returns its partition for groupID.
func (c *testCluster) offsetsPartition(groupID string) controller.Partition {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client()
	c.createTopic(ctx, cl, "consumed", 1, 3, nil)
	commit := kadm.Offsets{}
	commit.AddOffset("consumed", 0, 42, -1)
	adm := kadm.NewClient(cl)
	c.waitFor(30*time.Second, "offsets committed", func() bool {
		res, err := adm.CommitOffsets(ctx, groupID, commit)
		return err == nil && res.Ok()
	})
	offsets := c.brokers[0].Controller().View().Topics[controller.OffsetsTopic]
	return offsets.Partitions[group.PartitionFor(groupID, int32(len(offsets.Partitions)))]
}

// newcomerTo returns the lowest broker id of c that replicas lack.
func (c *testCluster) newcomerTo(replicas []uint64) uint64 {
	for id := uint64(1); id <= uint64(len(c.brokers)); id++ {
		if !slices.Contains(replicas, id) {
			return id
		}
	}
	c.t.Fatalf("every broker hosts %v", replicas)
	return 0
}

// TestMoveOffsetsLeaderAwayNamesSuccessor: the offsets partition of a
// group moves away from its leader's broker, which hands the leadership
// over and stops its replica; the new leader's broadcasts are lost. That
// broker goes on naming the partition's new leader, the successor its
// replica saw, as the group's coordinator (FindCoordinator) and in
// Metadata. An offsets replica that stopped never dropped its broker's
// own leadership: the broker named itself coordinator, where clients got
// NOT_COORDINATOR, until the new leader's broadcast.
func TestMoveOffsetsLeaderAwayNamesSuccessor(t *testing.T) {
	lost := &lostLeaderships{}
	c := startCluster(t, 4, &testCluster{wrapRaftListener: lost.listener})
	c.waitReady()
	const groupID = "moved-group"
	p := c.offsetsPartition(groupID)
	old := p.Replicas[0]
	c.waitFor(20*time.Second, fmt.Sprintf("broker %d, the preferred replica, coordinates and has noted it", old), func() bool {
		co := c.brokers[old-1].coords.Get(p.Index)
		li, _ := c.brokers[old-1].Leaders().Get(p.Group)
		return co != nil && co.Machine.Leadership().Leader && li.Leader == old
	})
	lost.group.Store(p.Group)
	newcomer := c.newcomerTo(p.Replicas)
	target := []uint64{newcomer, p.Replicas[1], p.Replicas[2]}
	c.reassign(controller.OffsetsTopic, p.Index, target)
	c.waitMoved(controller.OffsetsTopic, p.Index, target)
	c.waitFor(20*time.Second, fmt.Sprintf("broker %d's offsets replica stops", old), func() bool {
		return c.brokers[old-1].coords.Get(p.Index) == nil && c.brokers[old-1].Board().Get(p.Group) == nil
	})
	if li, _ := c.brokers[p.Replicas[1]-1].Leaders().Get(p.Group); li.Leader != old {
		t.Fatalf("broker %d heard of %+v: the new leader's broadcasts were not lost", p.Replicas[1], li)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client()
	for range 20 {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKeys = []string{groupID}
		raw, err := cl.Broker(int(old)).Request(ctx, req)
		if err != nil {
			t.Fatalf("FindCoordinator from broker %d: %v", old, err)
		}
		if co := raw.(*kmsg.FindCoordinatorResponse).Coordinators[0]; co.ErrorCode != 0 || co.NodeID != int32(newcomer) {
			t.Fatalf("broker %d, its offsets replica stopped, answers FindCoordinator with error %d coordinator %d; want %d, the new leader",
				old, co.ErrorCode, co.NodeID, newcomer)
		}
		if mp := metadataOfPartition(t, cl, int(old), controller.OffsetsTopic, p.Index); mp.ErrorCode != 0 || mp.Leader != int32(newcomer) {
			t.Fatalf("broker %d, its offsets replica stopped, answers Metadata with error %d leader %d replicas %v; want leader %d",
				old, mp.ErrorCode, mp.Leader, mp.Replicas, newcomer)
		}
	}
}

// TestMoveOffsetsLeaderISRFollowsItsGroup: an offsets partition's
// leader's ISR loses a replica as soon as its raft group's membership
// does, before the controller completes the reassignment, as a
// partition's does (TestMoveLeaderISRFollowsItsGroup).
func TestMoveOffsetsLeaderISRFollowsItsGroup(t *testing.T) {
	c := newTestCluster(t, 4)
	c.waitReady()
	p := c.offsetsPartition("isr-group")
	lead := p.Replicas[0]
	co := c.brokers[lead-1].coords.Get(p.Index)
	c.waitFor(20*time.Second, "every replica in the coordinator's ISR", func() bool {
		l := co.Machine.Leadership()
		return l.Leader && slices.Equal(l.ISR, slices.Sorted(slices.Values(p.Replicas)))
	})
	leaving := p.Replicas[2]
	target := []uint64{p.Replicas[0], p.Replicas[1], c.newcomerTo(p.Replicas)}
	c.reassign(controller.OffsetsTopic, p.Index, target)
	removed := false
	c.waitFor(60*time.Second, "the move completed on the leader's broker", func() bool {
		// The group publishes its status after the state machine's
		// Applied hook: once the status shows the leaving replica out of
		// the group, the ISR the leader looked at again there is
		// published.
		st := c.brokers[lead-1].Board().Get(p.Group)
		isr := co.Machine.Leadership().ISR
		if st != nil && st.Role == "leader" && !slices.Contains(st.Voters, leaving) && !slices.Contains(st.Learners, leaving) {
			removed = true
			if slices.Contains(isr, leaving) {
				t.Fatalf("the coordinator's ISR %v has broker %d, whose replica its group no longer has (voters %v, learners %v)", isr, leaving, st.Voters, st.Learners)
			}
		}
		q := c.brokers[lead-1].Controller().View().Topics[controller.OffsetsTopic].Partitions[p.Index]
		return slices.Equal(q.Replicas, target) && !q.Reassigning()
	})
	if !removed {
		t.Fatalf("the move completed without the leader's status ever showing broker %d out of the group", leaving)
	}
}
