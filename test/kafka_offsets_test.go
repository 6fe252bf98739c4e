package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// listOffsets sends one raw ListOffsets request for a single partition to
// nd and returns that partition's answer.
func listOffsets(t *testing.T, cl *kgo.Client, nd *node, topic string, p int32, ts int64, currentEpoch int32) kmsg.ListOffsetsResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = p, ts, currentEpoch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := brokerRequest[*kmsg.ListOffsetsResponse](t, cl, nd, req)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("ListOffsets v%d %s/%d ts %d: answer has %d topics", resp.Version, topic, p, ts, len(resp.Topics))
	}
	return resp.Topics[0].Partitions[0]
}

// timedRecords are n records for topic whose timestamps rise by 10 ms from
// base, except three: record dip goes back below its neighbours, and
// record peak has the largest timestamp of all, far ahead; both sit inside
// batches so that a lookup must look at records, not just batch headers.
func timedRecords(topic string, n int, base int64) []*kgo.Record {
	const dip, peak = 45, 137
	recs := make([]*kgo.Record, n)
	for i := range recs {
		ts := base + 10*int64(i)
		switch i {
		case dip:
			ts = base + 10*int64(i) - 95
		case peak:
			ts = base + 100_000
		}
		// Values that compress, so that a compressing producer really
		// sends compressed batches.
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d %s", i, strings.Repeat("flotilla ", 8)), Timestamp: time.UnixMilli(ts)}
	}
	return recs
}

// firstAtOrAfter is what Kafka answers to ListOffsets for ts: the first
// offset whose record's timestamp is >= ts, with that timestamp; -1, -1 if
// there is none.
func firstAtOrAfter(recs []*kgo.Record, ts int64) (offset, timestamp int64) {
	for i, r := range recs {
		if r.Timestamp.UnixMilli() >= ts {
			return int64(i), r.Timestamp.UnixMilli()
		}
	}
	return -1, -1
}

// TestListOffsets produces records with known timestamps to a one-partition
// topic, in batches of 20, uncompressed and compressed, and checks what
// ListOffsets answers: earliest, latest, by time (kadm and raw), max
// timestamp (-3, KIP-734), an empty partition, an unknown partition, and
// leader-epoch fencing.
func TestListOffsets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	adm := nd.admin(t)
	const n = 200
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Second).UnixMilli()

	produced := map[string][]*kgo.Record{}
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
		attr  uint8 // compression bits every batch must carry
	}{
		{"uncompressed", kgo.NoCompression(), 0},
		// Kafka decompresses a batch to find the exact record (its
		// LogSegment.findOffsetByTimestamp iterates the batch's records);
		// a consumer seeking by time must not get records before it.
		{"gzip", kgo.GzipCompression(), 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			topic := "times-" + c.name
			createTopic(t, adm, topic, 1, nil)
			recs := timedRecords(topic, n, base)
			produced[topic] = recs
			prod := nd.client(t, kgo.ProducerBatchCompression(c.codec))
			ctx := testCtx(t, 30*time.Second)
			for i := 0; i < n; i += 20 {
				// One ProduceSync per 20 records: one batch each.
				if err := prod.ProduceSync(ctx, recs[i:i+20]...).FirstErr(); err != nil {
					t.Fatalf("produce records %d..%d: %v", i, i+19, err)
				}
			}
			for i, r := range recs {
				if r.Offset != int64(i) {
					t.Fatalf("record %d acknowledged at offset %d", i, r.Offset)
				}
			}
			for _, r := range consumeAll(t, ctx, nd, topic, n) {
				if r.Attrs.CompressionType() != c.attr {
					t.Fatalf("record %d is stored with compression %d, want %d", r.Offset, r.Attrs.CompressionType(), c.attr)
				}
			}
			checkListOffsets(t, nd, topic, recs, base)
		})
	}

	// The log is rebuilt at restart (segments reset to the checkpoint,
	// the rest replayed from the WAL): its time index must answer the same.
	t.Run("after restart", func(t *testing.T) {
		nd.kill()
		nd.start(t)
		nd.waitKafka(t)
		const topic = "times-uncompressed"
		if produced[topic] == nil {
			t.Skip("the uncompressed subtest did not run")
		}
		waitTopicReady(t, nd.admin(t), topic, 1)
		checkListOffsets(t, nd, topic, produced[topic], base)
	})

	t.Run("edge cases", func(t *testing.T) {
		const topic = "times-empty"
		adm, cl := nd.admin(t), nd.client(t) // clients of the restarted broker
		createTopic(t, adm, topic, 1, nil)
		epoch := leaderEpoch(t, cl, topic, 0)
		cases := []struct {
			name         string
			partition    int32
			ts           int64
			currentEpoch int32
			code         int16
			offset       int64
		}{
			{"empty: latest", 0, -1, -1, 0, 0},
			{"empty: earliest", 0, -2, -1, 0, 0},
			{"empty: by time", 0, base, -1, 0, -1},
			{"empty: max timestamp", 0, -3, -1, 0, -1},
			{"unknown partition", 7, -1, -1, kerr.UnknownTopicOrPartition.Code, -1},
			{"client epoch ahead", 0, -1, epoch + 1, kerr.UnknownLeaderEpoch.Code, -1},
			{"client epoch behind", 0, -1, epoch - 1, kerr.FencedLeaderEpoch.Code, -1},
			{"client epoch current", 0, -1, epoch, 0, 0},
		}
		for _, c := range cases {
			got := listOffsets(t, cl, nd, topic, c.partition, c.ts, c.currentEpoch)
			if got.ErrorCode != c.code || got.Offset != c.offset {
				t.Errorf("%s: %s offset %d, want %s offset %d", c.name, codeName(got.ErrorCode), got.Offset, codeName(c.code), c.offset)
			}
		}
		got := listOffsets(t, cl, nd, "no-such-topic", 0, -1, -1)
		if got.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Errorf("unknown topic: %s, want UNKNOWN_TOPIC_OR_PARTITION", codeName(got.ErrorCode))
		}
	})
}

// offsetForLeaderEpoch sends one raw OffsetForLeaderEpoch request for
// partition 0 of topic and returns its answer.
func offsetForLeaderEpoch(t *testing.T, cl *kgo.Client, nd *node, topic string, currentEpoch, epoch int32) kmsg.OffsetForLeaderEpochResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrOffsetForLeaderEpochRequest()
	req.ReplicaID = -1 // a consumer
	rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
	rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = 0, currentEpoch, epoch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := brokerRequest[*kmsg.OffsetForLeaderEpochResponse](t, cl, nd, req)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("OffsetForLeaderEpoch %s: answer has %d topics", topic, len(resp.Topics))
	}
	return resp.Topics[0].Partitions[0]
}

// TestOffsetForLeaderEpochAfterRestart: a broker restart makes the
// partition elect itself again in a higher term, which is a new leader
// epoch; OffsetForLeaderEpoch for the old epoch ends where the log ended
// before the restart, as a consumer checking for truncation needs.
func TestOffsetForLeaderEpochAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	const topic = "epochs"
	createTopic(t, nd.admin(t), topic, 1, nil)
	cl := nd.client(t)
	ctx := testCtx(t, 60*time.Second)
	var recs []*kgo.Record
	for i := range 50 {
		recs = append(recs, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "before-%d", i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce before restart: %v", err)
	}
	e1 := leaderEpoch(t, cl, topic, 0)
	if got := offsetForLeaderEpoch(t, cl, nd, topic, e1, e1); got.ErrorCode != 0 || got.LeaderEpoch != e1 || got.EndOffset != 50 {
		t.Fatalf("before restart, epoch %d: %s epoch %d end %d; want epoch %d end 50", e1, codeName(got.ErrorCode), got.LeaderEpoch, got.EndOffset, e1)
	}

	nd.kill()
	nd.start(t)
	nd.waitKafka(t)
	adm := nd.admin(t)
	waitTopicReady(t, adm, topic, 1)
	cl2 := nd.client(t)
	e2 := leaderEpoch(t, cl2, topic, 0)
	if e2 <= e1 {
		t.Fatalf("leader epoch after restart %d, before %d: it must increase", e2, e1)
	}
	// Metadata names the leader raft elected; ListOffsets and
	// OffsetForLeaderEpoch answer NOT_LEADER_OR_FOLLOWER until it has also
	// applied an entry of its own term, and clients retry. The checks
	// below are of the answers once it does.
	waitFor(t, 15*time.Second, "OffsetForLeaderEpoch answered without an error after the restart", func() bool {
		return offsetForLeaderEpoch(t, cl2, nd, topic, e2, e1).ErrorCode == 0
	})

	check := func(when string, current, epoch int32, code int16, wantEpoch int32, wantEnd int64) {
		t.Helper()
		got := offsetForLeaderEpoch(t, cl2, nd, topic, current, epoch)
		if got.ErrorCode != code || got.LeaderEpoch != wantEpoch || got.EndOffset != wantEnd {
			t.Errorf("%s: OffsetForLeaderEpoch(current %d, epoch %d): %s epoch %d end %d; want %s epoch %d end %d",
				when, current, epoch, codeName(got.ErrorCode), got.LeaderEpoch, got.EndOffset, codeName(code), wantEpoch, wantEnd)
		}
	}
	// The old epoch ends where the log ended before the restart.
	check("after restart", e2, e1, 0, e1, 50)
	// An epoch older than the log's first ends where the first starts
	// (Kafka's answer; -1/-1 would read as a truncation to the client).
	check("epoch older than the log's first", e2, e1-1, 0, e1-1, 0)
	// ListOffsets gives the epoch of the batch it found.
	if got := listOffsets(t, cl2, nd, topic, 0, -2, e2); got.ErrorCode != 0 || got.Offset != 0 || got.LeaderEpoch != e1 {
		t.Errorf("ListOffsets earliest after restart: %s offset %d epoch %d; want offset 0 epoch %d", codeName(got.ErrorCode), got.Offset, got.LeaderEpoch, e1)
	}
	if got := listOffsets(t, cl2, nd, topic, 0, -1, e2); got.ErrorCode != 0 || got.Offset != 50 || got.LeaderEpoch != e2 {
		t.Errorf("ListOffsets latest after restart: %s offset %d epoch %d; want offset 50 epoch %d", codeName(got.ErrorCode), got.Offset, got.LeaderEpoch, e2)
	}
	if got := listOffsets(t, cl2, nd, topic, 0, 0, e2); got.ErrorCode != 0 || got.Offset != 0 || got.LeaderEpoch != e1 {
		t.Errorf("ListOffsets by timestamp 0 after restart: %s offset %d epoch %d; want offset 0 epoch %d", codeName(got.ErrorCode), got.Offset, got.LeaderEpoch, e1)
	}
	if got := listOffsets(t, cl2, nd, topic, 0, time.Now().Add(time.Hour).UnixMilli(), e2); got.ErrorCode != 0 || got.Offset != -1 || got.LeaderEpoch != -1 {
		t.Errorf("ListOffsets by a future timestamp: %s offset %d epoch %d; want -1, -1", codeName(got.ErrorCode), got.Offset, got.LeaderEpoch)
	}
	check("after restart, no current epoch", -1, e1, 0, e1, 50)
	// The current epoch ends at the log end even before it has records:
	// Kafka's leader adds its epoch to its cache when it becomes leader.
	check("after restart, current epoch", e2, e2, 0, e2, 50)
	// Fencing by the client's idea of the current epoch.
	check("stale client", e1, e1, kerr.FencedLeaderEpoch.Code, -1, -1)
	check("client from the future", e2+1, e1, kerr.UnknownLeaderEpoch.Code, -1, -1)

	recs = recs[:0]
	for i := range 30 {
		recs = append(recs, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "after-%d", i)})
	}
	if err := cl2.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce after restart: %v", err)
	}
	check("after producing in the new epoch", e2, e1, 0, e1, 50)
	check("after producing in the new epoch, current epoch", e2, e2, 0, e2, 80)
	// An epoch the log has never seen and that is above the current one:
	// Kafka has no entry at or above it and answers UNDEFINED (-1, -1).
	check("epoch above the current one", -1, e2+5, 0, -1, -1)

	// Every record carries the epoch it was written in.
	for _, r := range consumeAll(t, ctx, nd, topic, 80) {
		want := e1
		if r.Offset >= 50 {
			want = e2
		}
		if r.LeaderEpoch != want {
			t.Errorf("record at offset %d has leader epoch %d, want %d", r.Offset, r.LeaderEpoch, want)
			break
		}
	}
}

// checkListOffsets checks every kind of ListOffsets answer for partition 0
// of topic, which holds exactly recs (timedRecords from base), against
// what Kafka answers.
//
// Not a t.Helper: failures point at the check that failed.
func checkListOffsets(t *testing.T, nd *node, topic string, recs []*kgo.Record, base int64) {
	n := int64(len(recs))
	adm, cl := nd.admin(t), nd.client(t)
	epoch := leaderEpoch(t, cl, topic, 0)
	ctx := testCtx(t, 30*time.Second)

	start, err := adm.ListStartOffsets(ctx, topic)
	if err != nil || start.Error() != nil {
		t.Fatalf("ListStartOffsets: %v %v", err, start.Error())
	}
	end, err := adm.ListEndOffsets(ctx, topic)
	if err != nil || end.Error() != nil {
		t.Fatalf("ListEndOffsets: %v %v", err, end.Error())
	}
	if s, e := start[topic][0], end[topic][0]; s.Offset != 0 || e.Offset != n || e.LeaderEpoch != epoch {
		t.Fatalf("start %d, end %d (leader epoch %d); want 0, %d (epoch %d)", s.Offset, e.Offset, e.LeaderEpoch, n, epoch)
	}

	// By time: before everything, on and between records, on the
	// dip, past the last ordinary record (only the peak is later),
	// and past the peak.
	targets := []int64{base - 1_000_000, base, base + 1, base + 355, base + 356, base + 440, base + 445,
		base + 450, base + 10*99 + 3, base + 10*150, base + 10*199, base + 10*199 + 1, base + 100_000, base + 100_001}
	for _, ts := range targets {
		wantOff, wantTs := firstAtOrAfter(recs, ts)
		got := listOffsets(t, cl, nd, topic, 0, ts, epoch)
		if got.ErrorCode != 0 || got.Offset != wantOff || got.Timestamp != wantTs {
			t.Errorf("ListOffsets ts base%+d: %s offset %d timestamp %d; Kafka answers offset %d timestamp %d",
				ts-base, codeName(got.ErrorCode), got.Offset, got.Timestamp, wantOff, wantTs)
		}
		// kadm answers the end offset where the broker has none.
		if wantOff == -1 {
			wantOff = n
		}
		after, err := adm.ListOffsetsAfterMilli(ctx, ts, topic)
		if err != nil || after.Error() != nil {
			t.Fatalf("ListOffsetsAfterMilli: %v %v", err, after.Error())
		}
		if o := after[topic][0]; o.Offset != wantOff {
			t.Errorf("ListOffsetsAfterMilli base%+d: offset %d, want %d", ts-base, o.Offset, wantOff)
		}
	}

	// Max timestamp (-3): the peak record, raw and through kadm.
	peak := recs[137]
	if got := listOffsets(t, cl, nd, topic, 0, -3, -1); got.ErrorCode != 0 || got.Offset != 137 || got.Timestamp != peak.Timestamp.UnixMilli() {
		t.Errorf("ListOffsets -3: %s offset %d timestamp %d; want offset 137 timestamp %d",
			codeName(got.ErrorCode), got.Offset, got.Timestamp, peak.Timestamp.UnixMilli())
	}
	maxTs, err := adm.ListMaxTimestampOffsets(ctx, topic)
	if err != nil || maxTs.Error() != nil {
		t.Fatalf("ListMaxTimestampOffsets: %v %v", err, maxTs.Error())
	}
	if o := maxTs[topic][0]; o.Offset != 137 || o.Timestamp != peak.Timestamp.UnixMilli() {
		t.Errorf("ListMaxTimestampOffsets: offset %d timestamp %d, want 137, %d", o.Offset, o.Timestamp, peak.Timestamp.UnixMilli())
	}

	// Latest and earliest through the raw request too.
	if got := listOffsets(t, cl, nd, topic, 0, -1, -1); got.ErrorCode != 0 || got.Offset != n || got.LeaderEpoch != epoch {
		t.Errorf("ListOffsets -1: %s offset %d epoch %d, want %d epoch %d", codeName(got.ErrorCode), got.Offset, got.LeaderEpoch, n, epoch)
	}
	if got := listOffsets(t, cl, nd, topic, 0, -2, -1); got.ErrorCode != 0 || got.Offset != 0 {
		t.Errorf("ListOffsets -2: %s offset %d, want 0", codeName(got.ErrorCode), got.Offset)
	}
}
