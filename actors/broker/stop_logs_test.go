package broker

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// peerLine is a log line about a raft peer.
type peerLine struct {
	Level   string `json:"level"`
	Peer    uint64 `json:"peer"`
	Message string `json:"message"`
}

// peerLines returns the lines of node's log, from the from-th on, in
// which it lost or could not reach peer.
func (l *clusterLogs) peerLines(node, peer uint64, from int) []peerLine {
	var out []peerLine
	lines := l.node(node).lines()
	for _, line := range lines[min(from, len(lines)):] {
		var pl peerLine
		if json.Unmarshal([]byte(line), &pl) != nil || pl.Peer != peer {
			continue
		}
		if strings.HasPrefix(pl.Message, "lost connection to raft peer") || strings.HasPrefix(pl.Message, "cannot reach raft peer") {
			out = append(out, pl)
		}
	}
	return out
}

// TestCleanStopLogsNoWarningOnThePeers: the peers of a broker stopped
// cleanly (a routine rolling restart) log that they lost it and cannot
// reach it at info, since it told them it was stopping; a broker that
// crashes is still warned of.
func TestCleanStopLogsNoWarningOnThePeers(t *testing.T) {
	c, logs := newLoggedCluster(t, 3, zerolog.InfoLevel)
	c.waitReady()
	// both reports whether nodes 1 and 2 logged, after their from-th
	// lines, that they lost broker 3 and could not reach it.
	both := func(from [2]int) bool {
		for i, node := range []uint64{1, 2} {
			var lost, unreachable bool
			for _, pl := range logs.peerLines(node, 3, from[i]) {
				lost = lost || strings.HasPrefix(pl.Message, "lost connection")
				unreachable = unreachable || strings.HasPrefix(pl.Message, "cannot reach")
			}
			if !lost || !unreachable {
				return false
			}
		}
		return true
	}
	levels := func(from [2]int) map[string]int {
		n := map[string]int{}
		for i, node := range []uint64{1, 2} {
			for _, pl := range logs.peerLines(node, 3, from[i]) {
				n[pl.Level]++
			}
		}
		return n
	}
	mark := func() [2]int { return [2]int{len(logs.node(1).lines()), len(logs.node(2).lines())} }
	// connected waits until nodes 1 and 2 logged, after their from-th
	// lines, a connection to broker 3 that settled: only the loss of a
	// settled connection is logged as lost rather than as failed.
	connected := func(from [2]int) {
		c.waitFor(15*time.Second, "nodes 1 and 2 connected to broker 3", func() bool {
			for i, node := range []uint64{1, 2} {
				ok := false
				for _, line := range logs.node(node).lines()[from[i]:] {
					var pl peerLine
					ok = ok || json.Unmarshal([]byte(line), &pl) == nil && pl.Peer == 3 && pl.Message == "connected to raft peer"
				}
				if !ok || c.brokers[i].liveness.Stopping(3) {
					return false
				}
			}
			return true
		})
	}

	connected([2]int{})
	from := mark()
	c.stop(2)
	c.waitFor(10*time.Second, "nodes 1 and 2 to log that broker 3 went away", func() bool { return both(from) })
	if n := levels(from); n["warn"] > 0 || n["info"] == 0 {
		t.Fatalf("after a clean stop of broker 3 its peers logged its loss at %v, want info only", n)
	}

	// Back, and then crashed: no notice, so a warning.
	from = mark()
	c.start(2)
	connected(from)
	from = mark()
	c.crash(2)
	c.waitFor(10*time.Second, "nodes 1 and 2 to log that broker 3 went away", func() bool { return both(from) })
	if n := levels(from); n["info"] > 0 || n["warn"] == 0 {
		t.Fatalf("after broker 3 crashed its peers logged its loss at %v, want warnings", n)
	}
}
