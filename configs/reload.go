package configs

import (
	"reflect"
	"strings"
)

// liveKeys are the settings a running broker applies when it reloads its
// config (SIGHUP); every other change waits for a restart.
var liveKeys = map[string]bool{
	"log.level": true, "log.format": true, "peers": true, "kafka.auto_create_topics_enable": true,
	"kafka.log_retention_ms": true, "kafka.log_retention_bytes": true, "kafka.log_segment_bytes": true,
	"kafka.log_message_timestamp_before_max_ms": true, "kafka.log_message_timestamp_after_max_ms": true,
}

// Changes are the settings that differ between two configs, by YAML key.
type Changes struct {
	// Live are applied by a running broker at once.
	Live []string
	// Restart take effect only when the broker starts again.
	Restart []string
}

// Compare names every setting whose value differs between cur, the config
// a broker runs with, and next, the one it just read.
func Compare(cur, next *Config) Changes {
	var ch Changes
	walkSettings("", reflect.ValueOf(*cur), reflect.ValueOf(*next), func(key string, a, b reflect.Value) {
		switch {
		case reflect.DeepEqual(a.Interface(), b.Interface()):
		case liveKeys[key]:
			ch.Live = append(ch.Live, key)
		default:
			ch.Restart = append(ch.Restart, key)
		}
	})
	return ch
}

// WithLive returns cur with the live settings of next: the config a running
// broker is in once it has reloaded next.
func WithLive(cur, next *Config) *Config {
	out := *cur
	walkSettings("", reflect.ValueOf(&out).Elem(), reflect.ValueOf(*next), func(key string, a, b reflect.Value) {
		if liveKeys[key] {
			a.Set(b)
		}
	})
	return &out
}

// walkSettings calls visit with every setting's YAML key and its value in
// a and in b, two values of the same struct type.
func walkSettings(prefix string, a, b reflect.Value, visit func(key string, a, b reflect.Value)) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		key = prefix + key
		if f.Type.Kind() == reflect.Struct {
			walkSettings(key+".", a.Field(i), b.Field(i), visit)
			continue
		}
		visit(key, a.Field(i), b.Field(i))
	}
}
