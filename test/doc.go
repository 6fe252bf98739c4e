// Package test holds Flotilla's end-to-end tests: they build bin/flotilla,
// start real broker processes on 127.0.0.1 with temporary data directories,
// drive them through their ports, and kill them with SIGKILL. The Kafka
// port is driven by real clients: franz-go (kgo, kadm, raw kmsg requests)
// and kcat (librdkafka), which the kcat tests need on the PATH. They run
// in `make test`; `go test -short` skips them.
package test
