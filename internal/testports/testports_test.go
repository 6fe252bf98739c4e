package testports

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// TestReservedWhileUnbound: a port Free handed out stays reserved while
// nothing binds it (a broker between a stop and its restart), for other
// processes drawing from the same range as for this one.
func TestReservedWhileUnbound(t *testing.T) {
	if p := os.Getenv("TESTPORTS_TRY"); p != "" {
		// The child: report whether it could reserve the parent's port.
		port, _ := strconv.Atoi(p)
		if f, ok := reserve(t, port); ok {
			f.Close()
			fmt.Println("RESERVED")
		} else {
			fmt.Println("REFUSED")
		}
		return
	}
	port := Free(t, 1)[0]
	// Nothing is bound to it now; a listener could take it.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if f, ok := reserve(t, port); ok {
		f.Close()
		t.Errorf("port %d reserved twice in one process", port)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReservedWhileUnbound$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("TESTPORTS_TRY=%d", port))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if got := string(out); len(got) < 7 || got[:7] != "REFUSED" {
		t.Errorf("another process could reserve port %d while this test holds it: %q", port, got)
	}
}

// TestReleasedAtCleanup: once the test that drew a port ends, another can
// draw it.
func TestReleasedAtCleanup(t *testing.T) {
	var port int
	t.Run("holder", func(t *testing.T) { port = Free(t, 1)[0] })
	f, ok := reserve(t, port)
	if !ok {
		t.Fatalf("port %d still reserved after the test that drew it ended", port)
	}
	f.Close()
}
