package test

// The end-to-end tests and the benchmarks use franz-go's admin client and
// its in-memory fake cluster (the benchmark's yardstick); importing them here
// keeps them in go.mod for the files that use them.
import (
	_ "github.com/twmb/franz-go/pkg/kadm"
	_ "github.com/twmb/franz-go/pkg/kfake"
)
