// Command flotilla runs one Flotilla broker.
//
//	flotilla --config configs/single.yaml [flags]
//	flotilla version
//
// A config error stops the process before it binds any port, with exit code
// 2 and the offending field named; any other startup failure exits 1.
// SIGTERM and SIGINT shut the broker down cleanly: it hands the leadership
// of the raft groups it leads to other brokers, closes its listeners and
// connections, stops its raft groups and flushes its WAL, and exits 0, or 1
// if the stop failed (the WAL could not be flushed and closed, an actor did
// not stop in time). A second SIGTERM or SIGINT during the stop exits at
// once, without finishing it, with 128 plus the signal's number (143, 130):
// the code a shell gives a process that signal ended, which it then is.
// SIGHUP reloads the config: log settings, peers, topic auto-creation and
// the retention and segment defaults apply at once (a peer dropped from the list is drained
// and removed from the cluster; a missing list while other brokers are
// members, or one dropping a majority of the voters, is refused), every
// other change is reported as needing a restart. A broker the cluster
// removed stops with exit code 3, and refuses to start again with its data
// dir. A broker that a peer refuses before it serves, because another live
// process runs with its node id, exits with code 1 at once, naming it. A broker whose data dir holds no data while a peer knows its node id
// as a broker of the cluster (a disk replaced, a data mount missing) exits
// with code 1 at once, saying so (3 if the id was removed).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

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
	logs := newLogOutput(stderr, cfg.Log)
	log := newLogger(logs)
	log.Info().Str("version", version).Uint64("node", cfg.NodeID).Str("data_dir", cfg.DataDir).Msg("starting")

	// Signals are caught before the broker starts, which may take a while
	// (WAL recovery): a SIGHUP or SIGTERM then waits for the start to
	// finish instead of killing the process half way. A broker with a new
	// data dir may wait for its peers as long as they are away; a SIGTERM
	// ends that wait.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	startCtx, stopStart := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	b, err := broker.Start(startCtx, broker.Options{Config: cfg, Log: log})
	stopStart()
	if err != nil {
		if startCtx.Err() != nil && errors.Is(err, context.Canceled) {
			log.Info().Msg("shutting down before the broker started")
			return 0
		}
		log.Error().Err(err).Msg("startup failed")
		var lost *broker.DataLostError
		if errors.As(err, &lost) {
			fmt.Fprintf(stderr, "flotilla: %v\n", err)
			if lost.Removed {
				return 3 // as when the cluster removes a running broker
			}
		}
		if _, ok := errors.AsType[*broker.DuplicateIDError](err); ok {
			fmt.Fprintf(stderr, "flotilla: %v\n", err)
		}
		return 1
	}
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				cfg = reload(args, cfg, b, logs, log)
				continue
			}
			log.Info().Str("signal", sig.String()).Msg("shutting down")
			return stop(b.Stop, sigs, log)
		case err := <-b.Duplicate():
			// Exit code 1 whatever the stop does: this process never
			// served, and must not start again with this node id.
			log.Error().Err(err).Msg("startup failed")
			b.Abort()
			fmt.Fprintf(stderr, "flotilla: %v\n", err)
			return 1
		case reason := <-b.Removed():
			// Exit code 3 whatever the stop does: it is what tells
			// whoever restarts brokers not to restart this one.
			stop(b.Stop, sigs, log)
			fmt.Fprintf(stderr, "flotilla: %s; this broker has stopped and will not start again with data_dir %s\n", reason, cfg.DataDir)
			return 3
		}
	}
}

// stop runs the broker's clean stop and returns the exit code: 0 when it
// stopped cleanly, 1 when the stop failed (the broker logged why), and
// 128+n at once when signal n, a second SIGTERM or SIGINT, arrives first:
// whoever sends it wants the process gone, and a stop can take long (a
// hand-over of leaderships, an actor or an fsync that does not answer).
func stop(stopBroker func() error, sigs <-chan os.Signal, log zerolog.Logger) int {
	done := make(chan error, 1)
	go func() { done <- stopBroker() }()
	for {
		select {
		case err := <-done:
			if err != nil {
				return 1
			}
			return 0
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Warn().Msg("SIGHUP while stopping: config not reloaded")
				continue
			}
			code := 1
			if n, ok := sig.(syscall.Signal); ok {
				code = 128 + int(n)
			}
			log.Warn().Str("signal", sig.String()).Int("exit_code", code).Msg("second signal while stopping: exiting at once, the stop unfinished")
			return code
		}
	}
}

// reload reads the config again (file and flags, as at startup) and
// applies what a running broker can apply: the log settings, the peers,
// topic auto-creation and the topic config defaults. Every other change is reported as waiting for
// a restart. A config that does not validate is refused and the broker
// keeps running as it was, and so is one whose peers the broker refuses
// (missing while other brokers are members, or dropping a majority of the
// voters).
// It returns the config now in effect.
func reload(args []string, cur *configs.Config, b *broker.Broker, logs *logOutput, log zerolog.Logger) *configs.Config {
	next, err := configs.FromArgs(args)
	if err != nil {
		log.Error().Err(err).Msg("SIGHUP: config not reloaded, the broker keeps its current settings")
		return cur
	}
	if err := b.Reload(next); err != nil {
		log.Error().Err(err).Msg("SIGHUP: config not reloaded, the broker keeps its current settings")
		return cur
	}
	ch := configs.Compare(cur, next)
	log.Info().Strs("applied", ch.Live).Strs("need_restart", ch.Restart).Msg("SIGHUP: config reloaded")
	if len(ch.Restart) > 0 {
		log.Warn().Strs("keys", ch.Restart).Msg("SIGHUP: these settings changed but take effect only after a restart")
	}
	logs.set(next.Log)
	return configs.WithLive(cur, next)
}
