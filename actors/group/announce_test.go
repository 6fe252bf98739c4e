package group

import (
	"slices"
	"testing"
	"time"
)

// TestCoordinatorAnnouncesItsLeadership: a replica that becomes its
// partition's coordinator tells every broker at once (Announce), with its
// term and ISR, rather than leave FindCoordinator on the other brokers to
// the next periodic broadcast of its manager.
func TestCoordinatorAnnouncesItsLeadership(t *testing.T) {
	c := startCoordinator(t, Settings{})
	select {
	case infos := <-c.announced:
		l := c.m.Leadership()
		if len(infos) != 1 || infos[0].Group != 7 || infos[0].Leader != 1 || infos[0].Term != l.Term || !slices.Equal(infos[0].ISR, []uint64{1}) {
			t.Fatalf("announced %+v; want group 7 led by 1 in term %d, ISR [1]", infos, l.Term)
		}
	case <-time.After(testTimeout):
		t.Fatal("the coordinator never announced its leadership")
	}
}
