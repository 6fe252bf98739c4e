package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// rssSampler watches the resident set of one process: it polls VmRSS in
// /proc/<pid>/status and keeps the largest value seen, and at Stop it also
// reads VmHWM, the kernel's own high-water mark, which catches peaks between
// two polls.
type rssSampler struct {
	pid  int
	peak atomic.Int64 // bytes
	stop chan struct{}
	done chan struct{}
}

// sampleRSS starts polling pid every interval until Stop.
func sampleRSS(pid int, interval time.Duration) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.poll()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) poll() {
	if st, err := readProcStatus(s.pid); err == nil && st.rss > s.peak.Load() {
		s.peak.Store(st.rss)
	}
}

// Stop ends the polling and returns the peak resident set in bytes: the
// larger of the polled maximum and VmHWM. The process must still be alive
// for VmHWM to be read.
func (s *rssSampler) Stop() int64 {
	close(s.stop)
	<-s.done
	peak := s.peak.Load()
	if st, err := readProcStatus(s.pid); err == nil {
		peak = max(peak, st.hwm, st.rss)
	}
	return peak
}

// procStatus is the part of /proc/<pid>/status the benchmark reads.
type procStatus struct {
	rss, hwm int64 // bytes
}

// readProcStatus reads VmRSS and VmHWM of pid.
func readProcStatus(pid int) (procStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStatus{}, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	var st procStatus
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 2 {
			continue
		}
		var dst *int64
		switch string(fields[0]) {
		case "VmRSS:":
			dst = &st.rss
		case "VmHWM:":
			dst = &st.hwm
		default:
			continue
		}
		kb, err := strconv.ParseInt(string(fields[1]), 10, 64)
		if err != nil {
			return procStatus{}, fmt.Errorf("parse %s of pid %d: %w", fields[0], pid, err)
		}
		*dst = kb << 10
	}
	return st, nil
}

// mib formats bytes in MiB.
func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
