// Package kafka is Flotilla's Kafka front door: the listener that accepts
// Kafka clients, one actor per client connection, the wire framing, and the
// requests that need no data: ApiVersions, Metadata and DescribeCluster.
// Everything else is handed to a Handler that the broker supplies.
//
// # Actors
//
// Listener (kind "kafka-listener", name "kafka/listener") owns the listening
// socket, bound by the caller. An accept goroutine feeds it actors.Accepted; for
// each connection it spawns a child Conn. Stopping the Listener closes the
// socket and stops every Conn. A Conn that fails is stopped, not restarted,
// which closes its connection: its order bookkeeping cannot be rebuilt, and
// clients reconnect.
//
// Conn (kind "conn", name "conn/<remote addr>") owns one client connection
// and two goroutines. The reader frames requests (int32 size, then body),
// decodes the header and the body with kmsg, and sends each as requestRead;
// when it stops it sends readerDone. The writer writes the batches of
// responses the Conn hands it and reports each as batchWritten. The Conn
// answers ApiVersions (KIP-511 included), Metadata and DescribeCluster
// itself, from the MetadataSource, and passes every other request to
// Handler.Serve as a *Request. Whoever finishes a request sends the Conn a
// *Response carrying its Seq, from any actor.
//
// # Invariants
//
//   - Responses leave in request order. Each request takes the next sequence
//     number; an answer that arrives early waits in the Conn until every
//     earlier request is answered. An acks=0 Produce takes a place in the
//     order but nothing is written for it.
//   - No actor blocks. The Conn hands the writer a batch only when the
//     previous one has been reported, so its channel (capacity one) is always
//     empty when sent to, and everything that becomes ready meanwhile goes
//     out together in the next write.
//   - A connection holds at most about MaxInflightBytes of requests: the
//     reader stops reading while the bytes read and not yet answered on the
//     wire are over it, and resumes as responses are written.
//   - Bad input never panics and never allocates beyond what arrived: a size
//     below zero or above MaxRequestBytes, an API or version we do not
//     advertise (ApiVersions aside), or a body that does not decode closes
//     the connection and nothing else. What ApiVersions advertises is exactly
//     what is served: the built-in APIs plus Handler.Versions().
//   - Response headers are v1 (with tagged fields) for flexible versions,
//     except ApiVersions, whose header is always v0.
//
// Time inside the actors comes only from messages; the idle timeout and the
// write timeout are socket deadlines in the goroutines that do the I/O.
package kafka
