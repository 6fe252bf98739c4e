package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
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

// startSelf runs this program again as a child process with args (one of
// the server subcommands, kfake-server or nats-server), with its stderr
// going to stderr, and returns it with the address it prints as the first
// line of its stdout. The child serves until its stdin is closed, which
// stop does, and which also happens if this process dies.
func startSelf(stderr io.Writer, args ...string) (c *child, addr string, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s stdin: %w", args[0], err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s stdout: %w", args[0], err)
	}
	if c, err = startChild(cmd); err != nil {
		return nil, "", nil, err
	}
	stop = func() { c.stop(func() { stdin.Close() }) }
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout) // the child must never block on a full pipe
	}()
	select {
	case addr, ok := <-line:
		if !ok || addr == "" {
			stop()
			return nil, "", nil, fmt.Errorf("%s exited without printing its address (%s)", args[0], c.describeExit())
		}
		return c, addr, stop, nil
	case <-time.After(startupDeadline):
		stop()
		return nil, "", nil, fmt.Errorf("%s printed no address within %v", args[0], startupDeadline)
	}
}

// serveUntilQuit prints addr as the first line of stdout, for startSelf,
// and returns when stdin is closed (the parent stopped us or died) or on
// SIGINT or SIGTERM.
func serveUntilQuit(addr string) error {
	if _, err := fmt.Println(addr); err != nil {
		return fmt.Errorf("print address: %w", err)
	}
	quit := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		quit <- struct{}{}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case <-quit:
	case <-sig:
	}
	return nil
}
