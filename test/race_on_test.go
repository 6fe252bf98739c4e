//go:build race

package test

// raceBuild is true when the tests run with -race: the brokers they start
// are then built with it too, so a data race in a real process under real
// clients fails the test that provoked it.
const raceBuild = true
