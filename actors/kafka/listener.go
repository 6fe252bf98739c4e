package kafka

import (
	"fmt"
	"net"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/flotilla/flotilla/actors"
)

// StartListener spawns the Listener actor (kind "kafka-listener", name
// "kafka/listener") on ln, which it owns from then on, and starts accepting
// Kafka clients. The caller binds ln, so that a bind error is its own and
// port 0 can be resolved before the actor starts. Stopping the actor closes
// ln and every client connection.
func StartListener(sys *actors.System, ln net.Listener, opts Options) (*actor.PID, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("kafka: listener options: %w", err)
	}
	served, err := newVersions(opts.Handler.Versions())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("kafka: handler versions: %w", err)
	}
	cfg := &connConfig{
		handler:          opts.Handler,
		source:           opts.Metadata,
		served:           served,
		maxRequestBytes:  opts.MaxRequestBytes,
		maxInflightBytes: int64(opts.MaxInflightBytes),
		idleTimeout:      opts.IdleTimeout,
		writeTimeout:     opts.WriteTimeout,
		metrics:          opts.Metrics,
		log:              opts.Log,
		sender:           sys.Root,
		bodies:           newBodyPool(),
		writeBufs:        newWritePool(),
	}
	// A connection actor that fails is stopped, not restarted: its order
	// bookkeeping dies with it, so the only safe recovery is for the client
	// to reconnect.
	stopFailed := actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })
	stopped := make(chan struct{})
	props := sys.Props("kafka-listener", "kafka/listener", func() actor.Actor {
		return &Listener{ln: ln, sys: sys, cfg: cfg, stopped: stopped}
	}).Configure(actor.WithSupervisor(stopFailed))
	pid, err := sys.Root.SpawnNamed(props, "kafka/listener")
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("kafka: spawn kafka/listener: %w", err)
	}
	// The accept loop outlives any restart of the actor: it feeds the PID,
	// which a restart keeps, and ends when Stopping closes ln.
	go func() {
		if opts.Ready != nil {
			select {
			case <-opts.Ready:
			case <-stopped:
				return
			}
		}
		actors.AcceptLoop(ln, sys.Root, pid)
	}()
	return pid, nil
}

// Listener is the actor that owns the Kafka listening socket. Each accepted
// connection becomes a child Conn actor (kind "conn", name
// "conn/<remote addr>"), so stopping the Listener stops them all.
type Listener struct {
	ln      net.Listener
	sys     *actors.System
	cfg     *connConfig
	closed  bool
	stopped chan struct{} // closed when the actor stops, for an accept loop still waiting for Options.Ready
}

// Receive implements actor.Actor.
func (l *Listener) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actors.Accepted:
		l.accepted(ctx, msg.Conn)
	case *actors.AcceptFailed:
		l.cfg.log.Warn().Err(msg.Err).Msg("kafka listener cannot accept; retrying")
	case *actor.Started:
		l.cfg.log.Info().Str("addr", l.ln.Addr().String()).Msg("kafka listener started")
	case *actor.Stopping:
		if !l.closed {
			close(l.stopped)
		}
		l.closed = true
		l.ln.Close()
		l.cfg.log.Info().Str("addr", l.ln.Addr().String()).Msg("kafka listener stopped")
	}
}

func (l *Listener) accepted(ctx actor.Context, conn net.Conn) {
	if l.closed {
		conn.Close()
		return
	}
	name := "conn/" + conn.RemoteAddr().String()
	props := l.sys.Props("conn", name, func() actor.Actor { return newConn(conn, l.cfg) })
	if _, err := ctx.SpawnNamed(props, name); err != nil {
		// Only a name still held by a previous connection from the same
		// address and port; the client reconnects from another port.
		conn.Close()
		l.cfg.log.Warn().Err(err).Str("remote", conn.RemoteAddr().String()).Msg("cannot start kafka connection actor; closed the connection")
	}
}
