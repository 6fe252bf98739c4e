// Package testports hands tests loopback ports they must know before
// anything binds them: a broker's raft address goes into every peer's
// configuration before the broker starts, and again when it restarts.
//
// A port taken from 127.0.0.1:0 and released comes from the kernel's
// ephemeral range, so any outgoing connection made meanwhile (a client, a
// raft dial, a debug poll) may take it as its source port, and the broker
// started later fails to bind it. Free draws from outside that range.
//
// A port checked free is free only at that instant. A test that stops a
// broker and starts it again on the same ports leaves them unbound
// meanwhile, and another test process drawing from the same range (go test
// ./... runs packages in parallel) could take one of them. Free therefore
// also reserves each port it hands out with an flock on a file named
// after it, held until the test ends: processes that use this package
// never hand out a port another one holds.
package testports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Free returns n distinct loopback ports from outside the kernel's
// ephemeral range, each checked free by binding it. It fails t when it
// cannot find them.
func Free(t testing.TB, n int) []int {
	t.Helper()
	lo, hi := portRange(t)
	seen := map[int]bool{}
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			t.Fatalf("no %d free ports in [%d, %d) after %d tries", n, lo, hi, tries)
		}
		p := lo + rand.IntN(hi-lo)
		if seen[p] {
			continue
		}
		seen[p] = true
		lock, ok := reserve(t, p)
		if !ok {
			continue // another test holds it
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			lock.Close()
			continue // taken
		}
		ln.Close()
		t.Cleanup(func() { lock.Close() })
		ports = append(ports, p)
	}
	return ports
}

// reserve takes an exclusive, non-blocking flock on the lock file of port
// p, shared by every process on the machine; closing the file (or the
// process ending) releases it. It fails t if the lock directory is
// unusable.
//
// Every user on the machine shares the directory, as they share the
// ports: whoever creates it makes it writable by all and sticky, as /tmp
// is (the umask would otherwise leave it to its creator), and a lock file
// is opened read-only, which is all flock needs, so another user's file
// serves too.
func reserve(t testing.TB, p int) (*os.File, bool) {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "flotilla-testports")
	if err := os.Mkdir(dir, 0o777); err == nil {
		if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
			t.Fatalf("port lock directory: %v", err)
		}
	} else if !os.IsExist(err) {
		t.Fatalf("port lock directory: %v", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%d.lock", p)), os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		t.Fatalf("port lock file: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// portRange is the range Free draws from: the larger of the ranges below
// and above the kernel's ephemeral ports (ip_local_port_range), leaving the
// well-known and registered ports under 10000 alone.
func portRange(t testing.TB) (lo, hi int) {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatalf("read the ephemeral port range: %v", err)
	}
	var eLo, eHi int
	if _, err := fmt.Sscan(string(b), &eLo, &eHi); err != nil {
		t.Fatalf("parse the ephemeral port range %q: %v", b, err)
	}
	lo, hi = 10000, eLo
	if 65536-(eHi+1) > hi-lo {
		lo, hi = eHi+1, 65536
	}
	if hi-lo < 1000 {
		t.Fatalf("fewer than 1000 ports outside the ephemeral range %d-%d", eLo, eHi)
	}
	return lo, hi
}
