package test

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// editConfig rewrites nd's config file, replacing old with new (which must
// be there).
func (nd *node) editConfig(t *testing.T, old, new string) {
	t.Helper()
	b, err := os.ReadFile(nd.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("config %s has no %q:\n%s", nd.config, old, b)
	}
	if err := os.WriteFile(nd.config, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSIGHUPReload: SIGHUP reloads the config file. The log level applies
// at once; a setting that cannot change live is reported as needing a
// restart; a config that does not validate is refused and the broker runs
// on as it was.
func TestSIGHUPReload(t *testing.T) {
	nd := newCluster(t, 1)[0]
	nd.start(t)
	nd.waitKafka(t)
	adm := nd.admin(t)

	nd.editConfig(t, "log: {level: info, format: json}", "log: {level: warn, format: json}")
	nd.editConfig(t, "raft: {listen: "+`"`+nd.raft+`"}`, "raft: {listen: "+`"`+nd.raft+`", tick_ms: 20}`)
	nd.signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the reload reporting raft.tick_ms", func() bool {
		return strings.Contains(nd.tail(1<<20), `"keys":["raft.tick_ms"],"time"`) &&
			strings.Contains(nd.tail(1<<20), "take effect only after a restart")
	})
	createTopic(t, adm, "quiet", 1, nil)
	if strings.Contains(nd.tail(1<<20), `"topic":"quiet"`) {
		t.Fatal("an info line about topic quiet was logged at level warn")
	}

	nd.editConfig(t, "log: {level: warn, format: json}", "log: {level: info, format: json}")
	nd.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "info lines again after the level went back to info", func() bool {
		createTopic(t, adm, "loud-"+time.Now().Format("150405.000000"), 1, nil)
		return strings.Contains(nd.tail(1<<20), `"topic":"loud-`)
	})

	nd.editConfig(t, "log: {level: info, format: json}", "log: {level: chatty, format: json}")
	nd.signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the bad config refused", func() bool {
		return strings.Contains(nd.tail(1<<20), "config not reloaded") && strings.Contains(nd.tail(1<<20), "log.level")
	})
	if !nd.running() {
		t.Fatal("the broker exited on a bad config reload")
	}
	createTopic(t, adm, "still-serving", 1, nil)
}
