package actors

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// goroutineID reads the calling goroutine's id from its stack header.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := bytes.Cut(bytes.TrimPrefix(buf, []byte("goroutine ")), []byte(" "))
	return string(id)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWorkerDispatcherReusesIdleWorker(t *testing.T) {
	d := newWorkerDispatcher()
	defer d.close()
	ran := make(chan string, 1)
	d.Schedule(func() { ran <- goroutineID() })
	first := <-ran
	waitUntil(t, "the worker to go idle", func() bool { return d.idle.Load() == 1 })
	d.Schedule(func() { ran <- goroutineID() })
	if second := <-ran; second != first {
		t.Fatalf("second activation ran on goroutine %s, the idle worker was %s", second, first)
	}
}

func TestWorkerDispatcherNeverWaitsForBusyWorker(t *testing.T) {
	d := newWorkerDispatcher()
	defer d.close()
	release := make(chan struct{})
	blocked := make(chan struct{})
	d.Schedule(func() { close(blocked); <-release })
	<-blocked
	done := make(chan struct{})
	d.Schedule(func() { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("an activation waited behind a blocked one")
	}
	close(release)
}

func TestWorkerDispatcherCloseEndsIdleWorkers(t *testing.T) {
	d := newWorkerDispatcher()
	release := make(chan struct{})
	for range 3 {
		d.Schedule(func() { <-release })
	}
	close(release)
	waitUntil(t, "three idle workers", func() bool { return d.idle.Load() == 3 })
	d.close()
	d.close() // a second close is harmless
	waitUntil(t, "idle workers to end", func() bool { return d.idle.Load() == 0 })
	done := make(chan struct{})
	d.Schedule(func() { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("work scheduled after close did not run")
	}
}
