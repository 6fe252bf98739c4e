package main

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestRequestTimesCountsOnlyWholeProduceRequests(t *testing.T) {
	ms := time.Millisecond
	var rt requestTimes
	for _, c := range []struct {
		key int16
		e   kgo.BrokerE2E
	}{
		{int16(kmsg.Produce), kgo.BrokerE2E{BytesWritten: 3000, WriteWait: 4 * ms, TimeToWrite: 1 * ms, ReadWait: 6 * ms, TimeToRead: 2 * ms}},
		{int16(kmsg.Produce), kgo.BrokerE2E{BytesWritten: 1000, WriteWait: 2 * ms, TimeToWrite: 3 * ms, ReadWait: 2 * ms, TimeToRead: 4 * ms}},
		{int16(kmsg.Fetch), kgo.BrokerE2E{BytesWritten: 100, WriteWait: time.Second}},
		{int16(kmsg.Produce), kgo.BrokerE2E{BytesWritten: 50, WriteWait: time.Second, WriteErr: errors.New("broken pipe")}},
		{int16(kmsg.Produce), kgo.BrokerE2E{BytesWritten: 50, ReadWait: time.Second, ReadErr: errors.New("reset")}},
	} {
		rt.OnBrokerE2E(kgo.BrokerMetadata{}, c.key, c.e)
	}
	want := requestView{requests: 2, bytes: 2000, queued: 3 * ms, writing: 2 * ms, response: 7 * ms}
	if got := rt.view(); got != want {
		t.Fatalf("view = %+v, want %+v", got, want)
	}
	if got := (&requestTimes{}).view(); got != (requestView{}) {
		t.Fatalf("view of nothing = %+v, want zero", got)
	}
}
