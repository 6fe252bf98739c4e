package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profiler fetches CPU profiles of a broker from its debug endpoint
// (/debug/pprof/profile), one per load phase, into dir. A nil profiler does
// nothing.
type profiler struct {
	debug   string // host:port of the debug endpoint
	dir     string
	seconds int
	wg      sync.WaitGroup
	mu      sync.Mutex
	busy    bool // a profile is being taken: the runtime allows one at a time
	err     error
}

// newProfiler returns a profiler for the broker whose debug endpoint is at
// debug, or nil when dir or debug is empty.
func newProfiler(debug, dir string, seconds int) *profiler {
	if dir == "" || debug == "" {
		return nil
	}
	return &profiler{debug: debug, dir: dir, seconds: seconds}
}

// start begins a profile of the next p.seconds, saved as
// <dir>/<name>-<phase>.pprof, unless the profile of an earlier phase is
// still being taken (the phase was shorter than p.seconds), in which case
// this phase gets none.
func (p *profiler) start(name, phase string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy {
		fmt.Fprintf(os.Stderr, "flotilla-bench: no %s profile of %s: the previous one is still running\n", phase, name)
		return
	}
	p.busy = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := p.fetch(filepath.Join(p.dir, fmt.Sprintf("%s-%s.pprof", name, phase)))
		p.mu.Lock()
		defer p.mu.Unlock()
		p.busy = false
		p.err = errors.Join(p.err, err)
	}()
}

func (p *profiler) fetch(path string) error {
	client := &http.Client{Timeout: time.Duration(p.seconds)*time.Second + 30*time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.debug, p.seconds))
	if err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", path, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	return nil
}

// wait waits for the profiles started and returns their errors.
func (p *profiler) wait() error {
	if p == nil {
		return nil
	}
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}
