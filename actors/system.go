package actors

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Restart policy for every actor: a child that panics is restarted, up to
// maxRestarts times within restartWindow; past that its parent stops it, which
// for the broker's top-level actors means the process is unhealthy and says so
// on /healthz.
const (
	maxRestarts   = 10
	restartWindow = 10 * time.Second
)

// Stats is what the debug endpoint shows of one live actor.
type Stats struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Mailbox   int64  `json:"mailbox"`
	Processed uint64 `json:"processed"`
	Restarts  uint64 `json:"restarts"`
}

// System is a protoactor ActorSystem plus the registry of Flotilla's actors.
type System struct {
	Actors *actor.ActorSystem
	Root   *actor.RootContext
	log    zerolog.Logger

	mu     sync.Mutex
	byName map[string]*entry

	dispatcher  *workerDispatcher
	deadLetters *prometheus.CounterVec
}

type entry struct {
	name, kind string
	posted     atomic.Int64
	received   atomic.Int64
	processed  atomic.Uint64
	restarts   atomic.Uint64
}

// NewSystem starts an actor system whose own log output goes through log.
//
// Dead letters (messages to an actor that has stopped) are counted by
// message type in flotilla_actor_dead_letters_total and logged at debug,
// instead of protoactor's info lines: most are expected, such as an answer
// reaching a Kafka connection whose client hung up.
func NewSystem(log zerolog.Logger) *System {
	// protoactor's own attributes (message, actor, pid) go under a
	// "protoactor." prefix: unprefixed, "message" repeats the line's message
	// key and "actor" is an object where Flotilla's lines have a name.
	slogger := slog.New(dropDeadLetters{zerolog.NewSlogHandler(log.With().Str("component", "protoactor").Logger())}).WithGroup("protoactor")
	as := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slogger }))
	s := &System{
		Actors: as, log: log, byName: make(map[string]*entry), dispatcher: newWorkerDispatcher(),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flotilla_actor_dead_letters_total",
			Help: "Messages sent to an actor that had stopped, by message type; answers to Kafka connections whose client hung up are expected.",
		}, []string{"message"}),
	}
	as.EventStream.Subscribe(s.deadLetter)
	s.Root = as.Root.WithGuardian(Supervisor())
	return s
}

// Collector returns the system's metrics, for the broker's registry.
func (s *System) Collector() prometheus.Collector { return s.deadLetters }

// deadLetter counts and debug-logs one dead letter; it runs on the sender's
// goroutine.
func (s *System) deadLetter(ev any) {
	dl, ok := ev.(*actor.DeadLetterEvent)
	if !ok {
		return
	}
	typ := fmt.Sprintf("%T", dl.Message)
	s.deadLetters.WithLabelValues(typ).Inc()
	if e := s.log.Debug(); e.Enabled() {
		e.Str("to", dl.PID.GetId()).Str("message_type", typ).Str("sender", dl.Sender.GetId()).
			Msg("message to a stopped actor dropped")
	}
}

// dropDeadLetters is the slog handler of protoactor's own log without its
// dead letter lines, which System.deadLetter replaces.
type dropDeadLetters struct{ slog.Handler }

func (h dropDeadLetters) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "[DeadLetter]") {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h dropDeadLetters) WithAttrs(attrs []slog.Attr) slog.Handler {
	return dropDeadLetters{h.Handler.WithAttrs(attrs)}
}

func (h dropDeadLetters) WithGroup(name string) slog.Handler {
	return dropDeadLetters{h.Handler.WithGroup(name)}
}

// Supervisor is the strategy every Flotilla actor uses for its children.
func Supervisor() actor.SupervisorStrategy {
	return actor.NewOneForOneStrategy(maxRestarts, restartWindow, actor.DefaultDecider)
}

// Props builds the props of an actor of the given kind and stable name. The
// returned props carry the supervisor, the panic-logging middleware, the
// counters and the system's dispatcher; spawn them with Spawn, or with
// SpawnNamed from a parent's context.
func (s *System) Props(kind, name string, producer actor.Producer) *actor.Props {
	e := &entry{name: name, kind: kind}
	return actor.PropsFromProducer(producer,
		actor.WithSupervisor(Supervisor()),
		actor.WithMailbox(actor.Unbounded(mailboxCounter{e})),
		actor.WithDispatcher(s.dispatcher),
		actor.WithReceiverMiddleware(s.middleware(e)),
		actor.WithOnInit(func(actor.Context) { s.register(e) }),
	)
}

// Spawn starts a top-level actor under the system's guardian.
func (s *System) Spawn(kind, name string, producer actor.Producer) (*actor.PID, error) {
	pid, err := s.Root.SpawnNamed(s.Props(kind, name, producer), name)
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", name, err)
	}
	return pid, nil
}

// List returns the live actors sorted by name.
func (s *System) List() []Stats {
	s.mu.Lock()
	out := make([]Stats, 0, len(s.byName))
	for _, e := range s.byName {
		out = append(out, Stats{
			Name:      e.name,
			Kind:      e.kind,
			Mailbox:   max(0, e.posted.Load()-e.received.Load()),
			Processed: e.processed.Load(),
			Restarts:  e.restarts.Load(),
		})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Shutdown stops every actor and the system.
func (s *System) Shutdown() {
	s.Actors.Shutdown()
	s.dispatcher.close()
}

func (s *System) register(e *entry) {
	s.mu.Lock()
	s.byName[e.name] = e
	s.mu.Unlock()
}

func (s *System) unregister(e *entry) {
	s.mu.Lock()
	if s.byName[e.name] == e {
		delete(s.byName, e.name)
	}
	s.mu.Unlock()
}

// middleware counts messages and restarts and logs a panic with its stack
// before handing it on to the supervisor, which restarts the actor.
func (s *System) middleware(e *entry) actor.ReceiverMiddleware {
	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			switch env.Message.(type) {
			case *actor.Restarting:
				e.restarts.Add(1)
			case *actor.Stopped:
				s.unregister(e)
			}
			defer func() {
				if r := recover(); r != nil {
					s.log.Error().Str("actor", e.name).Str("kind", e.kind).
						Str("message_type", fmt.Sprintf("%T", env.Message)).
						Interface("panic", r).Str("stack", string(debug.Stack())).
						Msg("actor panicked; its supervisor restarts it")
					panic(r)
				}
			}()
			next(c, env)
			e.processed.Add(1)
		}
	}
}

// mailboxCounter tracks the mailbox length of one actor as posted minus received.
type mailboxCounter struct{ e *entry }

func (m mailboxCounter) MailboxStarted()     {}
func (m mailboxCounter) MessagePosted(any)   { m.e.posted.Add(1) }
func (m mailboxCounter) MessageReceived(any) { m.e.received.Add(1) }
func (m mailboxCounter) MailboxEmpty()       {}
