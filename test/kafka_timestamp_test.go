package test

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTimestampWindow: on a topic with message.timestamp.after.max.ms of an
// hour, a record a kgo producer (idempotent, its defaults) timestamps two
// hours ahead is refused with INVALID_TIMESTAMP, in an uncompressed batch
// and in a zstd one, and the same producer's next record, timestamped now,
// is stored; a consumer reads the good records only. DescribeConfigs shows
// the topic's window.
func TestTimestampWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := startKafka(t)
	const topic = "ts-window"
	createTopic(t, nd.admin(t), topic, 1, map[string]*string{"message.timestamp.after.max.ms": kadm.StringPtr("3600000")})

	// Values that compress, so that kgo really sends zstd batches.
	value := func(s string) []byte { return []byte(s + strings.Repeat(" compressible", 100)) }
	var good []string
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
	}{{"none", kgo.NoCompression()}, {"zstd", kgo.ZstdCompression()}} {
		cl := nd.client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(c.codec))
		ctx := testCtx(t, 30*time.Second)
		ahead := &kgo.Record{Value: value("ahead"), Timestamp: time.Now().Add(2 * time.Hour)}
		if err := cl.ProduceSync(ctx, ahead).FirstErr(); !errors.Is(err, kerr.InvalidTimestamp) {
			t.Fatalf("%s: a record two hours ahead: %v, want INVALID_TIMESTAMP", c.name, err)
		}
		name := "now " + c.name
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: value(name), Timestamp: time.Now()}).FirstErr(); err != nil {
			t.Fatalf("%s: the next record, timestamped now: %v", c.name, err)
		}
		good = append(good, name)
	}

	got := consumeAll(t, testCtx(t, 30*time.Second), nd, topic, len(good))
	for i, r := range got {
		if name, _, _ := strings.Cut(string(r.Value), " compressible"); name != good[i] || r.Offset != int64(i) {
			t.Errorf("offset %d holds %q, want %q at %d", r.Offset, name, good[i], i)
		}
		// The zstd producer's batches were compressed: its refused one
		// went through the header-only check.
		if want := uint8(4 * i); r.Attrs.CompressionType() != want {
			t.Errorf("offset %d read from a batch of codec %d, want %d", r.Offset, r.Attrs.CompressionType(), want)
		}
	}

	rcs, err := nd.admin(t).DescribeTopicConfigs(testCtx(t, 10*time.Second), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"message.timestamp.after.max.ms": "3600000", "message.timestamp.before.max.ms": "9223372036854775807"}
	for _, c := range rc.Configs {
		if w, ok := want[c.Key]; ok {
			if c.MaybeValue() != w {
				t.Errorf("%s = %s, want %s", c.Key, c.MaybeValue(), w)
			}
			delete(want, c.Key)
		}
	}
	if len(want) > 0 {
		t.Errorf("DescribeConfigs lacks %v", want)
	}
}

// TestSIGHUPTimestampWindow: the broker's default of
// message.timestamp.after.max.ms reloads live. A record half an hour ahead
// is in the default window of an hour; once kafka.log_message_timestamp_
// after_max_ms is lowered to a minute in the file and the broker got
// SIGHUP, the running partition refuses the next one with
// INVALID_TIMESTAMP.
func TestSIGHUPTimestampWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nd := newCluster(t, 1)[0]
	nd.start(t)
	nd.waitKafka(t)
	const topic = "ts-reload"
	createTopic(t, nd.admin(t), topic, 1, nil)
	cl := nd.client(t, kgo.DefaultProduceTopic(topic))
	ctx := testCtx(t, 60*time.Second)
	ahead := func() error {
		return cl.ProduceSync(ctx, &kgo.Record{Value: []byte("ahead"), Timestamp: time.Now().Add(30 * time.Minute)}).FirstErr()
	}
	if err := ahead(); err != nil {
		t.Fatalf("half an hour ahead, before the reload: %v", err)
	}

	nd.editConfig(t, "kafka: {listen: "+`"`+nd.kafka+`"}`, "kafka: {listen: "+`"`+nd.kafka+`", log_message_timestamp_after_max_ms: 60000}`)
	nd.signal(syscall.SIGHUP)
	waitFor(t, 15*time.Second, "the partition refusing records half an hour ahead", func() bool {
		err := ahead()
		if err != nil && !errors.Is(err, kerr.InvalidTimestamp) {
			t.Fatalf("half an hour ahead, after the reload: %v", err)
		}
		return err != nil
	})
	nd.waitReloadApplied(t, "kafka.log_message_timestamp_after_max_ms")
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("now")}).FirstErr(); err != nil {
		t.Fatalf("a record timestamped now, after the reload: %v", err)
	}
}
