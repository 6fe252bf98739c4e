package configs

import (
	"reflect"
	"strings"
)

// liveKeys are the settings a running broker applies when it reloads its
// config (SIGHUP); every other change waits for a restart.
var liveKeys = map[string]bool{
	"log.level": true, "log.format": true, "peers": true,
	"kafka.log_retention_ms": true, "kafka.log_retention_bytes": true, "kafka.log_segment_bytes": true,
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
	compareValues("", reflect.ValueOf(*cur), reflect.ValueOf(*next), &ch)
	return ch
}

func compareValues(prefix string, a, b reflect.Value, ch *Changes) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		key = prefix + key
		av, bv := a.Field(i), b.Field(i)
		if f.Type.Kind() == reflect.Struct {
			compareValues(key+".", av, bv, ch)
			continue
		}
		if reflect.DeepEqual(av.Interface(), bv.Interface()) {
			continue
		}
		if liveKeys[key] {
			ch.Live = append(ch.Live, key)
		} else {
			ch.Restart = append(ch.Restart, key)
		}
	}
}
