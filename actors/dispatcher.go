package actors

import (
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// Dispatcher tuning: protoactor's default throughput, and how many idle
// workers are kept. A broker's actors are mostly raft groups that all run
// once per tick, so the idle workers number about the groups hosted;
// each holds a goroutine and its stack (a few KiB), and the garbage
// collector shrinks the stacks of those that stay idle.
const (
	dispatcherThroughput = 300
	maxIdleWorkers       = 1024
)

// workerDispatcher runs mailboxes on goroutines that outlive an
// activation. protoactor's default dispatcher starts a goroutine for every
// activation, and a new goroutine starts on a small stack that the raft
// code path grows, copying it, each time: with hundreds of raft groups
// ticked 20 times a second that was a fifth of an idle broker's CPU.
//
// Schedule never blocks and never queues: it hands fn to a worker that is
// waiting for work, or starts a new one, so an actor that blocks (an
// fsync, a socket write) delays no other, exactly as with a goroutine per
// activation.
type workerDispatcher struct {
	work    chan func()
	stop    chan struct{}
	stopped sync.Once
	idle    atomic.Int32
}

var _ actor.Dispatcher = (*workerDispatcher)(nil)

func newWorkerDispatcher() *workerDispatcher {
	return &workerDispatcher{work: make(chan func()), stop: make(chan struct{})}
}

// Schedule implements actor.Dispatcher.
func (d *workerDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		go d.worker(fn)
	}
}

// Throughput implements actor.Dispatcher: how many messages a mailbox
// processes before it yields.
func (d *workerDispatcher) Throughput() int { return dispatcherThroughput }

// close ends the idle workers, and every busy one when it is done. Work
// scheduled afterwards still runs, each on a goroutine of its own.
func (d *workerDispatcher) close() { d.stopped.Do(func() { close(d.stop) }) }

func (d *workerDispatcher) worker(fn func()) {
	for {
		fn()
		if d.idle.Add(1) > maxIdleWorkers {
			d.idle.Add(-1)
			return
		}
		select {
		case fn = <-d.work:
			d.idle.Add(-1)
		case <-d.stop:
			d.idle.Add(-1)
			return
		}
	}
}
