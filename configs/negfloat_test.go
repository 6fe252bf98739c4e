package configs

import "testing"

// "-1" for an unsigned setting is refused, but the same number
// written as a float ("-1.0", "-2e0") passes wholeNumbers (it is whole) and
// yaml converts it to uint64 by wrapping: raft.snapshot_entries becomes
// 18446744073709551615 (the controller never snapshots) and Validate
// accepts it.
func TestNegativeFloatForUnsignedRefused(t *testing.T) {
	for _, doc := range []string{
		"raft:\n  snapshot_entries: -1.0\n",
		"raft:\n  max_uncommitted_bytes: -1.0\n",
	} {
		cfg, err := Parse([]byte(doc))
		if err != nil {
			continue // refused: what we want
		}
		if err := cfg.Validate(); err != nil {
			continue
		}
		t.Errorf("%q accepted: snapshot_entries %d, max_uncommitted_bytes %d", doc, cfg.Raft.SnapshotEntries, cfg.Raft.MaxUncommittedBytes)
	}
}
