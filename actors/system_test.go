package actors

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
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
