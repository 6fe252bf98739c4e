package storage

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/flotilla/flotilla/actors"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func ent(index, term uint64) *pb.Entry {
	return &pb.Entry{
		Term:  proto.Uint64(term),
		Index: proto.Uint64(index),
		Type:  pb.EntryNormal.Enum(),
		Data:  fmt.Appendf(nil, "entry %d of term %d", index, term),
	}
}

// ents returns entries lo..hi of one term.
func ents(lo, hi, term uint64) []*pb.Entry {
	var out []*pb.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, ent(i, term))
	}
	return out
}

func hardState(term, vote, commit uint64) *pb.HardState {
	return &pb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

func snapshot(index, term uint64) *pb.Snapshot {
	return &pb.Snapshot{
		Data: fmt.Appendf(nil, "state at %d", index),
		Metadata: &pb.SnapshotMetadata{
			Index:     proto.Uint64(index),
			Term:      proto.Uint64(term),
			ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}},
		},
	}
}

// describe renders a group state compactly, so that a failing comparison
// shows what differs.
func describe(st *GroupState) string {
	if st == nil {
		return "<none>"
	}
	var b strings.Builder
	if st.HardState != nil {
		fmt.Fprintf(&b, "hs(t%d v%d c%d) ", st.HardState.GetTerm(), st.HardState.GetVote(), st.HardState.GetCommit())
	}
	if st.Snapshot != nil {
		fmt.Fprintf(&b, "snap(%d t%d) ", st.Snapshot.GetMetadata().GetIndex(), st.Snapshot.GetMetadata().GetTerm())
	}
	b.WriteString("[")
	for i, e := range st.Entries {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%d/%d", e.GetIndex(), e.GetTerm())
	}
	b.WriteString("]")
	if len(st.Replaced) > 0 {
		fmt.Fprintf(&b, " replaced %d-%d", st.Replaced[0].GetIndex(), st.Replaced[len(st.Replaced)-1].GetIndex())
	}
	return b.String()
}

// requireStates fails unless got holds exactly the groups of want, with
// equal messages.
func requireStates(t *testing.T, want, got map[uint64]*GroupState) {
	t.Helper()
	groups := func(m map[uint64]*GroupState) []uint64 {
		var gs []uint64
		for g := range m {
			gs = append(gs, g)
		}
		slices.Sort(gs)
		return gs
	}
	if !slices.Equal(groups(want), groups(got)) {
		t.Fatalf("groups: want %v, got %v", groups(want), groups(got))
	}
	for g, w := range want {
		requireState(t, g, w, got[g])
	}
}

func requireState(t *testing.T, group uint64, want, got *GroupState) {
	t.Helper()
	equal := got != nil &&
		proto.Equal(want.HardState, got.HardState) &&
		proto.Equal(want.Snapshot, got.Snapshot) &&
		len(want.Entries) == len(got.Entries) && len(want.Replaced) == len(got.Replaced)
	for i := 0; equal && i < len(want.Entries); i++ {
		equal = proto.Equal(want.Entries[i], got.Entries[i])
	}
	for i := 0; equal && i < len(want.Replaced); i++ {
		equal = proto.Equal(want.Replaced[i], got.Replaced[i])
	}
	if !equal {
		t.Fatalf("group %d:\nwant %s\ngot  %s", group, describe(want), describe(got))
	}
}

func testOptions() Options {
	return Options{SegmentBytes: 1 << 20, BudgetBytes: 1 << 30, Log: zerolog.Nop()}
}

func mustOpen(t testing.TB, dir string, opts Options) (*WAL, map[uint64]*GroupState) {
	t.Helper()
	w, states, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w, states
}

func mustClose(t testing.TB, w *WAL) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func mustUpdate(t testing.TB, w *WAL, group uint64, entries []*pb.Entry, hs *pb.HardState, snap *pb.Snapshot) {
	t.Helper()
	if err := w.AppendUpdate(group, entries, hs, snap); err != nil {
		t.Fatalf("AppendUpdate: %v", err)
	}
}

func mustCommit(t testing.TB, w *WAL) {
	t.Helper()
	if err := w.Commit(true); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// walFiles lists the WAL file names in dir, in order.
func walFiles(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if _, ok := parseSegmentName(de.Name()); ok {
			names = append(names, de.Name())
		}
	}
	return names
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

// collector is a stand-in for a raft actor: it forwards what the storage
// actor sends it to a channel.
type collector struct{ ch chan any }

func (c *collector) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *Persisted, *Flushed, *CheckpointRequest, *Checkpointed:
		c.ch <- m
	}
}

// harness is an actor system running a storage actor over w and a collector.
type harness struct {
	sys     *actors.System
	storage *actor.PID
	reply   *actor.PID
	ch      chan any
}

func startActor(t *testing.T, w *WAL) *harness {
	t.Helper()
	h := &harness{sys: actors.NewSystem(zerolog.Nop()), ch: make(chan any, 100000)}
	var err error
	if h.reply, err = h.sys.Spawn("test", "collector", func() actor.Actor { return &collector{ch: h.ch} }); err != nil {
		t.Fatal(err)
	}
	if h.storage, err = h.sys.Spawn(Kind, Name, NewActor(w, zerolog.Nop())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.sys.Shutdown)
	return h
}

// stop poisons the storage actor, so that everything in its mailbox is
// handled first, and waits until it has closed the WAL.
func (h *harness) stop(t *testing.T) {
	t.Helper()
	if err := h.sys.Root.PoisonFuture(h.storage).Wait(); err != nil {
		t.Fatalf("stopping the storage actor: %v", err)
	}
}

// next returns the next message of type T the collector received, skipping
// none: a message of another type fails the test.
func next[T any](t *testing.T, h *harness) T {
	t.Helper()
	select {
	case m := <-h.ch:
		v, ok := m.(T)
		if !ok {
			t.Fatalf("want %T, got %T %+v", *new(T), m, m)
		}
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %T", *new(T))
		panic("unreachable")
	}
}

// flush sends Flush and waits for Flushed, collecting whatever else arrives
// on the way.
func (h *harness) flush(t *testing.T) (others []any) {
	t.Helper()
	h.sys.Root.Send(h.storage, &Flush{ReplyTo: h.reply})
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-h.ch:
			if f, ok := m.(*Flushed); ok {
				if f.Err != nil {
					t.Fatalf("Flushed: %v", f.Err)
				}
				return others
			}
			others = append(others, m)
		case <-deadline:
			t.Fatal("timed out waiting for Flushed")
		}
	}
}

// removeCovered releases the covered files and waits until the remover has
// removed them; it returns how many were released.
func removeCovered(t testing.TB, w *WAL) int {
	t.Helper()
	n := w.deleteCovered()
	if err := w.waitRemoved(); err != nil {
		t.Fatal(err)
	}
	return n
}
