package raftactor

import (
	"fmt"

	"github.com/rs/zerolog"
)

// Logger adapts zerolog to raft.Logger so that etcd raft's own events (became
// leader, rejected vote, …) come out as structured events of the group.
type Logger struct {
	log zerolog.Logger
}

// NewLogger returns a raft.Logger writing to log.
func NewLogger(log zerolog.Logger) *Logger { return &Logger{log: log} }

func (l *Logger) Debug(v ...any)                 { l.log.Debug().Msg(fmt.Sprint(v...)) }
func (l *Logger) Debugf(format string, v ...any) { l.log.Debug().Msgf(format, v...) }

// Info and Infof go to debug level: etcd raft logs every vote and term
// change at info, which across thousands of groups is noise; the group's
// actor logs each role change itself as one event.
func (l *Logger) Info(v ...any)                 { l.log.Debug().Msg(fmt.Sprint(v...)) }
func (l *Logger) Infof(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l *Logger) Warning(v ...any)              { l.log.Warn().Msg(fmt.Sprint(v...)) }
func (l *Logger) Warningf(format string, v ...any) {
	l.log.Warn().Msgf(format, v...)
}
func (l *Logger) Error(v ...any)                 { l.log.Error().Msg(fmt.Sprint(v...)) }
func (l *Logger) Errorf(format string, v ...any) { l.log.Error().Msgf(format, v...) }

// Fatal and Panic log and then panic: raft calls them on broken invariants,
// and a panic lets the actor's supervisor see the failure instead of the
// process exiting underneath every other group.
func (l *Logger) Fatal(v ...any) { l.Panic(v...) }
func (l *Logger) Fatalf(format string, v ...any) {
	l.Panicf(format, v...)
}
func (l *Logger) Panic(v ...any) {
	s := fmt.Sprint(v...)
	l.log.Error().Msg(s)
	panic(s)
}
func (l *Logger) Panicf(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	l.log.Error().Msg(s)
	panic(s)
}
