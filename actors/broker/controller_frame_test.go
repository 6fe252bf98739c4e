package broker

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TestTopicConfigAboveFrameLimitDoesNotWedgeTheController: an integer
// config value passes validation at any length when it has leading zeros
// ("000…0604800000" is a valid retention.ms, to Kafka too), so a
// CreateTopics or AlterConfigs far smaller than a Kafka request may be
// (100 MiB) made a controller entry larger than raft.max_frame_bytes
// (here with several values of the longest string a Kafka request may
// carry, 32767 bytes: a longer one closes the connection). The
// leader appended it but could never send it, and every controller entry
// after it waited behind it. Integer configs are now stored canonically,
// as Kafka's DescribeConfigs reports them; and a command that is still too
// large for a frame (here a topic of 10000 partitions, whose replica lists
// alone take 80 KB) is refused with RECORD_LIST_TOO_LARGE before it is
// proposed. The controller goes on taking commands.
func TestTopicConfigAboveFrameLimitDoesNotWedgeTheController(t *testing.T) {
	c, ctx := smallFrameCluster(t, 64<<10)
	cl := c.client()
	adm := kadm.NewClient(cl)
	// padded returns configs whose values are v with leading zeros, each
	// as long as a request's string may be.
	padded := func(kv ...string) map[string]*string {
		m := map[string]*string{}
		for i := 0; i < len(kv); i += 2 {
			v := strings.Repeat("0", math.MaxInt16-len(kv[i+1])) + kv[i+1]
			m[kv[i]] = &v
		}
		return m
	}

	createCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := adm.CreateTopic(createCtx, 1, 3, padded("retention.ms", "604800000", "max.message.bytes", "1048588",
		"message.timestamp.after.max.ms", "3600000", "message.timestamp.before.max.ms", "86400000"), "huge-config")
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("create with four %d-byte configs: %v", math.MaxInt16, err)
	}
	described := func(key, want string) {
		t.Helper()
		c.waitFor(10*time.Second, key+" described as "+want, func() bool {
			rcs, err := adm.DescribeTopicConfigs(ctx, "huge-config")
			if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
				return false
			}
			for _, rc := range rcs[0].Configs {
				if rc.Key == key {
					return rc.MaybeValue() == want
				}
			}
			return false
		})
	}
	described("retention.ms", "604800000")

	var alters []kadm.AlterConfig
	for k, v := range padded("retention.bytes", "4096", "segment.bytes", "1048576", "min.insync.replicas", "1") {
		alters = append(alters, kadm.AlterConfig{Name: k, Value: v})
	}
	rs, err := adm.AlterTopicConfigs(createCtx, alters, "huge-config")
	if err == nil && len(rs) == 1 {
		err = rs[0].Err
	}
	if err != nil {
		t.Fatalf("alter three configs to %d-byte values: %v", math.MaxInt16, err)
	}
	described("retention.bytes", "4096")
	described("segment.bytes", "1048576")

	res, err = adm.CreateTopic(createCtx, 10000, 3, nil, "too-many-partitions")
	if err == nil {
		err = res.Err
	}
	if !errors.Is(err, kerr.RecordListTooLarge) {
		t.Fatalf("a topic whose controller entry is above the frame limit: %v, want RECORD_LIST_TOO_LARGE", err)
	}

	res, err = adm.CreateTopic(createCtx, 1, 3, nil, "after")
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("a small topic after them: %v (the controller takes no command after an oversized entry)", err)
	}
}
