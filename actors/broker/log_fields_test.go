package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/configs"
)

// lineLog holds the JSON log lines of one broker; zerolog writes each event
// with one Write, from many goroutines.
type lineLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the lines written so far.
func (l *lineLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSuffix(l.buf.String(), "\n"), "\n")
}

// clusterLogs is a lineLog per broker.
type clusterLogs struct {
	mu     sync.Mutex
	byNode map[uint64]*lineLog
}

func (c *clusterLogs) writer(node uint64) io.Writer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byNode == nil {
		c.byNode = map[uint64]*lineLog{}
	}
	if c.byNode[node] == nil {
		c.byNode[node] = &lineLog{}
	}
	return c.byNode[node]
}

func (c *clusterLogs) node(node uint64) *lineLog {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byNode[node]
}

// newLoggedCluster is newTestCluster whose brokers log JSON at level into
// the returned clusterLogs.
func newLoggedCluster(t *testing.T, n int, level zerolog.Level, tune ...func(*configs.Config)) (*testCluster, *clusterLogs) {
	t.Helper()
	logs := &clusterLogs{}
	return startCluster(t, n, &testCluster{logs: logs.writer, logLevel: level}, tune...), logs
}

// logFields decodes one JSON log line into its keys and the JSON kind of
// each value (string, number, bool, array, object, null), and fails on a
// key that appears twice: strict parsers reject such a line and lenient ones
// keep only one of the values.
func logFields(line string) (map[string]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	kinds := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("value of %q: %w", key, err)
		}
		if _, dup := kinds[key]; dup {
			return nil, fmt.Errorf("key %q appears twice", key)
		}
		switch v.(type) {
		case string:
			kinds[key] = "string"
		case json.Number:
			kinds[key] = "number"
		case bool:
			kinds[key] = "bool"
		case []any:
			kinds[key] = "array"
		case map[string]any:
			kinds[key] = "object"
		default:
			kinds[key] = "null"
		}
	}
	return kinds, nil
}

// checkLogFields fails t for every line with a duplicate key, a documented
// key (README, "Logs") of another kind, or a key whose kind differs from
// the one it had on an earlier line: log stores that map fields by type
// reject one of them.
func checkLogFields(t *testing.T, lines []string) {
	t.Helper()
	documented := map[string]string{
		"node": "number", "node_id": "number", "peer": "number", "leader": "number",
		"raft_group": "number", "topic": "string", "partition": "number",
		"consumer_group": "string", "member": "string", "term": "number", "index": "number",
	}
	seen := map[string]string{} // key -> kind and the first line with it
	bad := 0
	for _, line := range lines {
		if line == "" || bad > 10 {
			continue
		}
		kinds, err := logFields(line)
		if err != nil {
			bad++
			t.Errorf("%v: %s", err, line)
			continue
		}
		for key, kind := range kinds {
			if kind == "null" {
				continue
			}
			if want, ok := documented[key]; ok && kind != want {
				bad++
				t.Errorf("key %q is a %s, documented as a %s: %s", key, kind, want, line)
			}
			if first, ok := seen[key]; !ok {
				seen[key] = kind + " in " + line
			} else if !strings.HasPrefix(first, kind+" in ") {
				bad++
				t.Errorf("key %q is a %s here but a %s:\n%s", key, kind, first, line)
			}
		}
	}
}

// joinAndVanish joins group as a new consumer on cl's group coordinator and
// never heartbeats: its session expires after sessionMs.
func joinAndVanish(ctx context.Context, t *testing.T, cl *kgo.Client, group string, sessionMs int32) {
	t.Helper()
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.ProtocolType = group, "consumer"
	// A long rebalance timeout: the member never syncs, and the session,
	// not the sync deadline, is to remove it.
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = sessionMs, 60000
	proto := kmsg.NewJoinGroupRequestProtocol()
	proto.Name, proto.Metadata = "range", []byte{0, 0, 0, 0, 0, 0, 0, 0}
	req.Protocols = append(req.Protocols, proto)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := req.RequestWith(ctx, cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		switch {
		case err == nil:
			return
		case errors.Is(err, kerr.MemberIDRequired):
			req.MemberID = resp.MemberID
		default:
			time.Sleep(50 * time.Millisecond) // coordinator loading or not yet elected
		}
	}
	t.Fatalf("could not join group %s", group)
}

// TestLogFieldTypes drives a cluster through topic creation, produce, a
// consumer group session expiry and a broker stop, logging at debug, and
// checks that no line repeats a key and that every key keeps one JSON kind
// across all lines: raft_group is a number on every logger, consumer_group
// names a group, topic and partition are a string and a number.
func TestLogFieldTypes(t *testing.T) {
	c, logs := newLoggedCluster(t, 3, zerolog.DebugLevel, func(cfg *configs.Config) {
		cfg.Kafka.GroupMinSessionTimeoutMs = 200
		cfg.Kafka.GroupInitialRebalanceDelayMs = 0
	})
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := c.client(kgo.DefaultProduceTopic("fields"))
	c.createTopic(ctx, cl, "fields", 3, 3, nil)
	for i := range 10 {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	expired := func() string {
		for id := uint64(1); id <= 3; id++ {
			for _, line := range logs.node(id).lines() {
				if strings.Contains(line, "group member session expired") {
					return line
				}
			}
		}
		return ""
	}
	// A member that never synced is not in the offsets log: should its
	// coordinator move (a leadership transfer right after the offsets
	// topic was created), it is gone without expiring. Then join again.
	for attempt := 0; expired() == ""; attempt++ {
		if attempt == 5 {
			t.Fatal("no member session expired")
		}
		joinAndVanish(ctx, t, cl, fmt.Sprint("vanishing-", attempt), 300)
		for deadline := time.Now().Add(5 * time.Second); expired() == "" && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	kinds, err := logFields(expired())
	if err != nil {
		t.Fatalf("%v: %s", err, expired())
	}
	for key, want := range map[string]string{"consumer_group": "string", "raft_group": "number", "topic": "string", "partition": "number"} {
		if kinds[key] != want {
			t.Errorf("session expiry line: %s is %q, want a %s: %s", key, kinds[key], want, expired())
		}
	}

	c.stop(2)
	c.waitFor(20*time.Second, "broker 1 to see broker 3 go", func() bool {
		for _, line := range logs.node(1).lines() {
			// A connection younger than the netactor's settle time is
			// reported as unreachable rather than lost.
			if strings.Contains(line, "lost connection to raft peer") || strings.Contains(line, "cannot reach raft peer") {
				return true
			}
		}
		return false
	})
	var all []string
	for id := uint64(1); id <= 3; id++ {
		all = append(all, logs.node(id).lines()...)
	}
	checkLogFields(t, all)
}
