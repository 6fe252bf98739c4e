package kafka

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Defaults for Options.
const (
	// DefaultMaxRequestBytes is Kafka's socket.request.max.bytes.
	DefaultMaxRequestBytes = 100 << 20
	// DefaultMaxInflightBytes bounds the requests a connection holds before
	// it stops reading.
	DefaultMaxInflightBytes = 64 << 20
	// DefaultIdleTimeout is Kafka's connections.max.idle.ms.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultWriteTimeout bounds how long a client may go without reading
	// a chunk of its responses; one that stops reading for longer loses
	// its connection.
	DefaultWriteTimeout = 30 * time.Second
)

// Options configure the Kafka listener and its connections.
type Options struct {
	// Handler serves every request but ApiVersions, Metadata and
	// DescribeCluster. Required.
	Handler Handler
	// Metadata answers Metadata and DescribeCluster. Required.
	Metadata MetadataSource
	// MaxRequestBytes is the largest request accepted; a larger size prefix
	// closes the connection before anything is allocated.
	MaxRequestBytes int
	// MaxInflightBytes bounds the bytes of a connection's requests that are
	// read but not yet answered on the wire; past it the connection stops
	// reading until responses are written.
	MaxInflightBytes int
	// IdleTimeout closes a connection that sends nothing for this long, and
	// bounds how long one request may take to arrive.
	IdleTimeout time.Duration
	// WriteTimeout bounds how long writing each chunk (writeChunk) of a
	// batch of responses may take: a lack of progress, not the transfer
	// of a large answer to a client reading slowly but steadily.
	WriteTimeout time.Duration
	// Ready, when set, holds back accepting clients until it is closed,
	// as a Kafka broker enables request processing only once it has
	// caught up with the metadata log: a connection waits in the kernel's
	// backlog meanwhile, and its first request is answered from a state
	// the broker may act on, not refused.
	Ready   <-chan struct{}
	Metrics *Metrics // may be nil
	Log     zerolog.Logger
}

func (o Options) withDefaults() Options {
	setDefault(&o.MaxRequestBytes, DefaultMaxRequestBytes)
	setDefault(&o.MaxInflightBytes, DefaultMaxInflightBytes)
	setDefault(&o.IdleTimeout, DefaultIdleTimeout)
	setDefault(&o.WriteTimeout, DefaultWriteTimeout)
	return o
}

func (o Options) validate() error {
	var errs []error
	if o.Handler == nil {
		errs = append(errs, errors.New("handler is nil"))
	}
	if o.Metadata == nil {
		errs = append(errs, errors.New("metadata source is nil"))
	}
	if o.MaxRequestBytes < 8 {
		errs = append(errs, fmt.Errorf("MaxRequestBytes %d cannot hold a request header", o.MaxRequestBytes))
	}
	return errors.Join(errs...)
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
