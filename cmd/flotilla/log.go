package main

import (
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/flotilla/flotilla/configs"
)

// logOutput is the process's log writer. It filters events by level and
// writes them as JSON or for a console, and both can change while the
// broker runs (a config reload): every logger of the broker writes
// through it, so none needs rebuilding.
type logOutput struct {
	json    io.Writer
	console zerolog.ConsoleWriter
	level   atomic.Int32 // zerolog.Level
	pretty  atomic.Bool
}

// timeFormat is the events' time, to the millisecond: zerolog's own
// Timestamp keeps whole seconds (its process-wide TimeFieldFormat), too
// coarse to order the events of a failover, which takes well under one.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func newLogOutput(w io.Writer, c configs.LogConfig) *logOutput {
	o := &logOutput{json: w, console: zerolog.ConsoleWriter{Out: w, TimeFormat: timeFormat, NoColor: !isTerminal(w)}}
	o.set(c)
	return o
}

// isTerminal reports whether w is a terminal: console logs are coloured
// only there, not in a file that grep and less will read.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// set applies a log config (Validate has accepted it).
func (o *logOutput) set(c configs.LogConfig) {
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	o.level.Store(int32(level))
	o.pretty.Store(c.Format == "console")
}

// Write implements io.Writer for events without a level.
func (o *logOutput) Write(p []byte) (int, error) { return o.WriteLevel(zerolog.NoLevel, p) }

// WriteLevel implements zerolog.LevelWriter.
func (o *logOutput) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if l != zerolog.NoLevel && l < zerolog.Level(o.level.Load()) {
		return len(p), nil
	}
	if o.pretty.Load() {
		return o.console.Write(p)
	}
	return o.json.Write(p)
}

// newLogger returns the process logger writing through o. It builds events
// down to debug, the lowest level a config may ask for, and o drops the
// ones below the configured level.
func newLogger(o *logOutput) zerolog.Logger {
	return zerolog.New(o).Level(zerolog.DebugLevel).Hook(timestamp{})
}

// timestamp adds each event's time in timeFormat.
type timestamp struct{}

// Run implements zerolog.Hook.
func (timestamp) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().Format(timeFormat))
}
