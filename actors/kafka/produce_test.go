package kafka

import (
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/partition"
	"github.com/flotilla/flotilla/raftactor"
)

// TestProduceBodyReleasedWhenEveryPartitionAnswered: a produce request's
// buffer goes back to the pool only once every partition it went to has
// answered; until then a partition may still be reading its records, and a
// reused buffer would change them under it.
func TestProduceBodyReleasedWhenEveryPartitionAnswered(t *testing.T) {
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	produces := make(chan *partition.Produce, 2)
	sm, id := ordersState(t)
	replicas := map[partition.TopicPartition]*partition.Replica{}
	for p := range int32(2) {
		pid, err := sys.Spawn("partition", fmt.Sprintf("partition-%d", p), func() actor.Actor {
			return actor.ReceiveFunc(func(ctx actor.Context) {
				if m, ok := ctx.Message().(*partition.Produce); ok {
					produces <- m
				}
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		tp := partition.TopicPartition{Topic: "orders", Partition: p}
		replicas[tp] = &partition.Replica{TopicPartition: tp, TopicID: id, PID: pid}
	}
	s := &Service{Tick: 10 * time.Millisecond, Machine: sm, Replicas: partition.NewReplicas(), Log: zerolog.Nop()}
	s.Replicas.Publish(replicas)

	// The connection serves the request, then takes the partitions'
	// answers, reporting after each step whether the body went back.
	released := make(chan bool, 3)
	conn, err := sys.Spawn("conn", "conn", func() actor.Actor {
		c := s.NewConn().(*serviceConn)
		var req *Request
		return actor.ReceiveFunc(func(ctx actor.Context) {
			switch m := ctx.Message().(type) {
			case *Request:
				req = m
				m.ReplyTo = ctx.Self()
				c.Serve(ctx, m)
				released <- req.body == nil
			case *partition.ProduceDone:
				c.produceDone(ctx, m)
				released <- req.body == nil
			}
		})
	})
	if err != nil {
		t.Fatal(err)
	}

	pool := newBodyPool()
	body := pool.get(minPooledBody)
	pr := kmsg.NewPtrProduceRequest()
	pr.Version, pr.Acks, pr.TimeoutMillis = 9, -1, 1000
	topic := kmsg.NewProduceRequestTopic()
	topic.Topic = "orders"
	for p := range int32(2) {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = p, body[p*100:(p+1)*100]
		topic.Partitions = append(topic.Partitions, rp)
	}
	pr.Topics = append(pr.Topics, topic)
	sys.Root.Send(conn, &Request{Msg: pr, body: body, bodies: pool})

	step := func(what string, want bool) {
		t.Helper()
		select {
		case got := <-released:
			if got != want {
				t.Fatalf("%s: body released %v, want %v", what, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the connection did not report", what)
		}
	}
	step("request dispatched", false)
	var refs []uint64
	for range 2 {
		select {
		case m := <-produces:
			refs = append(refs, m.Ref)
		case <-time.After(10 * time.Second):
			t.Fatal("a partition got no Produce")
		}
	}
	sys.Root.Send(conn, &partition.ProduceDone{Ref: refs[0]})
	step("one partition answered", false)
	sys.Root.Send(conn, &partition.ProduceDone{Ref: refs[1]})
	step("both partitions answered", true)
}

// TestAcksZeroUnansweredClosesConnection: an acks=0 Produce sent to a
// partition replica that stopped meanwhile (its actor drops the request)
// is answered by no one; the connection must not hold every later response
// behind it, so it closes once the request's timeout has passed.
func TestAcksZeroUnansweredClosesConnection(t *testing.T) {
	const tick = 5 * time.Millisecond
	b := startBrokerIn(t, func(sys *actors.System, o *Options) {
		gone, err := sys.Spawn("test", "gone", func() actor.Actor { return actor.ReceiveFunc(func(actor.Context) {}) })
		if err != nil {
			t.Fatal(err)
		}
		if err := sys.Root.StopFuture(gone).Wait(); err != nil {
			t.Fatal(err)
		}
		sm, id := ordersState(t)
		replicas := partition.NewReplicas()
		replicas.Publish(map[partition.TopicPartition]*partition.Replica{
			{Topic: "orders", Partition: 0}: {TopicPartition: partition.TopicPartition{Topic: "orders"}, TopicID: id, PID: gone},
		})
		ticker := raftactor.NewTicker(sys.Root, tick)
		t.Cleanup(ticker.Stop)
		o.Handler = &Service{NodeID: 1, Tick: tick, Ticker: ticker, Machine: sm, Replicas: replicas, Sender: sys.Root, Log: o.Log}
	})
	c := dial(t, b.addr)
	req := produceRequest(0, 10)
	req.TimeoutMillis = 100
	c.send(req, 1)
	c.expectClosed()
}

// TestProduceInvalidAcksRefused: acks other than -1, 0 and 1 is refused
// with INVALID_REQUIRED_ACKS for every partition, and nothing reaches the
// partitions, as in Kafka. acks=2 used to be written and answered like
// acks=all, without its min.insync.replicas check.
func TestProduceInvalidAcksRefused(t *testing.T) {
	produces := make(chan *partition.Produce, 1)
	var stop func()
	b := startBrokerIn(t, func(sys *actors.System, o *Options) {
		pid, err := sys.Spawn("test", "orders-0", func() actor.Actor {
			return actor.ReceiveFunc(func(ctx actor.Context) {
				if m, ok := ctx.Message().(*partition.Produce); ok {
					produces <- m
				}
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		stop = func() { sys.Root.Stop(pid) }
		sm, id := ordersState(t)
		replicas := partition.NewReplicas()
		tp := partition.TopicPartition{Topic: "orders"}
		replicas.Publish(map[partition.TopicPartition]*partition.Replica{tp: {TopicPartition: tp, TopicID: id, PID: pid}})
		o.Handler = &Service{NodeID: 1, Tick: 10 * time.Millisecond, Machine: sm, Replicas: replicas, Sender: sys.Root, Log: o.Log}
	})
	defer stop() // before the broker's cleanup waits for every actor
	c := dial(t, b.addr)
	for i, acks := range []int16{2, -2} {
		c.send(produceRequest(acks, 10), int32(i))
		resp := kmsg.NewPtrProduceResponse()
		resp.Version = 9
		if id := c.read(resp); id != int32(i) {
			t.Fatalf("acks=%d: answer to request %d", acks, id)
		}
		if got := resp.Topics[0].Partitions[0].ErrorCode; got != kerr.InvalidRequiredAcks.Code {
			t.Errorf("acks=%d: %v, want INVALID_REQUIRED_ACKS", acks, kerr.ErrorForCode(got))
		}
	}
	select {
	case m := <-produces:
		t.Errorf("a produce with acks=%d reached the partition", m.Acks)
	default:
	}
}
