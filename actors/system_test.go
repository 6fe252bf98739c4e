package actors

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type boom struct{}
type ping struct{ reply chan int }

// fragile panics on boom and counts the pings it has seen in this incarnation.
type fragile struct{ pings int }

func (f *fragile) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *boom:
		panic("boom")
	case *ping:
		f.pings++
		m.reply <- f.pings
	}
}

func TestPanicIsLoggedAndActorRestarted(t *testing.T) {
	var logs syncBuffer
	sys := NewSystem(zerolog.New(&logs))
	defer sys.Shutdown()
	pid, err := sys.Spawn("test", "test/fragile", func() actor.Actor { return &fragile{} })
	if err != nil {
		t.Fatal(err)
	}
	reply := make(chan int, 1)
	sys.Root.Send(pid, &ping{reply})
	if n := <-reply; n != 1 {
		t.Fatalf("first ping count %d", n)
	}
	sys.Root.Send(pid, &boom{})
	sys.Root.Send(pid, &ping{reply})
	select {
	case n := <-reply:
		if n != 1 {
			t.Fatalf("after restart ping count %d, want 1 (a fresh incarnation)", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("actor did not come back after its panic")
	}
	var st Stats
	for _, s := range sys.List() {
		if s.Name == "test/fragile" {
			st = s
		}
	}
	if st.Restarts != 1 || st.Kind != "test" || st.Processed < 2 {
		t.Fatalf("stats %+v, want 1 restart", st)
	}
	out := logs.String()
	if !strings.Contains(out, `"panic":"boom"`) || !strings.Contains(out, "system_test.go") || !strings.Contains(out, `"actor":"test/fragile"`) {
		t.Fatalf("panic not logged with actor name and stack:\n%s", out)
	}
	// protoactor's own lines (its supervision line names the actor by
	// PID object) must not reuse Flotilla's keys with other types.
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if a, ok := fields["actor"]; ok && !strings.HasPrefix(string(a), `"`) {
			t.Errorf("actor is not a name: %s", line)
		}
	}
}

func TestStoppedActorLeavesList(t *testing.T) {
	sys := NewSystem(zerolog.Nop())
	defer sys.Shutdown()
	pid, err := sys.Spawn("test", "test/short-lived", func() actor.Actor { return &fragile{} })
	if err != nil {
		t.Fatal(err)
	}
	if len(sys.List()) != 1 {
		t.Fatalf("list %+v", sys.List())
	}
	if err := sys.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(sys.List()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stopped actor still listed: %+v", sys.List())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDeadLettersAreCountedNotLoggedAtInfo: a message to a stopped actor
// (an answer to a Kafka connection whose client hung up) is counted by
// type and logged at debug only, not as protoactor's info line.
func TestDeadLettersAreCountedNotLoggedAtInfo(t *testing.T) {
	tests := []struct {
		level     zerolog.Level
		wantDebug bool
	}{
		{zerolog.InfoLevel, false},
		{zerolog.DebugLevel, true},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			var logs syncBuffer
			sys := NewSystem(zerolog.New(&logs).Level(tt.level))
			defer sys.Shutdown()
			pid, err := sys.Spawn("test", "test/gone", func() actor.Actor { return &fragile{} })
			if err != nil {
				t.Fatal(err)
			}
			if err := sys.Root.StopFuture(pid).Wait(); err != nil {
				t.Fatal(err)
			}
			sys.Root.Send(pid, &ping{})
			c := sys.deadLetters.WithLabelValues("*actors.ping")
			deadline := time.Now().Add(5 * time.Second)
			for count(t, c) != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("dead letters of *actors.ping: %v, want 1", count(t, c))
				}
				time.Sleep(time.Millisecond)
			}
			out := logs.String()
			if strings.Contains(out, "DeadLetter") {
				t.Errorf("protoactor's dead letter line logged:\n%s", out)
			}
			if got := strings.Contains(out, `"message_type":"*actors.ping"`); got != tt.wantDebug {
				t.Errorf("debug line logged: %v, want %v:\n%s", got, tt.wantDebug, out)
			}
		})
	}
}

func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
