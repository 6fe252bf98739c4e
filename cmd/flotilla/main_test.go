package main

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestStopExitCodes: a clean stop exits 0 and a failed one 1; a second
// SIGTERM or SIGINT while the stop runs exits at once with 128 plus its
// number, and a SIGHUP meanwhile changes nothing.
func TestStopExitCodes(t *testing.T) {
	tests := []struct {
		name    string
		stopErr error       // what the stop returns, once released
		release bool        // the stop finishes by itself
		signals []os.Signal // sent while it runs
		want    int
	}{
		{"clean", nil, true, nil, 0},
		{"failed", errors.New("close wal: input/output error"), true, nil, 1},
		{"second SIGTERM", nil, false, []os.Signal{syscall.SIGTERM}, 143},
		{"second SIGINT after a SIGHUP", nil, false, []os.Signal{syscall.SIGHUP, syscall.SIGINT}, 130},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running := make(chan struct{})
			finish := make(chan struct{})
			defer close(finish)
			stopBroker := func() error {
				close(running)
				if !tt.release {
					<-finish // a wedged stop
				}
				return tt.stopErr
			}
			sigs := make(chan os.Signal, len(tt.signals))
			code := make(chan int, 1)
			go func() { code <- stop(stopBroker, sigs, zerolog.Nop()) }()
			<-running
			for _, s := range tt.signals {
				sigs <- s
			}
			select {
			case got := <-code:
				if got != tt.want {
					t.Fatalf("exit code %d, want %d", got, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("stop did not return")
			}
		})
	}
}
