package kafka

import (
	"errors"
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Handler serves the requests this package does not serve itself: the data
// path (Produce, Fetch, ListOffsets...), groups, admin requests.
type Handler interface {
	// Versions lists the API keys the handler serves and the version range of
	// each. They are advertised in ApiVersions exactly as given, and a request
	// outside them closes its connection, so nothing is advertised that is
	// not served. It is called once, when the listener starts.
	Versions() []ApiRange
	// NewConn returns the state the handler keeps for one connection. It
	// lives inside that connection's actor and is used only from there.
	NewConn() ConnHandler
}

// ConnHandler is a Handler's per-connection state.
type ConnHandler interface {
	// Serve takes one request, inside the connection actor that read it. It
	// must not wait on anything: it answers cheap requests at once, with
	// ctx.Send(r.ReplyTo, r.Reply(resp)), and forwards the rest to the actors
	// that own the data, which answer r.ReplyTo when done (or answer the
	// connection actor with messages of their own, which reach Receive).
	// Work a request needs that its owners must not spend their time on
	// (a Produce's record count) it does itself: that holds only this
	// connection, as a Kafka request holds its handler thread.
	// Every request must be answered exactly once, or its connection stops
	// reading when its in-flight budget runs out.
	Serve(ctx actor.Context, r *Request)
	// Receive takes any message the connection actor does not know itself:
	// the answers of the actors Serve forwarded requests to. Timeouts are
	// theirs to keep where they can (a partition answers a produce or a
	// long poll by its deadline); a handler that must keep one itself
	// subscribes its connection to the broker's ticker while it waits, and
	// implements ConnCloser to unsubscribe.
	Receive(ctx actor.Context, msg any)
}

// ConnCloser is implemented by a ConnHandler that holds something outside
// its connection (a clock subscription) to release when the connection
// stops. Close runs once, inside the connection actor, after which the
// handler gets no more calls.
type ConnCloser interface {
	Close()
}

// ApiRange is an API key and the versions of it that are served.
type ApiRange struct {
	Key      int16
	Min, Max int16
}

// builtinRanges are the APIs this package serves itself. ApiVersions stops at
// v4: v5 (KIP-1242) asks the broker to check the client's idea of its node
// and cluster, which needs the node id here.
func builtinRanges() []ApiRange {
	return []ApiRange{
		{Key: keyMetadata, Min: 0, Max: 13},
		{Key: keyApiVersions, Min: 0, Max: 4},
		{Key: keyDescribeCluster, Min: 0, Max: 2},
	}
}

// versions is the immutable table of what a listener serves, shared by all
// its connections.
type versions struct {
	byKey []ApiRange // indexed by key; Max < Min marks a key not served
	// advertised is the ApiVersions answer, sorted by key. Responses share it
	// and never modify it.
	advertised []kmsg.ApiVersionsResponseApiKey
}

// newVersions merges the built-in APIs with the handler's and checks that the
// handler's can be decoded and do not claim a built-in API.
func newVersions(handled []ApiRange) (*versions, error) {
	builtin := builtinRanges()
	all := slices.Concat(builtin, handled)
	var errs []error
	var maxKey int16
	seen := make(map[int16]bool, len(all))
	for i, r := range all {
		req := kmsg.RequestForKey(r.Key)
		claimsBuiltin := i >= len(builtin) && slices.ContainsFunc(builtin, func(b ApiRange) bool { return b.Key == r.Key })
		switch {
		case req == nil:
			errs = append(errs, fmt.Errorf("api key %d is not a Kafka API this build can decode", r.Key))
			continue
		case claimsBuiltin:
			errs = append(errs, fmt.Errorf("api %s (key %d) is served by the kafka package itself", kmsg.NameForKey(r.Key), r.Key))
			continue
		case seen[r.Key]:
			errs = append(errs, fmt.Errorf("api %s (key %d) is listed twice", kmsg.NameForKey(r.Key), r.Key))
			continue
		case r.Min < 0 || r.Min > r.Max:
			errs = append(errs, fmt.Errorf("api %s (key %d): bad version range %d..%d", kmsg.NameForKey(r.Key), r.Key, r.Min, r.Max))
			continue
		case r.Max > req.MaxVersion():
			errs = append(errs, fmt.Errorf("api %s (key %d): version %d is above %d, the highest this build can decode",
				kmsg.NameForKey(r.Key), r.Key, r.Max, req.MaxVersion()))
			continue
		}
		seen[r.Key] = true
		maxKey = max(maxKey, r.Key)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	v := &versions{byKey: make([]ApiRange, maxKey+1)}
	for i := range v.byKey {
		v.byKey[i] = ApiRange{Key: int16(i), Min: 0, Max: -1}
	}
	for _, r := range all {
		v.byKey[r.Key] = r
	}
	for _, r := range v.byKey {
		if r.Min <= r.Max {
			v.advertised = append(v.advertised, kmsg.ApiVersionsResponseApiKey{ApiKey: r.Key, MinVersion: r.Min, MaxVersion: r.Max})
		}
	}
	return v, nil
}

// lookup returns the served range of key.
func (v *versions) lookup(key int16) (ApiRange, bool) {
	if key < 0 || int(key) >= len(v.byKey) {
		return ApiRange{}, false
	}
	r := v.byKey[key]
	return r, r.Min <= r.Max
}
