package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
)

// TestIdleClusterISRsStayFull: on a healthy, idle cluster of three, every
// offsets partition's leader keeps all three replicas in its ISR
// (group.Machine.Leadership, which it broadcasts and every broker's
// Metadata answers with), and so does the controller group's leader in the
// ISR it broadcasts (which /healthz reads). Raft's RecentActive, which
// CheckQuorum clears at every election timeout, made an offsets
// partition's drop to the leader alone in about half of its samples on a
// third of the partitions.
func TestIdleClusterISRsStayFull(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client()
	c.waitFor(20*time.Second, "FindCoordinator to create the offsets topic and answer", func() bool {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey = "g"
		resp, err := req.RequestWith(ctx, cl)
		return err == nil && resp.ErrorCode == 0
	})
	parts := c.brokers[0].Controller().View().Topics[controller.OffsetsTopic].Partitions
	n := len(parts)
	// short names what is not settled: a partition not led by its
	// preferred replica (a leadership still moving there would reset its
	// ISR), or led with an ISR short of its replicas.
	short := func() []string {
		var out []string
		led := 0
		for _, b := range c.brokers {
			for _, co := range b.Coordinators().All() {
				l := co.Machine.Leadership()
				if !l.Leader {
					continue
				}
				led++
				if pref := parts[co.Partition].Replicas[0]; pref != b.cfg.NodeID {
					out = append(out, fmt.Sprintf("offsets partition %d led by %d, not by its preferred replica %d", co.Partition, b.cfg.NodeID, pref))
				}
				if len(l.ISR) != 3 {
					out = append(out, fmt.Sprintf("offsets partition %d led by %d: ISR %v", co.Partition, b.cfg.NodeID, l.ISR))
				}
			}
		}
		if led != n {
			out = append(out, fmt.Sprintf("%d of %d offsets partitions led", led, n))
		}
		for _, b := range c.brokers {
			if li, ok := b.Leaders().Get(controller.ControllerGroup); !ok || len(li.ISR) != 3 {
				out = append(out, fmt.Sprintf("broker %d knows the controller group's ISR as %v (known %v)", b.cfg.NodeID, li.ISR, ok))
			}
		}
		return out
	}
	// A new leader's ISR is the replicas that acknowledged its first
	// entry; the third joins at its next sample.
	c.waitFor(10*time.Second, "every offsets partition led by its preferred replica with a full ISR, and the controller's ISR full", func() bool { return len(short()) == 0 })
	// Many election timeouts (200 ms here) and ISR samples (100 ms).
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if s := short(); len(s) > 0 {
			t.Fatalf("idle healthy cluster: %v", s)
		}
	}
}
