package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// stopGrace is how long a child process gets to exit after it is asked to
// before it is killed.
const stopGrace = 10 * time.Second

// child is a process this program started: a broker under load.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited and been reaped
	err    error         // its exit status, once exited is closed
}

// startChild starts cmd and reaps it when it exits.
func startChild(cmd *exec.Cmd) (*child, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// pid is the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// stop asks the child to exit (ask, e.g. sending SIGTERM or closing its
// stdin), and kills it if it has not exited within stopGrace.
func (c *child) stop(ask func()) {
	ask()
	select {
	case <-c.exited:
	case <-time.After(stopGrace):
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.exited
	}
}

// sigterm is the usual way to ask a child to exit.
func (c *child) sigterm() { _ = c.cmd.Process.Signal(syscall.SIGTERM) }

// describeExit says how the child ended, for errors; "" if it still runs.
func (c *child) describeExit() string {
	select {
	case <-c.exited:
		if c.err != nil {
			return fmt.Sprintf("%s exited: %v", c.cmd.Path, c.err)
		}
		return fmt.Sprintf("%s exited with status 0", c.cmd.Path)
	default:
		return ""
	}
}

// tailFile returns up to the last n bytes of path, or why it cannot.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(0, info.Size()-n)
	b := make([]byte, info.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil {
		return err.Error()
	}
	return string(b)
}
