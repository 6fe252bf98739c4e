package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flotilla/flotilla/configs"
)

func TestLogTimesAreToTheMillisecond(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(newLogOutput(&buf, configs.LogConfig{Level: "info", Format: "json"}))
	before := time.Now().Truncate(time.Millisecond)
	log.Info().Msg("one")
	after := time.Now()
	var ev struct{ Time string }
	if err := json.Unmarshal(buf.Bytes(), &ev); err != nil {
		t.Fatalf("decode %q: %v", buf.String(), err)
	}
	at, err := time.Parse(timeFormat, ev.Time)
	if err != nil {
		t.Fatalf("time %q is not in %q: %v", ev.Time, timeFormat, err)
	}
	if at.Before(before) || at.After(after) {
		t.Errorf("time %s is not between %s and %s", ev.Time, before.Format(timeFormat), after.Format(timeFormat))
	}
}

func TestConsoleLogsToAFileHaveNoColours(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(newLogOutput(&buf, configs.LogConfig{Level: "info", Format: "console"}))
	log.Info().Str("key", "value").Msg("one")
	out := buf.String()
	if strings.Contains(out, "\x1b[") {
		t.Errorf("console log written to a non-terminal has ANSI escapes: %q", out)
	}
	if !strings.Contains(out, "key=value") || !strings.Contains(out, "one") {
		t.Errorf("console log %q lacks the event", out)
	}
	// The console keeps the event's milliseconds.
	if !regexp.MustCompile(`T\d\d:\d\d:\d\d\.\d{3}`).MatchString(out) {
		t.Errorf("console log %q lacks the time to the millisecond", out)
	}
}
