package debug

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/group"
	"github.com/flotilla/flotilla/raftactor"
)

// TestGroupsSaysWhichPartitionsDidNotAnswer: an offsets partition whose
// actor does not answer ViewGroups (stuck applying, or building a large
// view) is named in /debug/groups and on the page, so that its answer is
// not what a broker coordinating no group answers.
func TestGroupsSaysWhichPartitionsDidNotAnswer(t *testing.T) {
	sys := actors.NewSystem(zerolog.Nop())
	defer sys.Shutdown()
	silent, err := sys.Root.SpawnNamed(actor.PropsFromFunc(func(actor.Context) {}), "silent")
	if err != nil {
		t.Fatal(err)
	}
	empty, err := sys.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		if v, ok := c.Message().(*group.ViewGroups); ok {
			v.Reply <- []group.GroupInfo{}
		}
	}), "empty")
	if err != nil {
		t.Fatal(err)
	}
	cos := group.NewCoordinators()
	src := Sources{NodeID: 1, Actors: sys, Board: raftactor.NewStatusBoard(), Controller: controller.NewStateMachine(zerolog.Nop()), Coordinators: cos, Gatherer: prometheus.NewRegistry(), Log: zerolog.Nop()}
	get := func(path string) string {
		rec := httptest.NewRecorder()
		Handler(src).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body.String())
		}
		return rec.Body.String()
	}
	unanswered := func() []int32 {
		var body struct {
			Groups     []GroupView `json:"groups"`
			Unanswered []int32     `json:"unanswered_offsets_partitions"`
		}
		if s := get("/debug/groups"); json.Unmarshal([]byte(s), &body) != nil || body.Groups == nil || body.Unanswered == nil {
			t.Fatalf("/debug/groups: %s", s)
		}
		return body.Unanswered
	}

	cos.Publish(map[int32]*group.Coordinator{0: {Partition: 0, PID: empty}, 1: {Partition: 1, PID: empty}})
	if got := unanswered(); len(got) != 0 {
		t.Errorf("every partition answered, /debug/groups says %v did not", got)
	}
	if page := get("/"); strings.Contains(page, "did not answer") {
		t.Errorf("every partition answered, the page says one did not")
	}

	cos.Publish(map[int32]*group.Coordinator{0: {Partition: 0, PID: empty}, 1: {Partition: 1, PID: silent}, 2: {Partition: 2, PID: silent}})
	if got := unanswered(); !reflect.DeepEqual(got, []int32{1, 2}) {
		t.Errorf("partitions 1 and 2 did not answer, /debug/groups says %v did not", got)
	}
	if page := get("/"); !strings.Contains(page, "Offsets partitions [1 2] did not answer") {
		t.Errorf("the page does not say that partitions 1 and 2 did not answer:\n%s", page)
	}
}
