package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// logTailBytes is how much of the broker's log an error quotes.
const logTailBytes = 2048

// target is one broker under load.
type target struct {
	name   string
	addr   string          // Kafka address
	pid    int             // the process whose RSS and CPU are reported
	debug  string          // HTTP debug address (pprof), "" if none
	dir    string          // data directory, "" if the broker keeps nothing on disk
	exited <-chan struct{} // closed if the broker process exits; nil in-process
	// failure describes how the broker failed (exit status, log tail),
	// for an error about the load; "" when there is nothing to add.
	failure func() string
	stop    func() // ends the broker; the process must be left alive until then
}

// startFlotilla starts one broker process from the binary bin (one-node
// cluster, defaults for everything else, storage.fsync as given) with its
// data under dir, and creates the benchmark topic on it with kadm.
func startFlotilla(ctx context.Context, bin string, fsync bool, dir string, partitions int32) (*target, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s not built (run make build): %w", bin, err)
	}
	ports, err := freeLoopbackPorts(3)
	if err != nil {
		return nil, fmt.Errorf("free ports: %w", err)
	}
	kafka, raft, debug := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	data := filepath.Join(dir, "data")
	config := filepath.Join(dir, "flotilla.yaml")
	yaml := fmt.Sprintf("node_id: 1\ndata_dir: %q\nkafka: {listen: %q}\nraft: {listen: %q}\ndebug: {listen: %q}\nlog: {level: warn, format: json}\nstorage: {fsync: %t}\npeers:\n  - {id: 1, addr: %q}\n",
		data, kafka, raft, debug, fsync, raft)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		return nil, fmt.Errorf("write flotilla config: %w", err)
	}
	logPath := filepath.Join(dir, "flotilla.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create flotilla log: %w", err)
	}
	cmd := exec.Command(bin, "--config", config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	c, err := startChild(cmd)
	logFile.Close() // the child has its own descriptor
	if err != nil {
		return nil, err
	}
	t := &target{
		name: "flotilla", addr: kafka, pid: c.pid(), debug: debug, dir: data, exited: c.exited,
		failure: func() string {
			return fmt.Sprintf("%s; the end of its log:\n%s", c.describeExit(), tailFile(logPath, logTailBytes))
		},
		stop: func() { c.stop(c.sigterm) },
	}
	if err := createTopic(watchExit(ctx, t), t.addr, benchTopic, partitions, 1); err != nil {
		err = fmt.Errorf("%w (%s)", err, t.failure())
		t.stop()
		return nil, err
	}
	return t, nil
}

// dirBytes is the total size of the regular files under dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dir, err)
	}
	return n, nil
}
