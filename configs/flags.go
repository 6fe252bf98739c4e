package configs

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// UsageError reports a malformed command line: an unknown flag, a flag
// value that does not parse, a stray argument, or -h/--help (in which case
// errors.Is(err, flag.ErrHelp) holds). The caller should print the error
// and PrintUsage.
type UsageError struct {
	Err error
}

func (e *UsageError) Error() string { return "flags: " + e.Err.Error() }

// Unwrap returns the underlying flag error.
func (e *UsageError) Unwrap() error { return e.Err }

// cmdline holds the parsed flags until the configuration file, which
// --config may name after the overrides, has been loaded.
type cmdline struct {
	configPath     string
	nodeID         uint64
	dataDir        string
	bootstrap      bool
	kafkaAddr      string
	kafkaAdvertise string
	raftAddr       string
	debugAddr      string
	peers          peersFlag
	logLevel       string
	logFormat      string
}

// flagSet defines the broker's flags. Defaults are shown as empty because
// the real default of an unset flag is whatever the file or Default says.
func (cl *cmdline) flagSet(out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("flotilla", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cl.configPath, "config", "", "read the configuration from `FILE` (YAML); without it the defaults apply")
	fs.Uint64Var(&cl.nodeID, "node-id", 0, "set node_id")
	fs.StringVar(&cl.dataDir, "data-dir", "", "set data_dir")
	fs.BoolVar(&cl.bootstrap, "bootstrap", false, "set bootstrap: true founds a new cluster, --bootstrap=false joins an existing one")
	fs.StringVar(&cl.kafkaAddr, "kafka-addr", "", "set kafka.listen to `HOST:PORT`, and kafka.advertise too if it followed kafka.listen")
	fs.StringVar(&cl.kafkaAdvertise, "kafka-advertise", "", "set kafka.advertise to `HOST:PORT`")
	fs.StringVar(&cl.raftAddr, "raft-addr", "", "set raft.listen to `HOST:PORT`")
	fs.StringVar(&cl.debugAddr, "debug-addr", "", "set debug.listen to `HOST:PORT` (empty turns the debug endpoint off)")
	fs.Var(&cl.peers, "peers", "replace peers with `ID@HOST:PORT,...` (empty makes a one-node cluster)")
	fs.StringVar(&cl.logLevel, "log-level", "", "set log.level: debug, info, warn or error")
	fs.StringVar(&cl.logFormat, "log-format", "", "set log.format: console or json")
	return fs
}

// FromArgs builds the configuration of the broker from its command-line
// arguments (without the program name): it loads the --config file, or
// starts from Default when there is none, applies the flags that were
// given, and validates the result.
//
// Every failure is an error: a *UsageError for a malformed command line,
// and otherwise errors prefixed with "config FILE: " (or "config: " without
// a file), one per invalid field, joined with errors.Join.
func FromArgs(args []string) (*Config, error) {
	var cl cmdline
	fs := cl.flagSet(io.Discard) // the caller decides where messages go
	if err := fs.Parse(args); err != nil {
		return nil, &UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return nil, &UsageError{Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}

	source := "config"
	var cfg *Config
	if cl.configPath != "" {
		source = "config " + cl.configPath
		var err error
		if cfg, err = Load(cl.configPath); err != nil {
			return nil, err
		}
	} else {
		d := Default()
		cfg = &d
	}

	// Only flags given explicitly override: an unset flag must not reset
	// a value from the file to the flag's zero default.
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cl.apply(cfg, set)

	if err := cfg.Validate(); err != nil {
		return nil, prefixErrors(source, err)
	}
	return cfg, nil
}

// apply copies the flags named in set into cfg.
func (cl *cmdline) apply(cfg *Config, set map[string]bool) {
	if set["node-id"] {
		cfg.NodeID = cl.nodeID
	}
	if set["data-dir"] {
		cfg.DataDir = cl.dataDir
	}
	if set["bootstrap"] {
		cfg.Bootstrap = cl.bootstrap
	}
	if set["kafka-addr"] {
		// An advertise address that merely mirrored the old listen address
		// would otherwise keep pointing at a port nobody listens on.
		if cfg.Kafka.Advertise == cfg.Kafka.Listen {
			cfg.Kafka.Advertise = cl.kafkaAddr
		}
		cfg.Kafka.Listen = cl.kafkaAddr
	}
	if set["kafka-advertise"] {
		cfg.Kafka.Advertise = cl.kafkaAdvertise
	}
	if set["raft-addr"] {
		cfg.Raft.Listen = cl.raftAddr
	}
	if set["debug-addr"] {
		cfg.Debug.Listen = cl.debugAddr
	}
	if set["peers"] {
		cfg.Peers = cl.peers.peers
	}
	if set["log-level"] {
		cfg.Log.Level = cl.logLevel
	}
	if set["log-format"] {
		cfg.Log.Format = cl.logFormat
	}
}

// PrintUsage writes the command-line synopsis and the flags of the broker
// to w.
func PrintUsage(w io.Writer) {
	var cl cmdline
	fs := cl.flagSet(w)
	fmt.Fprintf(w, "Usage: flotilla [--config FILE] [flags]\n\n")
	fmt.Fprintf(w, "Flags override the file, which overrides the defaults.\n\n")
	fs.PrintDefaults()
}

// peersFlag is the flag.Value of --peers.
type peersFlag struct {
	peers []Peer
}

func (f *peersFlag) String() string {
	s := make([]string, len(f.peers))
	for i, p := range f.peers {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (f *peersFlag) Set(s string) error {
	peers, err := ParsePeers(s)
	if err != nil {
		// The flag package prints the value's error inside its own one-line
		// message, so keep every problem on that line.
		return errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	f.peers = peers
	return nil
}

// ParsePeers parses a peer list in the form of --peers:
// "1@host:port,2@host:port,3@host:port". It checks the entries as Validate
// does (ids > 0 and unique, addresses host:port with a port in 1-65535 and
// unique); errors name the entry, e.g. "peers[1].id: duplicate id 2". An
// empty string yields no peers.
func ParsePeers(s string) ([]Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var p problems
	items := strings.Split(s, ",")
	peers := make([]Peer, 0, len(items))
	for i, item := range items {
		item = strings.TrimSpace(item)
		idText, addr, ok := strings.Cut(item, "@")
		if !ok {
			p.add(fmt.Sprintf("peers[%d]", i), "%q: want ID@HOST:PORT", item)
			continue
		}
		id, err := strconv.ParseUint(idText, 10, 64)
		if err != nil {
			p.add(fmt.Sprintf("peers[%d].id", i), "%q is not a node id", idText)
			continue
		}
		peers = append(peers, Peer{ID: id, Addr: addr})
	}
	// The semantic checks only make sense, and only keep their indices
	// right, once every entry has parsed.
	if len(p) == 0 {
		p = checkPeers(peers)
	}
	if len(p) > 0 {
		return nil, errors.Join(p...)
	}
	return peers, nil
}
