package test

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestProduceStageMetrics: after a produce, /metrics says how long the
// batches took to become durable and to be applied on their leader, and how
// long the storage took with each Persist. Every batch passes both stages,
// the applied one later.
func TestProduceStageMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	const topic = "stages"
	createTopic(t, nd.admin(t), topic, 2, nil)
	ctx := testCtx(t, time.Minute)
	recs := randomRecords(rand.New(rand.NewPCG(1, 2)), topic, 500, time.Now())
	produceAll(t, ctx, nd.client(t), recs)

	durable := nd.metric(t, `flotilla_partition_produce_seconds_count{stage="durable"}`)
	applied := nd.metric(t, `flotilla_partition_produce_seconds_count{stage="applied"}`)
	if durable < 1 || durable != applied {
		t.Fatalf("batches durable %v, applied %v: want the same count, at least 1", durable, applied)
	}
	durableSum := nd.metric(t, `flotilla_partition_produce_seconds_sum{stage="durable"}`)
	appliedSum := nd.metric(t, `flotilla_partition_produce_seconds_sum{stage="applied"}`)
	if durableSum <= 0 || appliedSum < durableSum {
		t.Fatalf("time to durable %vs, to applied %vs: a batch is applied only after it is durable", durableSum, appliedSum)
	}
	if n := nd.metric(t, `flotilla_wal_persist_seconds_count`); n < 1 {
		t.Fatal("no Persist timed")
	}
}
