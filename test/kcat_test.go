package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kcat runs /usr/bin/kcat against nd with stdin and returns its stdout; it
// fails the test if kcat does not exit 0 within 60 s.
func kcat(t *testing.T, nd *node, stdin []byte, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (CI installs it with apt)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"-b", nd.kafka}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v (context: %v)\nstderr:\n%s", strings.Join(args, " "), err, ctx.Err(), stderr.String())
	}
	return stdout.Bytes()
}

// kcatMessage is one line of `kcat -C -J`.
type kcatMessage struct {
	Topic     string   `json:"topic"`
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	TsType    string   `json:"tstype"`
	Ts        int64    `json:"ts"`
	Headers   []string `json:"headers"` // key, value, key, value...
	Key       *string  `json:"key"`
	Payload   *string  `json:"payload"`
}

// kcatConsume reads topic from the beginning to its end with kcat (-e: exit
// at the end of every partition) and checks that offsets are dense from 0
// in each partition.
func kcatConsume(t *testing.T, nd *node, topic string, extra ...string) []kcatMessage {
	t.Helper()
	out := kcat(t, nd, nil, append([]string{"-C", "-t", topic, "-e", "-o", "beginning", "-J", "-q"}, extra...)...)
	var msgs []kcatMessage
	next := map[int32]int64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m kcatMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("kcat -C -J printed %q: %v", sc.Text(), err)
		}
		if m.Offset != next[m.Partition] {
			t.Fatalf("kcat read %s/%d at offset %d, expected %d next (dense, each once)", topic, m.Partition, m.Offset, next[m.Partition])
		}
		next[m.Partition]++
		msgs = append(msgs, m)
	}
	return msgs
}

// TestKcat drives the broker with librdkafka through kcat: metadata, then
// produce and consume with each codec kcat has, idempotent production, and
// kcat reading what franz-go wrote.
func TestKcat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Skip("kcat is not installed (CI installs it with apt)")
	}
	nd := startKafka(t)
	adm := nd.admin(t)

	t.Run("metadata", func(t *testing.T) {
		createTopic(t, adm, "kcat-meta", 3, nil)
		var md struct {
			ControllerID int32 `json:"controllerid"`
			Brokers      []struct {
				ID   int32  `json:"id"`
				Name string `json:"name"`
			} `json:"brokers"`
			Topics []struct {
				Topic      string `json:"topic"`
				Err        string `json:"error"`
				Partitions []struct {
					Partition int32  `json:"partition"`
					Leader    int32  `json:"leader"`
					Err       string `json:"error"`
				} `json:"partitions"`
			} `json:"topics"`
		}
		out := kcat(t, nd, nil, "-L", "-J")
		if err := json.Unmarshal(out, &md); err != nil {
			t.Fatalf("kcat -L -J: %v\n%s", err, out)
		}
		if len(md.Brokers) != 1 || md.Brokers[0].ID != 1 || md.Brokers[0].Name != nd.kafka || md.ControllerID != 1 {
			t.Fatalf("kcat -L: brokers %+v controller %d; want broker 1 at %s, controller 1", md.Brokers, md.ControllerID, nd.kafka)
		}
		found := false
		for _, tp := range md.Topics {
			if tp.Topic != "kcat-meta" {
				continue
			}
			found = true
			if tp.Err != "" || len(tp.Partitions) != 3 {
				t.Fatalf("kcat -L: topic %+v, want 3 partitions without error", tp)
			}
			for _, p := range tp.Partitions {
				if p.Leader != 1 || p.Err != "" {
					t.Errorf("kcat -L: partition %+v, want leader 1", p)
				}
			}
		}
		if !found {
			t.Fatalf("kcat -L does not list kcat-meta: %s", out)
		}
	})

	// Produce with kcat, consume with kcat: -z picks the codec; the last
	// case turns on librdkafka's idempotent producer (InitProducerId and
	// sequence numbers).
	cases := []struct {
		name string
		args []string
	}{
		{"none", nil},
		{"gzip", []string{"-z", "gzip"}},
		{"snappy", []string{"-z", "snappy"}},
		{"lz4", []string{"-z", "lz4"}},
		{"zstd", []string{"-z", "zstd"}},
		{"idempotent-lz4", []string{"-z", "lz4", "-X", "enable.idempotence=true"}},
	}
	for i, tc := range cases {
		t.Run("produce-"+tc.name, func(t *testing.T) {
			topic := "kcat-" + tc.name
			createTopic(t, adm, topic, 3, nil)
			const n = 2000
			rng := rand.New(rand.NewPCG(7, uint64(i)))
			var in bytes.Buffer
			want := map[string]string{}
			for j := range n {
				key := fmt.Sprintf("key-%05d", j)
				var v strings.Builder
				for range 1 + rng.IntN(20) {
					v.WriteString(words[rng.IntN(len(words))])
					v.WriteByte('_')
				}
				want[key] = v.String()
				fmt.Fprintf(&in, "%s:%s\n", key, v.String())
			}
			const initPIDs = `flotilla_kafka_requests_total{api="InitProducerID",outcome="answered"}`
			before := nd.metric(t, initPIDs)
			args := append([]string{"-P", "-t", topic, "-K:", "-H", "origin=kcat"}, tc.args...)
			kcat(t, nd, in.Bytes(), args...)
			if idempotent := strings.Contains(tc.name, "idempotent"); idempotent && nd.metric(t, initPIDs) == before {
				t.Fatalf("kcat with enable.idempotence=true got no InitProducerId answer: not idempotent after all")
			}

			msgs := kcatConsume(t, nd, topic)
			if len(msgs) != n {
				t.Fatalf("kcat read %d messages, produced %d", len(msgs), n)
			}
			lastInPart := map[int32]string{}
			for _, m := range msgs {
				if m.Key == nil || m.Payload == nil {
					t.Fatalf("message without key or payload: %+v", m)
				}
				v, ok := want[*m.Key]
				if !ok {
					t.Fatalf("message %q read twice or never produced", *m.Key)
				}
				delete(want, *m.Key)
				if v != *m.Payload {
					t.Fatalf("message %q: payload %q, produced %q", *m.Key, *m.Payload, v)
				}
				if len(m.Headers) != 2 || m.Headers[0] != "origin" || m.Headers[1] != "kcat" {
					t.Fatalf("message %q: headers %q, want [origin kcat]", *m.Key, m.Headers)
				}
				// One producer, keys in order: within a partition they
				// must come back in the order they were written.
				if prev := lastInPart[m.Partition]; *m.Key <= prev {
					t.Fatalf("partition %d: %q after %q, out of production order", m.Partition, *m.Key, prev)
				}
				lastInPart[m.Partition] = *m.Key
			}
		})
	}

	// kcat (librdkafka's parser) reads what franz-go wrote, compressed, with
	// headers and explicit timestamps.
	t.Run("reads-kgo", func(t *testing.T) {
		const topic = "kcat-from-kgo"
		createTopic(t, adm, topic, 2, nil)
		rng := rand.New(rand.NewPCG(11, 12))
		var recs []*kgo.Record
		base := time.Now().Add(-time.Hour).UnixMilli()
		for j := range 1000 {
			recs = append(recs, &kgo.Record{
				Topic:     topic,
				Key:       fmt.Appendf(nil, "k%04d", j),
				Value:     fmt.Appendf(nil, "%s-%d", words[rng.IntN(len(words))], rng.IntN(1e6)),
				Headers:   []kgo.RecordHeader{{Key: "n", Value: fmt.Appendf(nil, "%d", j)}, {Key: "w", Value: []byte(words[j%len(words)])}},
				Timestamp: time.UnixMilli(base + int64(rng.IntN(1e6))),
			})
		}
		prod := nd.client(t, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
		produceAll(t, testCtx(t, 30*time.Second), prod, recs)
		byKey := map[string]*kgo.Record{}
		for _, r := range recs {
			byKey[string(r.Key)] = r
		}
		msgs := kcatConsume(t, nd, topic)
		if len(msgs) != len(recs) {
			t.Fatalf("kcat read %d messages, kgo produced %d", len(msgs), len(recs))
		}
		for _, m := range msgs {
			r := byKey[*m.Key]
			if r == nil {
				t.Fatalf("kcat read %q twice or kgo never produced it", *m.Key)
			}
			delete(byKey, *m.Key)
			wantHeaders := []string{"n", string(r.Headers[0].Value), "w", string(r.Headers[1].Value)}
			switch {
			case m.Partition != r.Partition || m.Offset != r.Offset:
				t.Fatalf("%q read at %d/%d, acknowledged at %d/%d", *m.Key, m.Partition, m.Offset, r.Partition, r.Offset)
			case *m.Payload != string(r.Value):
				t.Fatalf("%q: payload %q, want %q", *m.Key, *m.Payload, r.Value)
			case m.Ts != r.Timestamp.UnixMilli() || m.TsType != "create":
				t.Fatalf("%q: timestamp %s %d, want create %d", *m.Key, m.TsType, m.Ts, r.Timestamp.UnixMilli())
			case strings.Join(m.Headers, "\x00") != strings.Join(wantHeaders, "\x00"):
				t.Fatalf("%q: headers %q, want %q", *m.Key, m.Headers, wantHeaders)
			}
		}
	})
}
