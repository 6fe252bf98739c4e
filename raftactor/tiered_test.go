package raftactor

import (
	"bytes"
	"errors"
	"io"
	"log"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// sliceCold is a ColdLog over entries [first, last] held in a map, with
// the term of entry first-1 when known (boundaryTerm > 0) and the snapshot
// data there when it can describe it.
type sliceCold struct {
	first        uint64
	ents         map[uint64]*pb.Entry
	boundaryTerm uint64
	boundaryData []byte
	boundaryConf *pb.ConfState
}

func (c *sliceCold) FirstIndex() uint64 { return c.first }
func (c *sliceCold) Entry(i uint64) (*pb.Entry, error) {
	if e, ok := c.ents[i]; ok && i >= c.first {
		return e, nil
	}
	return nil, errors.New("not here")
}
func (c *sliceCold) KeepEntry(e *pb.Entry) { c.ents[e.GetIndex()] = e }
func (c *sliceCold) Boundary() (uint64, uint64, bool) {
	return c.first - 1, c.boundaryTerm, c.boundaryTerm > 0
}
func (c *sliceCold) BoundarySnapshot() ([]byte, *pb.ConfState, bool) {
	return c.boundaryData, c.boundaryConf, c.boundaryData != nil
}

func entry(i, term uint64) *pb.Entry {
	return &pb.Entry{Index: new(i), Term: new(term), Data: make([]byte, 100)}
}

func TestTieredStorage(t *testing.T) {
	// Entries 1..100 were applied; the cold log has 21..100 (retention
	// removed the rest); memory was compacted to 90 and holds 91..120.
	cold := &sliceCold{first: 21, ents: map[uint64]*pb.Entry{}}
	ms := raft.NewMemoryStorage()
	var all []*pb.Entry
	for i := uint64(1); i <= 120; i++ {
		e := entry(i, 1+i/50)
		all = append(all, e)
		if i <= 100 {
			cold.ents[i] = e
		}
	}
	if err := ms.Append(all); err != nil {
		t.Fatal(err)
	}
	if err := ms.Compact(90); err != nil {
		t.Fatal(err)
	}
	s := &tieredStorage{MemoryStorage: ms, cold: cold, conf: func() *pb.ConfState { return nil }, w: &withholding{}}

	if first, _ := s.FirstIndex(); first != 21 {
		t.Fatalf("FirstIndex %d, want 21", first)
	}
	if last, _ := s.LastIndex(); last != 120 {
		t.Fatalf("LastIndex %d, want 120", last)
	}
	for _, i := range []uint64{21, 50, 89, 90, 91, 120} {
		term, err := s.Term(i)
		if err != nil || term != 1+i/50 {
			t.Fatalf("Term(%d) = %d, %v; want %d", i, term, err, 1+i/50)
		}
	}
	if _, err := s.Term(20); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Term(20): %v, want ErrCompacted", err)
	}
	// Across the boundary between cold and memory, contiguous.
	ents, err := s.Entries(80, 110, 1<<30)
	if err != nil || len(ents) != 30 {
		t.Fatalf("Entries(80,110): %d entries, %v", len(ents), err)
	}
	for k, e := range ents {
		if e.GetIndex() != 80+uint64(k) {
			t.Fatalf("entry %d has index %d", k, e.GetIndex())
		}
	}
	// maxSize limits, but at least one entry comes back.
	if ents, _ := s.Entries(30, 60, 1); len(ents) != 1 {
		t.Fatalf("Entries with a tiny maxSize: %d entries, want 1", len(ents))
	}
	per := uint64(proto.Size(entry(30, 1)))
	if ents, _ := s.Entries(30, 60, 4*per+per/2); len(ents) != 4 {
		t.Fatalf("Entries with room for 4.5 entries: %d entries, want 4", len(ents))
	}
	if _, err := s.Entries(10, 30, 1<<30); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Entries below the cold log: %v, want ErrCompacted", err)
	}
	// A gap in the cold log is reported as compacted: raft sends the snapshot.
	delete(cold.ents, 40)
	if _, err := s.Entries(35, 45, 1<<30); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Entries over a gap: %v, want ErrCompacted", err)
	}
}

// TestTieredStorageEntriesWithinMaxSize: entries read across the boundary
// between the cold log and memory stay within maxSize, as raft.Storage
// asks (only a lone entry may exceed it). raft sends what Entries returns
// as one append: a large memory entry added to a cold read that had
// nearly filled maxSize made an append larger than a frame, which the
// transport drops each time raft resends it, so the follower catching up
// from the cold log never got past it.
func TestTieredStorageEntriesWithinMaxSize(t *testing.T) {
	// Cold 1..10 of 100 bytes each, memory 11..12: a large entry, then a
	// small one.
	cold := &sliceCold{first: 1, ents: map[uint64]*pb.Entry{}}
	ms := raft.NewMemoryStorage()
	var all []*pb.Entry
	for i := uint64(1); i <= 12; i++ {
		e := entry(i, 1)
		if i == 11 {
			e.Data = make([]byte, 1<<20)
		}
		all = append(all, e)
		if i <= 10 {
			cold.ents[i] = e
		}
	}
	if err := ms.Append(all); err != nil {
		t.Fatal(err)
	}
	if err := ms.Compact(10); err != nil {
		t.Fatal(err)
	}
	s := &tieredStorage{MemoryStorage: ms, cold: cold, conf: func() *pb.ConfState { return nil }, w: &withholding{}}
	per := uint64(proto.Size(all[0]))
	for _, maxSize := range []uint64{10 * per, 10*per + 1, 20 * per} {
		ents, err := s.Entries(1, 13, maxSize)
		if err != nil {
			t.Fatal(err)
		}
		var size uint64
		for _, e := range ents {
			size += uint64(proto.Size(e))
		}
		if len(ents) != 10 || size > maxSize {
			t.Errorf("Entries(1, 13, %d): %d entries of %d bytes; want the 10 cold ones, within maxSize", maxSize, len(ents), size)
		}
	}
	// From memory alone the large entry still comes, on its own.
	if ents, err := s.Entries(11, 13, per); err != nil || len(ents) != 1 {
		t.Errorf("Entries(11, 13, %d): %d entries, %v; want the large one alone", per, len(ents), err)
	}
}

// TestTieredStorageBoundary: below the memory tail the cold log's boundary
// answers Term, and raft is sent a snapshot at the boundary rather than the
// latest one, unless the boundary is not below the latest snapshot. While
// the boundary is unknown or cannot be described, the latest snapshot is
// sent only if the cold log starts above it; otherwise the follower would
// skip the cold log's entries up to it, and raft is told to wait. Either
// snapshot carries its own configuration, with the members added since as
// learners.
func TestTieredStorageBoundary(t *testing.T) {
	v123 := &pb.ConfState{Voters: []uint64{1, 2, 3}, AutoLeave: new(false)} // as MemoryStorage keeps it
	// At the boundary 3 was a voter; it was removed, 4 added and promoted
	// before the latest snapshot, and 5 added as a learner after it.
	atBoundary := &pb.ConfState{Voters: []uint64{1, 2, 3}, AutoLeave: new(false)}
	atLatest := &pb.ConfState{Voters: []uint64{1, 2, 4}, AutoLeave: new(false)}
	now := &pb.ConfState{Voters: []uint64{1, 2, 4}, Learners: []uint64{5}, AutoLeave: new(false)}
	snap := func(data string, index, term uint64, cs *pb.ConfState) *pb.Snapshot {
		return &pb.Snapshot{Data: []byte(data), Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(term), ConfState: cs}}
	}
	tests := []struct {
		name         string
		coldFirst    uint64
		boundaryTerm uint64
		data         []byte
		latestConf   *pb.ConfState
		now          *pb.ConfState
		wantTerm20   error // from Term(20)
		want         *pb.Snapshot
		wantErr      error // from Snapshot
	}{
		{"boundary known", 21, 1, []byte("boundary"), v123, v123, nil, snap("boundary", 20, 1, v123), nil},
		{"boundary unknown", 21, 0, []byte("boundary"), v123, v123, raft.ErrCompacted, nil, raft.ErrSnapshotTemporarilyUnavailable},
		{"boundary not describable", 21, 1, nil, v123, v123, nil, nil, raft.ErrSnapshotTemporarilyUnavailable},
		{"boundary unknown, the cold log at the latest snapshot", 95, 0, nil, v123, v123, raft.ErrCompacted, nil, raft.ErrSnapshotTemporarilyUnavailable},
		{"boundary unknown, the cold log above the latest snapshot", 96, 0, nil, v123, v123, raft.ErrCompacted, snap("latest", 95, 2, v123), nil},
		{"boundary not below the latest snapshot", 96, 2, []byte("boundary"), v123, v123, raft.ErrCompacted, snap("latest", 95, 2, v123), nil},
		{"no cold log", 0, 0, nil, v123, v123, raft.ErrCompacted, snap("latest", 95, 2, v123), nil},
		{"members changed after the boundary", 21, 1, []byte("boundary"), atLatest, now, nil,
			snap("boundary", 20, 1, &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4, 5}, AutoLeave: new(false)}), nil},
		{"a learner added after the latest snapshot", 0, 0, nil, atLatest, now, raft.ErrCompacted, snap("latest", 95, 2, now), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cold := &sliceCold{first: tt.coldFirst, ents: map[uint64]*pb.Entry{}, boundaryTerm: tt.boundaryTerm, boundaryData: tt.data, boundaryConf: atBoundary}
			ms := raft.NewMemoryStorage()
			for i := uint64(1); i <= 120; i++ {
				if err := ms.Append([]*pb.Entry{entry(i, 1+i/50)}); err != nil {
					t.Fatal(err)
				}
				if i >= tt.coldFirst && tt.coldFirst > 0 && i <= 100 {
					cold.ents[i] = entry(i, 1+i/50)
				}
			}
			if _, err := ms.CreateSnapshot(95, tt.latestConf, []byte("latest")); err != nil {
				t.Fatal(err)
			}
			if err := ms.Compact(90); err != nil {
				t.Fatal(err)
			}
			s := &tieredStorage{MemoryStorage: ms, cold: cold, conf: func() *pb.ConfState { return tt.now }, w: &withholding{}}
			term, err := s.Term(20)
			if !errors.Is(err, tt.wantTerm20) || (err == nil && term != tt.boundaryTerm) {
				t.Errorf("Term(20) = %d, %v; want %d, %v", term, err, tt.boundaryTerm, tt.wantTerm20)
			}
			if err != nil && err != raft.ErrCompacted {
				t.Errorf("Term(20) error %v is not raft.ErrCompacted itself (raft compares with ==)", err)
			}
			got, err := s.Snapshot()
			if err != tt.wantErr || !proto.Equal(got, tt.want) {
				t.Errorf("Snapshot() = %v, %v; want %v, %v", got, err, tt.want, tt.wantErr)
			}
			if stored, _ := ms.Snapshot(); !proto.Equal(stored.GetMetadata().GetConfState(), tt.latestConf) {
				t.Errorf("the stored snapshot's ConfState changed to %v", stored.GetMetadata().GetConfState())
			}
		})
	}
}

// TestAdmitMembers: raft itself, on the receiving node, accepts a snapshot
// whose ConfState admitMembers widened, keeps the voters the group had at
// the snapshot, and ends with the current configuration once it applies
// the conf changes that followed the snapshot.
func TestAdmitMembers(t *testing.T) {
	add := func(typ pb.ConfChangeType, id uint64) *pb.ConfChangeSingle {
		return &pb.ConfChangeSingle{Type: typ.Enum(), NodeId: new(id)}
	}
	learner := func(id uint64) *pb.ConfChangeSingle { return add(pb.ConfChangeAddLearnerNode, id) }
	voter := func(id uint64) *pb.ConfChangeSingle { return add(pb.ConfChangeAddNode, id) }
	remove := func(id uint64) *pb.ConfChangeSingle { return add(pb.ConfChangeRemoveNode, id) }
	tests := []struct {
		name     string
		at       *pb.ConfState
		after    []*pb.ConfChangeSingle
		receiver uint64
	}{
		{"learner added after", &pb.ConfState{Voters: []uint64{1, 2, 3}}, []*pb.ConfChangeSingle{learner(4)}, 4},
		{"learner added and promoted, a voter removed", &pb.ConfState{Voters: []uint64{1, 2, 3}}, []*pb.ConfChangeSingle{learner(4), voter(4), remove(3)}, 4},
		{"voter all along", &pb.ConfState{Voters: []uint64{1, 2, 3}}, []*pb.ConfChangeSingle{remove(1), learner(5), voter(5)}, 2},
		{"learner at the snapshot promoted", &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}, []*pb.ConfChangeSingle{voter(4)}, 4},
		{"another added and removed", &pb.ConfState{Voters: []uint64{1, 2, 3}}, []*pb.ConfChangeSingle{learner(4), remove(4), learner(5)}, 5},
		{"a voter demoted", &pb.ConfState{Voters: []uint64{1, 2, 3}}, []*pb.ConfChangeSingle{learner(6), learner(3)}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The leader's configuration now: the one at the snapshot and
			// the conf changes after it, applied by raft.
			now := replay(t, tt.at, tt.at.GetVoters()[0], tt.after)

			cs := admitMembers(tt.at, now)
			ms := raft.NewMemoryStorage()
			rn, err := raft.NewRawNode(&raft.Config{ID: tt.receiver, ElectionTick: 10, HeartbeatTick: 1, Storage: ms, MaxInflightMsgs: 1, MaxSizePerMsg: 1 << 20, Logger: &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}})
			if err != nil {
				t.Fatal(err)
			}
			snap := &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(10)), Term: new(uint64(1)), ConfState: cs}}
			if err := rn.Step(&pb.Message{Type: pb.MsgSnap.Enum(), From: new(uint64(1)), To: new(tt.receiver), Term: new(uint64(1)), Snapshot: snap}); err != nil {
				t.Fatal(err)
			}
			if rd := rn.Ready(); rd.Snapshot == nil || raft.IsEmptySnap(rd.Snapshot) {
				t.Fatalf("node %d refused the snapshot with %v", tt.receiver, cs)
			}
			if got := sorted(rn.Status().Config.Voters[0]); !slices.Equal(got, sorted(setOf(tt.at.GetVoters()))) {
				t.Fatalf("voters after the snapshot %v, want the snapshot's %v", got, tt.at.GetVoters())
			}
			var final *pb.ConfState
			for _, c := range tt.after {
				final = rn.ApplyConfChange(&pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{c}})
			}
			if !sameConf(final, now) {
				t.Fatalf("after the conf changes: %v, want %v", final, now)
			}
		})
	}
}

// replay returns the configuration raft reaches from cs by the changes, as
// node id sees it.
func replay(t *testing.T, cs *pb.ConfState, id uint64, changes []*pb.ConfChangeSingle) *pb.ConfState {
	t.Helper()
	ms := raft.NewMemoryStorage()
	if err := ms.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(1)), Term: new(uint64(1)), ConfState: cs}}); err != nil {
		t.Fatal(err)
	}
	rn, err := raft.NewRawNode(&raft.Config{ID: id, ElectionTick: 10, HeartbeatTick: 1, Storage: ms, MaxInflightMsgs: 1, MaxSizePerMsg: 1 << 20, Logger: &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	out := cs
	for _, c := range changes {
		out = rn.ApplyConfChange(&pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{c}})
	}
	return out
}

func setOf(ids []uint64) map[uint64]struct{} {
	out := map[uint64]struct{}{}
	for _, id := range ids {
		out[id] = struct{}{}
	}
	return out
}

func sorted[V any](m map[uint64]V) []uint64 { return slices.Sorted(maps.Keys(m)) }

func sameConf(a, b *pb.ConfState) bool {
	for _, p := range [][2][]uint64{{a.GetVoters(), b.GetVoters()}, {a.GetLearners(), b.GetLearners()}, {a.GetVotersOutgoing(), b.GetVotersOutgoing()}, {a.GetLearnersNext(), b.GetLearnersNext()}} {
		if !slices.Equal(sorted(setOf(p[0])), sorted(setOf(p[1]))) {
			return false
		}
	}
	return true
}

// TestFollowerWaitsForTheBoundary: raft itself, as leader, handed
// raft.ErrSnapshotTemporarilyUnavailable for a follower behind the cold
// log's FirstIndex, sends that follower nothing and does not give up on
// it: once the cold log knows its boundary again, the next heartbeat
// response brings the boundary snapshot, and the follower then catches up
// with appends from the cold log.
func TestFollowerWaitsForTheBoundary(t *testing.T) {
	// The leader applied 1..120; its cold log holds 21..100 with the
	// boundary 20 unknown; memory holds the snapshot at 95 and 96..120.
	// Node 2 is a learner with an empty log.
	cs := &pb.ConfState{Voters: []uint64{1}, Learners: []uint64{2}}
	cold := &sliceCold{first: 21, ents: map[uint64]*pb.Entry{}, boundaryData: []byte("boundary"), boundaryConf: cs}
	ms := raft.NewMemoryStorage()
	if err := ms.ApplySnapshot(&pb.Snapshot{Data: []byte("latest"), Metadata: &pb.SnapshotMetadata{Index: new(uint64(95)), Term: new(uint64(2)), ConfState: cs}}); err != nil {
		t.Fatal(err)
	}
	for i := uint64(21); i <= 120; i++ {
		e := entry(i, 1+i/50)
		if i <= 100 {
			cold.ents[i] = e
		}
		if i > 95 {
			if err := ms.Append([]*pb.Entry{e}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := ms.SetHardState(&pb.HardState{Term: new(uint64(3)), Commit: new(uint64(120))}); err != nil {
		t.Fatal(err)
	}
	quiet := &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}
	newNode := func(id uint64, st raft.Storage, applied uint64) *raft.RawNode {
		rn, err := raft.NewRawNode(&raft.Config{ID: id, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Applied: applied,
			MaxInflightMsgs: 256, MaxSizePerMsg: 1 << 20, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return rn
	}
	leader := newNode(1, &tieredStorage{MemoryStorage: ms, cold: cold, conf: func() *pb.ConfState { return cs }, w: &withholding{}}, 120)
	fms := raft.NewMemoryStorage()
	follower := newNode(2, fms, 0)
	if err := leader.Campaign(); err != nil {
		t.Fatal(err)
	}

	// run exchanges messages until neither node has any, and counts the
	// snapshots the leader sent.
	snaps := 0
	run := func() {
		for range 100 {
			var msgs []*pb.Message
			if leader.HasReady() {
				rd := leader.Ready()
				if err := ms.Append(rd.Entries); err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, rd.Messages...)
				leader.Advance(rd)
			}
			if follower.HasReady() {
				rd := follower.Ready()
				if !raft.IsEmptySnap(rd.Snapshot) {
					if err := fms.ApplySnapshot(rd.Snapshot); err != nil {
						t.Fatal(err)
					}
				}
				if err := fms.Append(rd.Entries); err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, rd.Messages...)
				follower.Advance(rd)
			}
			if len(msgs) == 0 {
				return
			}
			for _, m := range msgs {
				to := follower
				if m.GetTo() == 1 {
					to = leader
				} else if m.GetType() == pb.MsgSnap {
					snaps++
				}
				if err := to.Step(m); err != nil {
					t.Fatal(err)
				}
			}
		}
		t.Fatal("the nodes are still exchanging messages after 100 rounds")
	}
	heartbeat := func() {
		leader.Tick()
		run()
	}
	run()
	for range 20 {
		heartbeat()
	}
	if last, _ := fms.LastIndex(); snaps != 0 || last != 0 {
		t.Fatalf("while the boundary is unknown: %d snapshots sent, the follower's log ends at %d; want none, 0", snaps, last)
	}
	if st := leader.Status().Progress[2]; st.State != tracker.StateProbe {
		t.Fatalf("follower's progress %v, want it probed again", st)
	}

	cold.boundaryTerm = 1
	heartbeat()
	if snaps != 1 {
		t.Fatalf("once the boundary is known: %d snapshots sent, want 1", snaps)
	}
	if snap, _ := fms.Snapshot(); snap.GetMetadata().GetIndex() != 20 || string(snap.GetData()) != "boundary" {
		t.Fatalf("the follower installed %v, want the boundary snapshot at 20", snap)
	}
	leader.ReportSnapshot(2, raft.SnapshotFinish)
	for range 5 {
		heartbeat()
	}
	llast, _ := ms.LastIndex()
	if flast, _ := fms.LastIndex(); flast != llast {
		t.Fatalf("the follower's log ends at %d, the leader's at %d", flast, llast)
	}
	for i := uint64(21); i <= 100; i++ {
		if term, err := fms.Term(i); err != nil || term != 1+i/50 {
			t.Fatalf("follower's entry %d: term %d, %v; want %d from the cold log", i, term, err, 1+i/50)
		}
	}
}

// TestSnapshotWithheldShown: while a follower behind the cold log waits
// because no snapshot can be sent, the leader's status says why and counts
// the requests (/debug/raft, flotilla_raft_snapshots_withheld_total), and
// the log warns, naming the way out, when it starts and then at most once
// a minute, not at every heartbeat; once a snapshot is sent, or nobody has
// asked for a while, the status no longer shows it.
func TestSnapshotWithheldShown(t *testing.T) {
	cold := &sliceCold{first: 21, ents: map[uint64]*pb.Entry{}, boundaryConf: &pb.ConfState{Voters: []uint64{1}}}
	ms := raft.NewMemoryStorage()
	if err := ms.ApplySnapshot(&pb.Snapshot{Data: []byte("latest"), Metadata: &pb.SnapshotMetadata{Index: new(uint64(95)), Term: new(uint64(2)), ConfState: &pb.ConfState{Voters: []uint64{1}}}}); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	clock := time.Unix(1000, 0)
	s := &tieredStorage{MemoryStorage: ms, cold: cold, conf: func() *pb.ConfState { return nil }, w: &withholding{},
		log: zerolog.New(&logged).With().Str("topic", "t").Int32("partition", 0).Logger(), now: func() time.Time { return clock }}
	warnings := func() int { return strings.Count(logged.String(), `"level":"warn"`) }
	board := NewStatusBoard()
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(board))
	status := func(leader bool) *GroupStatus {
		gs := &GroupStatus{Group: 1024, Name: "t/0", Role: "follower"}
		if leader {
			gs.Role = "leader"
		}
		s.report(gs, leader)
		board.Publish(gs)
		return gs
	}
	counted := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "flotilla_raft_snapshots_withheld_total" && len(mf.GetMetric()) == 1 {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no flotilla_raft_snapshots_withheld_total series")
		return 0
	}
	ask := func(wantErr error) {
		t.Helper()
		if _, err := s.Snapshot(); err != wantErr {
			t.Fatalf("Snapshot() error %v, want %v", err, wantErr)
		}
	}

	if gs := status(true); gs.SnapshotWithheld != "" || counted() != 0 {
		t.Fatalf("before any request: status %q, counted %v", gs.SnapshotWithheld, counted())
	}
	for range 600 { // a minute of heartbeat responses, one every 100 ms
		ask(raft.ErrSnapshotTemporarilyUnavailable)
		clock = clock.Add(99 * time.Millisecond)
	}
	if n := warnings(); n != 1 {
		t.Fatalf("%d warnings in the first minute, want 1:\n%s", n, logged.String())
	}
	for _, want := range []string{`"topic":"t"`, `"reason":"boundary unknown"`, `"way_out":"a log-start move past the partition's first record batch`} {
		if !strings.Contains(logged.String(), want) {
			t.Fatalf("the warning does not say %s:\n%s", want, logged.String())
		}
	}
	if gs := status(true); gs.SnapshotWithheld != withheldUnknown || gs.SnapshotsWithheld != 600 || counted() != 600 {
		t.Fatalf("leader's status %q, %d withheld, counted %v; want %q, 600", gs.SnapshotWithheld, gs.SnapshotsWithheld, counted(), withheldUnknown)
	}
	if gs := status(false); gs.SnapshotWithheld != "" {
		t.Fatalf("a follower's status shows %q", gs.SnapshotWithheld)
	}
	clock = clock.Add(time.Second)
	ask(raft.ErrSnapshotTemporarilyUnavailable)
	if n := warnings(); n != 2 {
		t.Fatalf("%d warnings after a minute, want 2", n)
	}

	// Known but not describable.
	cold.boundaryTerm = 1
	ask(raft.ErrSnapshotTemporarilyUnavailable)
	if gs := status(true); gs.SnapshotWithheld != withheldUndescribable {
		t.Fatalf("status %q, want %q", gs.SnapshotWithheld, withheldUndescribable)
	}
	// Nobody asks for a while (the follower went away).
	clock = clock.Add(withheldShownFor)
	if gs := status(true); gs.SnapshotWithheld != "" || gs.SnapshotsWithheld != 602 {
		t.Fatalf("nobody asked for %v: status %q, %d withheld; want none shown, 602", withheldShownFor, gs.SnapshotWithheld, gs.SnapshotsWithheld)
	}
	// Describable: the boundary snapshot goes.
	ask(raft.ErrSnapshotTemporarilyUnavailable)
	cold.boundaryData = []byte("boundary")
	ask(nil)
	if gs := status(true); gs.SnapshotWithheld != "" || counted() != 603 {
		t.Fatalf("after a snapshot was sent: status %q, counted %v; want none, 603", gs.SnapshotWithheld, counted())
	}
	if n := warnings(); n != 2 {
		t.Fatalf("%d warnings, want 2", n)
	}
}
