package test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The Apache Kafka Java client, built from source: Maven Central is out of
// reach here, but the Go module proxy serves Kafka's source tree (as a
// +incompatible module, checked against the Go checksum database), and
// Debian packages the client's few dependencies. test/java/build.sh builds
// it and test/java/Flotilla.java, the program the tests drive.

// javaKafkaModule is the Kafka source tree the client is built from:
// Confluent's 7.4.1-ce, which is Apache Kafka 3.4.1 plus Confluent's
// additions (none of which the client uses on a plaintext connection).
const javaKafkaModule = "github.com/apache/kafka@v7.4.1+incompatible"

// javaJars are the Debian jars the client needs at run time
// (libzstd-jni-java, liblz4-java, libsnappy-java, libslf4j-java), and
// javaBuildJars those build.sh needs besides (libjackson2-databind-java,
// libargparse4j-java, libnetty-java).
var (
	javaJars      = []string{"zstd-jni.jar", "lz4-java.jar", "snappy-java.jar", "slf4j-api.jar", "slf4j-simple.jar"}
	javaBuildJars = []string{"jackson-databind.jar", "jackson-core.jar", "jackson-annotations.jar", "argparse4j.jar",
		"netty-buffer.jar", "netty-common.jar", "netty-handler.jar"}
)

// javaClient runs test/java/Flotilla.java on the Kafka client built from
// source.
type javaClient struct {
	classpath string
}

// buildJavaClient returns the client, building it unless a build of this
// Kafka version and these sources is in the user's cache directory. It
// skips the test if Java or a Debian jar is missing (CI installs them).
func buildJavaClient(t *testing.T) *javaClient {
	t.Helper()
	for _, tool := range []string{"java", "javac"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the Java client cannot run (CI installs default-jdk-headless)", tool)
		}
	}
	for _, jar := range append(javaJars, javaBuildJars...) {
		if _, err := os.Stat(filepath.Join("/usr/share/java", jar)); err != nil {
			t.Skipf("%s is missing: the Java client cannot be built (CI installs the Debian packages, see .ci/run)", jar)
		}
	}
	cp := []string{}
	for _, jar := range javaJars {
		cp = append(cp, filepath.Join("/usr/share/java", jar))
	}

	h := sha256.New()
	fmt.Fprintln(h, javaKafkaModule)
	for _, f := range []string{"build.sh", "Flotilla.java"} {
		b, err := os.ReadFile(filepath.Join("java", f))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("no cache directory for the Java client's build: %v", err)
	}
	root := filepath.Join(cache, "flotilla", "java")
	dir := filepath.Join(root, "kafka-7.4.1-"+hex.EncodeToString(h.Sum(nil))[:16])
	classes := filepath.Join(dir, "classes")
	if _, err := os.Stat(filepath.Join(classes, "Flotilla.class")); err != nil {
		buildJava(t, root, dir)
	}
	return &javaClient{classpath: strings.Join(append([]string{classes}, cp...), ":")}
}

// buildJava runs build.sh into a fresh directory under root and renames it
// to dir, so that a build cut short is never taken for a finished one, and
// two test processes building at once both end up with a whole build.
func buildJava(t *testing.T, root, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", javaKafkaModule).Output()
	var mod struct{ Dir, Error string }
	if err == nil {
		err = json.Unmarshal(out, &mod)
	}
	if err != nil || mod.Error != "" || mod.Dir == "" {
		t.Fatalf("go mod download %s (the Go module proxy): %v %s\n%s", javaKafkaModule, err, mod.Error, out)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(root, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	script, err := filepath.Abs(filepath.Join("java", "build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "sh", script, mod.Dir, tmp).CombinedOutput(); err != nil {
		t.Fatalf("test/java/build.sh: %v (context: %v)\n%s", err, ctx.Err(), out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "classes", "Flotilla.class")); statErr != nil {
			t.Fatalf("keep the Java client's build: %v", err)
		}
	}
	t.Logf("built the Kafka %s Java client from source in %v, cached in %s", javaKafkaModule, time.Since(start).Round(100*time.Millisecond), dir)
}

// command returns the command that runs Flotilla.java with args; the
// client's log (slf4j-simple, warnings and errors, on stderr) goes to logs.
func (j *javaClient) command(ctx context.Context, logs *logBuffer, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "java",
		// A short-lived client on a small machine: start fast, stay small.
		"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m",
		"-Djava.library.path=/usr/lib/x86_64-linux-gnu/jni:/usr/lib/x86_64-linux-gnu:/usr/lib/jni",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-cp", j.classpath, "Flotilla")
	cmd.Args = append(cmd.Args, args...)
	cmd.Stderr = logs
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// javaRecord is one record for the Java producer: a testRecord, the
// partition it goes to (-1: the producer's partitioner picks), its
// timestamp, and its headers.
type javaRecord struct {
	testRecord
	Partition int32
	Timestamp time.Time
	Headers   []kgo.RecordHeader
}

// line is r as produce reads it from stdin (index i).
func (r javaRecord) line(i int) string {
	enc := base64.StdEncoding.EncodeToString
	var b strings.Builder
	fmt.Fprintf(&b, "%d\t%d\t%d\t%s\t%s", i, r.Partition, r.Timestamp.UnixMilli(), enc(r.Key), enc(r.Value))
	for _, h := range r.Headers {
		fmt.Fprintf(&b, "\t%s:%s", enc([]byte(h.Key)), enc(h.Value))
	}
	b.WriteByte('\n')
	return b.String()
}

// javaAck is where the Java producer reported a record written.
type javaAck struct {
	Partition int32
	Offset    int64
}

// javaProduced is what the Java producer reported of each record: its
// callback's metadata (acked) or exception (failed), by record index.
type javaProduced struct {
	acked  map[int]javaAck
	failed map[int]string
}

// produce runs the Java producer (its default configuration plus props,
// "key=value") on recs. Before it writes record i it calls gate(i), if
// gate is not nil, which can hold production back (false: stop writing);
// onAnswer, if not nil, is called after each record's answer, an ack or a
// failure, with the number of records answered so far.
func (j *javaClient) produce(t *testing.T, ctx context.Context, logs *logBuffer, bootstrap, topic string,
	recs []javaRecord, gate func(i int) bool, onAnswer func(n int), props ...string) javaProduced {
	t.Helper()
	cmd := j.command(ctx, logs, append([]string{"produce", bootstrap, topic}, props...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer stdin.Close()
		w := bufio.NewWriter(stdin)
		for i, r := range recs {
			if gate != nil {
				w.Flush()
				if !gate(i) {
					return
				}
			}
			if _, err := w.WriteString(r.line(i)); err != nil {
				return
			}
		}
		w.Flush()
	}()
	res := javaProduced{acked: map[int]javaAck{}, failed: map[int]string{}}
	closed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		switch {
		case f[0] == "closed":
			closed = true
		case f[0] == "ack" && len(f) == 4:
			i, _ := strconv.Atoi(f[1])
			p, _ := strconv.Atoi(f[2])
			o, _ := strconv.ParseInt(f[3], 10, 64)
			if _, dup := res.acked[i]; dup {
				t.Errorf("the Java producer acknowledged record %d twice", i)
			}
			res.acked[i] = javaAck{int32(p), o}
		case f[0] == "fail" && len(f) == 3:
			i, _ := strconv.Atoi(f[1])
			res.failed[i] = f[2]
		default:
			t.Errorf("the Java producer printed %q", sc.Text())
			continue
		}
		if onAnswer != nil && f[0] != "closed" {
			onAnswer(len(res.acked) + len(res.failed))
		}
	}
	err = cmd.Wait()
	if err != nil || !closed {
		t.Fatalf("the Java producer: %v (closed %v, context: %v)", err, closed, ctx.Err())
	}
	return res
}

// parseJavaRecord parses a "rec" line of Flotilla.java.
func parseJavaRecord(line string) (*kgo.Record, error) {
	f := strings.Split(line, "\t")
	if len(f) < 6 || f[0] != "rec" {
		return nil, fmt.Errorf("not a record: %q", line)
	}
	p, err1 := strconv.Atoi(f[1])
	o, err2 := strconv.ParseInt(f[2], 10, 64)
	ts, err3 := strconv.ParseInt(f[3], 10, 64)
	k, err4 := base64.StdEncoding.DecodeString(f[4])
	v, err5 := base64.StdEncoding.DecodeString(f[5])
	for _, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
	}
	r := &kgo.Record{Partition: int32(p), Offset: o, Timestamp: time.UnixMilli(ts), Key: k, Value: v}
	for _, h := range f[6:] {
		hk, hv, ok := strings.Cut(h, ":")
		key, err1 := base64.StdEncoding.DecodeString(hk)
		val, err2 := base64.StdEncoding.DecodeString(hv)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("header %q of %q", h, line)
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(key), Value: val})
	}
	return r, nil
}

// consume runs a Java consumer (consume or assign, see Flotilla.java) to
// its end and returns the records it printed, and its other lines.
func (j *javaClient) consume(t *testing.T, ctx context.Context, logs *logBuffer, args ...string) ([]*kgo.Record, []string) {
	t.Helper()
	out, err := j.command(ctx, logs, args...).Output()
	if err != nil {
		t.Fatalf("the Java consumer (%s): %v (context: %v)", args[0], err, ctx.Err())
	}
	var recs []*kgo.Record
	var other []string
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSuffix(line, "\n")
		if !strings.HasPrefix(line, "rec\t") {
			other = append(other, line)
			continue
		}
		r, err := parseJavaRecord(line)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs, other
}

// javaAdmin is a running Flotilla.java admin session: one Admin client,
// one call per line.
type javaAdmin struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// admin starts an admin session; the test's cleanup ends it.
func (j *javaClient) admin(t *testing.T, bootstrap string, logs *logBuffer) *javaAdmin {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := j.command(ctx, logs, "admin", bootstrap)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("the Java admin session: %v (context: %v)", err, ctx.Err())
		}
		cancel()
	})
	return &javaAdmin{cmd: cmd, in: in, out: bufio.NewScanner(out)}
}

// call runs one admin command and returns the lines it printed, split at
// tabs, and "" or the exception it failed with ("CLASS\tMESSAGE").
func (a *javaAdmin) call(t *testing.T, command string) ([][]string, string) {
	t.Helper()
	if _, err := io.WriteString(a.in, command+"\n"); err != nil {
		t.Fatalf("admin %s: %v", command, err)
	}
	var lines [][]string
	for a.out.Scan() {
		line := a.out.Text()
		switch {
		case line == "ok":
			return lines, ""
		case strings.HasPrefix(line, "err\t"):
			return lines, strings.TrimPrefix(line, "err\t")
		}
		lines = append(lines, strings.Split(line, "\t"))
	}
	t.Fatalf("admin %s: the session ended (%v)", command, a.out.Err())
	return nil, ""
}

// must is call for a command that must succeed.
func (a *javaAdmin) must(t *testing.T, command string) [][]string {
	t.Helper()
	lines, err := a.call(t, command)
	if err != "" {
		t.Fatalf("Java Admin %s: %s", command, err)
	}
	return lines
}
