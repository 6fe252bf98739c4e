package partition

import (
	"fmt"
	"strconv"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/raftactor"
)

// SettingsOf resolves a topic's configs over this broker's defaults.
func SettingsOf(configs map[string]string, defaults controller.TopicDefaults) (Settings, error) {
	get := func(name string) string {
		if v, ok := configs[name]; ok {
			return v
		}
		return defaults.Value(name)
	}
	num := func(name string) (int64, error) {
		n, err := strconv.ParseInt(get(name), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("topic config %s: %w", name, err)
		}
		return n, nil
	}
	var s Settings
	var err error
	if s.RetentionMs, err = num("retention.ms"); err != nil {
		return s, err
	}
	if s.RetentionBytes, err = num("retention.bytes"); err != nil {
		return s, err
	}
	if s.SegmentBytes, err = num("segment.bytes"); err != nil {
		return s, err
	}
	mmb, err := num("max.message.bytes")
	if err != nil {
		return s, err
	}
	s.MaxMessageBytes = int(mmb)
	s.LogAppendTime = get("message.timestamp.type") == "LogAppendTime"
	misr, err := num("min.insync.replicas")
	if err != nil {
		return s, err
	}
	s.MinInsyncReplicas = int(misr)
	if s.TimestampBeforeMaxMs, err = num("message.timestamp.before.max.ms"); err != nil {
		return s, err
	}
	if s.TimestampAfterMaxMs, err = num("message.timestamp.after.max.ms"); err != nil {
		return s, err
	}
	return s, nil
}

// setSettings takes settings changed while the replica runs (SetSettings).
// A new segment size applies from the next roll; on the leader, new
// retention limits are enforced at once rather than at the next periodic
// check, and they reach every replica as a log start proposal.
func (m *Machine) setSettings(h *raftactor.Handle, s Settings) {
	old := m.o.Settings
	if s == old {
		return
	}
	if s.SegmentBytes != old.SegmentBytes {
		if err := m.log.SetSegmentBytes(s.SegmentBytes); err != nil {
			m.o.Log.Error().Err(err).Msg("segment size not changed")
			s.SegmentBytes = old.SegmentBytes
		}
	}
	// A leader recomputes its min.insync.replicas quorum every tick.
	m.o.Settings = s
	m.noteSizes()
	m.o.Log.Info().Int64("retention_ms", s.RetentionMs).Int64("retention_bytes", s.RetentionBytes).
		Int64("segment_bytes", s.SegmentBytes).Msg("partition settings changed")
	if m.ready {
		m.enforceRetention(h)
	}
}
