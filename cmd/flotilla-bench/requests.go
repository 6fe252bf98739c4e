package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// requestTimes is a kgo hook that adds up where the producer's produce
// requests spent their time, as the client saw it (kgo.BrokerE2E): what a
// broker's own timers cannot show, such as kgo encoding a request before
// writing it.
type requestTimes struct {
	mu       sync.Mutex
	n        int
	bytes    int64
	queued   time.Duration // created to written: kgo encodes it there, behind earlier writes
	writing  time.Duration // conn.Write
	response time.Duration // written to its response read whole
}

// OnBrokerE2E implements kgo.HookBrokerE2E.
func (t *requestTimes) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e kgo.BrokerE2E) {
	if key != int16(kmsg.Produce) || e.WriteErr != nil || e.ReadErr != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	t.bytes += int64(e.BytesWritten)
	t.queued += e.WriteWait
	t.writing += e.TimeToWrite
	t.response += e.ReadWait + e.TimeToRead
}

// requestView is what requestTimes saw, in means per request.
type requestView struct {
	requests                  int
	bytes                     int64
	queued, writing, response time.Duration
}

func (t *requestTimes) view() requestView {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		return requestView{}
	}
	n := time.Duration(t.n)
	return requestView{requests: t.n, bytes: t.bytes / int64(t.n), queued: t.queued / n, writing: t.writing / n, response: t.response / n}
}

// requestHeader is the header of the table of requestViews, and requestRow
// one of its rows.
func requestHeader() string {
	return "| round | broker | produce requests | MB per request | created to written | written in | written to response read |\n|---|---|---|---|---|---|---|"
}

func requestRow(round, broker string, v requestView) string {
	return fmt.Sprintf("| %s | %s | %d | %.2f | %s | %s | %s |", round, broker, v.requests, float64(v.bytes)/1e6,
		usec(v.queued), usec(v.writing), usec(v.response))
}
