package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// kthreadd is the parent of every kernel thread.
const kthreadd = 2

// cpuSample is a reading, in clock ticks, of the machine's busy CPU time,
// of its interrupt and kernel-thread time, of the brokers' and of this
// process's, at one instant.
type cpuSample struct {
	at             time.Time
	system, kernel int64
	broker, us     int64
}

// cpuUse is how many cores each party kept busy between two samples.
// Kernel is interrupts, softirqs (loopback TCP among them) and kernel
// threads (page-cache writeback among them): work the load causes, outside
// any process. Other is every other process: on a quiet machine it is near
// 0, and a large value means the run competed with something else for the
// CPU.
type cpuUse struct {
	broker, loadgen, kernel, other float64
}

// sampleCPU reads the CPU times of the machine, of the broker processes
// pids (added up: the brokers of one cluster) and of this process. When the
// broker runs in this process, pids is ours alone and the load generator's
// share is counted as the broker's.
func sampleCPU(pids ...int) (cpuSample, error) {
	s := cpuSample{at: time.Now()}
	var irq, kthreads int64
	var err error
	if s.system, irq, err = systemBusy(); err != nil {
		return s, err
	}
	if kthreads, err = kernelThreadTicks(); err != nil {
		return s, err
	}
	s.kernel = irq + kthreads
	for _, pid := range pids {
		ticks, _, err := processTicks(pid)
		if err != nil {
			return s, err
		}
		s.broker += ticks
	}
	if len(pids) != 1 || pids[0] != os.Getpid() {
		if s.us, _, err = processTicks(os.Getpid()); err != nil {
			return s, err
		}
	}
	return s, nil
}

// since returns the cores used from a to s.
func (s cpuSample) since(a cpuSample) cpuUse {
	wall := s.at.Sub(a.at).Seconds() * clockTicks
	if wall <= 0 {
		return cpuUse{}
	}
	b, u, k := float64(s.broker-a.broker), float64(s.us-a.us), float64(s.kernel-a.kernel)
	all := float64(s.system - a.system)
	return cpuUse{broker: b / wall, loadgen: u / wall, kernel: k / wall, other: max(0, all-b-u-k) / wall}
}

// systemBusy reads the first line of /proc/stat: the machine's non-idle
// CPU time (user, nice, system, irq, softirq and steal; idle and iowait
// are left out, guest time is already in user), and of that the irq and
// softirq time, which no process is charged with.
func systemBusy() (busy, irq int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat field %d: %w", i, err)
		}
		busy += v
		if i == 6 || i == 7 {
			irq += v
		}
	}
	return busy, irq, nil
}

// kernelThreadTicks is the CPU time of the live kernel threads: kthreadd
// and its children.
func kernelThreadTicks() (int64, error) {
	paths, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, fmt.Errorf("list /proc: %w", err)
	}
	var sum int64
	for _, p := range paths {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		ticks, ppid, err := processTicks(pid)
		if err != nil {
			continue // exited since the listing
		}
		if pid == kthreadd || ppid == kthreadd {
			sum += ticks
		}
	}
	return sum, nil
}

// processTicks returns the user plus system CPU time of pid's threads and
// pid's parent, from fields 14, 15 and 4 of /proc/<pid>/stat.
func processTicks(pid int) (ticks int64, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after its closing parenthesis, which is field 3.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("stat of pid %d: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("stat of pid %d: %d fields", pid, len(f)+2)
	}
	pp, err0 := strconv.Atoi(f[1])                 // field 4
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err0 != nil || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("stat of pid %d: bad ppid/utime/stime %q %q %q", pid, f[1], f[11], f[12])
	}
	return utime + stime, pp, nil
}
