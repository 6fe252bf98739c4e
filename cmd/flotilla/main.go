// Command flotilla runs one Flotilla broker.
//
//	flotilla --config configs/single.yaml [flags]
//	flotilla version
//
// A config error stops the process before it binds any port, with exit code
// 2 and the offending field named; any other startup failure exits 1.
// SIGTERM and SIGINT shut the broker down cleanly (WAL flushed) with exit 0.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors/broker"
	"github.com/flotilla/flotilla/configs"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "version" {
		fmt.Fprintf(stdout, "flotilla %s\n", version)
		return 0
	}
	cfg, err := configs.FromArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		configs.PrintUsage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "flotilla: %v\n", err)
		var ue *configs.UsageError
		if errors.As(err, &ue) {
			configs.PrintUsage(stderr)
		}
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	log.Info().Str("version", version).Uint64("node", cfg.NodeID).Str("data_dir", cfg.DataDir).Msg("starting")

	b, err := broker.Start(broker.Options{Config: cfg, Log: log})
	if err != nil {
		log.Error().Err(err).Msg("startup failed")
		return 1
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			log.Warn().Msg("SIGHUP: live config reload is not supported yet; restart the broker to apply config changes")
			continue
		}
		log.Info().Str("signal", sig.String()).Msg("shutting down")
		break
	}
	b.Stop()
	return 0
}

func newLogger(c configs.LogConfig, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		level = zerolog.InfoLevel // Validate already refused unknown levels
	}
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339Nano}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
