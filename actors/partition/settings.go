package partition

import (
	"fmt"
	"strconv"

	"github.com/flotilla/flotilla/actors/controller"
)

// SettingsOf resolves a topic's configs over the broker defaults.
func SettingsOf(configs map[string]string) (Settings, error) {
	get := func(name string) string {
		if v, ok := configs[name]; ok {
			return v
		}
		v, _ := controller.TopicConfigDefault(name)
		return v
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
	return s, nil
}
