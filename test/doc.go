// Package test holds Flotilla's end-to-end tests: they build bin/flotilla,
// start real broker processes on 127.0.0.1 with temporary data directories,
// drive them through their ports, and kill them with SIGKILL. They run in
// `make test`; `go test -short` skips them.
package test
