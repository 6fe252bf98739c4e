package broker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/raftactor"
)

// TestMoveKeepsMetadata: a partition on brokers {2,3,1}, led by 2, moves
// to {2,3,4}, back to {2,3,1} and to {2,3,4} again; its leader never
// changes. While it moves, and until the leader's broadcasts have caught
// up, every broker's Metadata names leader 2 and an ISR within the
// replicas it answers, as Kafka's does. The broker whose replica was
// removed forgot the leadership it had heard of when the replica stopped,
// and answered LEADER_NOT_AVAILABLE until the leader's next broadcast;
// every broker answered the leader's last ISR, the removed replica in
// it, after the controller had completed the move.
func TestMoveKeepsMetadata(t *testing.T) {
	c := newTestCluster(t, 4)
	c.waitReady()
	const topic = "moving-metadata"
	tp := partition.TopicPartition{Topic: topic}
	group := c.createLedBy(topic, []uint64{2, 3, 1})
	c.waitLeaderKnown(group, 2, []uint64{1, 2, 3})
	cl := c.client()
	from := []uint64{2, 3, 1}
	for _, target := range [][]uint64{{2, 3, 4}, {2, 3, 1}, {2, 3, 4}} {
		leaving := slices.DeleteFunc(slices.Clone(from), func(id uint64) bool { return slices.Contains(target, id) })[0]
		w := c.watchMetadata(cl, topic, func(_ int, p kmsg.MetadataResponseTopicPartition) string {
			for _, id := range p.ISR {
				if !slices.Contains(p.Replicas, id) {
					return "ISR outside the replicas"
				}
			}
			if p.ErrorCode != 0 || p.Leader != 2 {
				return "leader not named"
			}
			return ""
		})
		c.reassign(topic, 0, target)
		c.waitMoved(topic, 0, target)
		c.waitFor(20*time.Second, fmt.Sprintf("broker %d deletes its replica", leaving), func() bool {
			return c.brokers[leaving-1].Replicas().Get(tp) == nil && !c.partitionDirExists(int(leaving-1), topic, 0)
		})
		w.answered(20) // every broker, the one whose replica is gone too
		c.waitLeaderKnown(group, 2, slices.Sorted(slices.Values(target)))
		w.stop()
		w.report(fmt.Sprintf("while the partition moved from %v to %v", from, target))
		from = target
	}
}

// TestMoveLeaderISRFollowsItsGroup: a leader's ISR loses a replica as soon
// as its raft group's membership does, before the controller completes
// the reassignment; it kept it until its next look at the ISR (250 ms),
// and broadcast it after the controller had completed the move.
func TestMoveLeaderISRFollowsItsGroup(t *testing.T) {
	c := newTestCluster(t, 4)
	c.waitReady()
	const topic = "moving-isr"
	tp := partition.TopicPartition{Topic: topic}
	group := c.createLedBy(topic, []uint64{2, 3, 1})
	lead := c.brokers[1].Replicas().Get(tp)
	c.waitFor(20*time.Second, "every replica in the leader's ISR", func() bool {
		return slices.Equal(lead.Machine.View().ISR, []uint64{1, 2, 3})
	})
	target := []uint64{2, 3, 4}
	c.reassign(topic, 0, target)
	removed := false
	c.waitFor(60*time.Second, "the move completed on the leader's broker", func() bool {
		// The group publishes its status after the state machine's
		// Applied hook: once the status shows broker 1 out of the
		// group, the ISR the leader looked at again there is published.
		st := c.brokers[1].Board().Get(group)
		isr := lead.Machine.View().ISR
		if st != nil && st.Role == "leader" && !slices.Contains(st.Voters, 1) && !slices.Contains(st.Learners, 1) {
			removed = true
			if slices.Contains(isr, 1) {
				t.Fatalf("the leader's ISR %v has broker 1, whose replica its group no longer has (voters %v, learners %v)", isr, st.Voters, st.Learners)
			}
		}
		p := c.brokers[1].Controller().View().Topics[topic].Partitions[0]
		return slices.Equal(p.Replicas, target) && !p.Reassigning()
	})
	if !removed {
		t.Fatal("the move completed without the leader's status ever showing broker 1 out of the group")
	}
}

// TestMetadataISRAcrossLeaderChange: while every replica is alive and
// caught up, no broker answers a partition's ISR as its leader alone
// across a change of leader (a transfer away from the preferred replica,
// and PreferLeader's back to it). A broker whose replica knew the new
// leader before its first broadcast answered that leader alone, as if
// every other replica had fallen behind; Kafka's ISR outlives a clean
// election.
func TestMetadataISRAcrossLeaderChange(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	const topic = "changing-leader"
	tp := partition.TopicPartition{Topic: topic}
	group := c.createLedBy(topic, []uint64{1, 2, 3})
	c.waitLeaderKnown(group, 1, []uint64{1, 2, 3})
	term := c.brokers[0].Replicas().Get(tp).Machine.View().Epoch
	w := c.watchMetadata(c.client(), topic, func(_ int, p kmsg.MetadataResponseTopicPartition) string {
		if p.ErrorCode == 0 && len(p.ISR) < 2 {
			return "ISR of the leader alone"
		}
		return ""
	})
	lead := c.brokers[0].Replicas().Get(tp)
	c.brokers[0].Actors().Root.Send(lead.PID, &raftactor.TransferLeader{To: 2})
	c.waitFor(20*time.Second, "broker 2 leads", func() bool {
		return c.brokers[1].Replicas().Get(tp).Machine.View().Leader
	})
	c.waitFor(20*time.Second, "broker 1, the preferred replica, leads again", func() bool {
		v := lead.Machine.View()
		return v.Leader && v.Epoch > term+1
	})
	c.waitLeaderKnown(group, 1, []uint64{1, 2, 3})
	w.answered(20)
	w.stop()
	w.report("across two leader changes")
}

// createLedBy creates topic with one partition on replicas and waits
// until its preferred replica, the first, leads it; it returns the
// partition's raft group.
func (c *testCluster) createLedBy(topic string, replicas []uint64) uint64 {
	c.t.Helper()
	created := ask[*controller.CreateTopicsDone](c, 0, c.brokers[0].ControllerActor(), func(r *actor.PID) any {
		return &controller.CreateTopics{ReplyTo: r, TimeoutTicks: 500, Topics: []controller.TopicSpec{{
			Name: topic, Partitions: -1, ReplicationFactor: -1, Assignment: [][]uint64{replicas},
		}}}
	})
	if err := created.Results[0].Err; err != nil {
		c.t.Fatalf("create topic %s: %v", topic, err)
	}
	tp := partition.TopicPartition{Topic: topic}
	c.waitFor(20*time.Second, fmt.Sprintf("%s led by broker %d", topic, replicas[0]), func() bool {
		r := c.brokers[replicas[0]-1].Replicas().Get(tp)
		return r != nil && r.Machine.View().Leader
	})
	return c.brokers[0].Controller().View().Topics[topic].Partitions[0].Group
}

// waitLeaderKnown waits until every running broker has heard that leader
// leads group with isr.
func (c *testCluster) waitLeaderKnown(group, leader uint64, isr []uint64) {
	c.t.Helper()
	c.waitFor(20*time.Second, fmt.Sprintf("every broker hears broker %d lead group %d with ISR %v", leader, group, isr), func() bool {
		for _, b := range c.brokers {
			if b == nil {
				continue
			}
			if li, ok := b.Leaders().Get(group); !ok || li.Leader != leader || !slices.Equal(li.ISR, isr) {
				return false
			}
		}
		return true
	})
}

// metadataWatch asks every broker for a topic's Metadata every 2 ms and
// keeps the answers a check finds wrong.
type metadataWatch struct {
	c       *testCluster
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	answers []atomic.Int64 // by broker index

	mu  sync.Mutex
	bad map[string][]string // by what the check found
}

// watchMetadata starts asking each running broker, through cl, for
// topic's Metadata until stop, for at most a minute and 30000 requests a
// broker; check returns what is wrong with a partition's answer from a
// broker (its node id), "" for nothing.
func (c *testCluster) watchMetadata(cl *kgo.Client, topic string, check func(broker int, p kmsg.MetadataResponseTopicPartition) string) *metadataWatch {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	w := &metadataWatch{c: c, cancel: cancel, answers: make([]atomic.Int64, len(c.brokers)), bad: map[string][]string{}}
	for i, b := range c.brokers {
		if b == nil {
			continue
		}
		br := cl.Broker(i + 1) // this broker's answers only
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for n := 0; n < 30000 && ctx.Err() == nil; n++ {
				req := kmsg.NewPtrMetadataRequest()
				rt := kmsg.NewMetadataRequestTopic()
				rt.Topic = kmsg.StringPtr(topic)
				req.Topics = append(req.Topics, rt)
				if raw, err := br.Request(ctx, req); err == nil {
					for _, rt := range raw.(*kmsg.MetadataResponse).Topics {
						for _, p := range rt.Partitions {
							if what := check(i+1, p); what != "" {
								w.mu.Lock()
								w.bad[what] = append(w.bad[what], fmt.Sprintf("broker %d: error %d leader %d epoch %d replicas %v ISR %v",
									i+1, p.ErrorCode, p.Leader, p.LeaderEpoch, p.Replicas, p.ISR))
								w.mu.Unlock()
							}
						}
					}
					w.answers[i].Add(1)
				}
				time.Sleep(2 * time.Millisecond) // the pace of the asking, not a wait
			}
		}()
	}
	return w
}

// answered waits until every watched broker has answered n more times.
func (w *metadataWatch) answered(n int64) {
	w.c.t.Helper()
	from := make([]int64, len(w.answers))
	for i := range w.answers {
		from[i] = w.answers[i].Load()
	}
	w.c.waitFor(20*time.Second, fmt.Sprintf("every broker answers Metadata %d more times", n), func() bool {
		for i, b := range w.c.brokers {
			if b != nil && w.answers[i].Load() < from[i]+n {
				return false
			}
		}
		return true
	})
}

func (w *metadataWatch) stop() {
	w.cancel()
	w.wg.Wait()
}

// report fails the test with the wrong answers seen, a few of each kind.
func (w *metadataWatch) report(when string) {
	w.c.t.Helper()
	for what, answers := range w.bad {
		w.c.t.Errorf("%s: %d Metadata answers with %s, first ones:", when, len(answers), what)
		for _, a := range answers[:min(len(answers), 3)] {
			w.c.t.Errorf("  %s", a)
		}
	}
}
