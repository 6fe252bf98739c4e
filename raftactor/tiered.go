package raftactor

import (
	"errors"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ColdLog is implemented by a state machine that keeps its applied entries
// on disk in a form it can give back (a partition's segments): the group
// then serves raft the entries below its in-memory tail from there, so a
// follower that fell behind catches up with ordinary appends read from
// disk rather than with a snapshot, and the in-memory tail kept after a
// snapshot can be short. Memory is still compacted only at snapshots: a
// restarted actor resets the state machine to its last snapshot (and the
// cold log with it) and replays the entries after it from memory. Only a
// follower behind FirstIndex needs a snapshot, and it is sent one at the
// cold log's boundary (the entry below FirstIndex), not the latest: it then
// takes every entry the cold log holds as ordinary appends. The group's
// actor calls KeepEntry; raft calls the other methods from the same actor
// only (RawNode runs there).
type ColdLog interface {
	// FirstIndex is the lowest raft index from which the cold log holds
	// every entry up to the applied index; 0 when it holds none.
	FirstIndex() uint64
	// Entry returns the applied entry at raft index i, FirstIndex <= i <=
	// applied, exactly as it was proposed.
	Entry(i uint64) (*pb.Entry, error)
	// KeepEntry hands the cold log an applied entry that the state machine
	// never saw (a conf change), so that it can serve it later.
	KeepEntry(e *pb.Entry)
	// Boundary is the entry at FirstIndex-1, which the cold log no longer
	// holds: its index and term (raft matches the appends from FirstIndex
	// against it). ok is false when the cold log does not know it.
	Boundary() (index, term uint64, ok bool)
	// BoundarySnapshot is the state machine's snapshot data as of the
	// boundary and the group's configuration there: a follower restores it
	// and then applies the entries from FirstIndex on, conf changes
	// included. ok is false when the cold log cannot describe that point.
	BoundarySnapshot() (data []byte, cs *pb.ConfState, ok bool)
}

// tieredStorage is the raft.Storage of a group with a ColdLog: the
// MemoryStorage (persisted, not yet compacted entries, the hard state, the
// latest snapshot) in front, the cold log behind it. conf is the group's
// configuration as of its last applied entry, which is raft's own (see
// Snapshot).
type tieredStorage struct {
	*raft.MemoryStorage
	cold ColdLog
	conf func() *pb.ConfState
	log  zerolog.Logger
	w    *withholding
	now  func() time.Time // time.Now; tests set it
}

// withholding is what a group's tiered storage keeps of the snapshots it
// withheld (Snapshot). It lives as long as the group's replica, across
// actor restarts.
type withholding struct {
	total  uint64    // snapshot requests withheld
	reason string    // why the last one was; "" once a snapshot was sent
	since  time.Time // the first request withheld since one was sent
	last   time.Time // the last request withheld
	warned time.Time // the last warning logged
}

// A snapshot withheld is warned of at most once every withheldWarnEvery,
// and the group's status shows it while requests are withheld at least
// every withheldShownFor. raft asks again at each heartbeat response from
// the follower waiting, every HeartbeatTicks ticks (100 ms by default);
// when the follower stops answering, nobody waits.
const (
	withheldWarnEvery = time.Minute
	withheldShownFor  = 10 * time.Second
)

// The reasons a snapshot is withheld, as the group's status shows them,
// and what ends each when it lasts (docs/decisions.md, "A replica behind
// retention").
const (
	withheldUnknown       = "boundary unknown"
	withheldUndescribable = "no snapshot at the boundary"
	wayOutUnknown         = "a log-start move past the partition's first record batch (DeleteRecords to an offset beyond it, or retention) lets it learn its boundary again"
	wayOutUndescribable   = "a log-start move past the last conf change before the checkpoint the partition restarted from (DeleteRecords, or retention) lets it describe its boundary again"
)

// FirstIndex implements raft.Storage: the cold log's first index when it
// reaches further back than memory.
func (s *tieredStorage) FirstIndex() (uint64, error) {
	first, err := s.MemoryStorage.FirstIndex()
	if err != nil {
		return 0, err
	}
	if c := s.cold.FirstIndex(); c > 0 && c < first {
		return c, nil
	}
	return first, nil
}

// Term implements raft.Storage: from the cold log below the memory tail,
// down to the cold log's boundary.
func (s *tieredStorage) Term(i uint64) (uint64, error) {
	memFirst, _ := s.MemoryStorage.FirstIndex()
	if i+1 >= memFirst {
		return s.MemoryStorage.Term(i)
	}
	if s.inCold(i) {
		e, err := s.cold.Entry(i)
		if err != nil {
			return 0, raft.ErrCompacted
		}
		return e.GetTerm(), nil
	}
	if b, term, ok := s.cold.Boundary(); ok && b == i {
		return term, nil
	}
	return s.MemoryStorage.Term(i)
}

// Snapshot implements raft.Storage. raft asks for it only to send a
// follower that is behind FirstIndex, which is the cold log's when it
// reaches below memory. That follower is sent the cold log's boundary, so
// that it then takes every entry the cold log holds (a partition's
// retained batches) as ordinary appends. The latest snapshot is sent only
// when the cold log starts above it (memory holds what follows it, and
// nothing is retained below it): where the cold log holds entries at or
// below it, a follower that installed it would skip them, and the state
// machine's data with them (a partition's records between its log start
// and the snapshot), so while the cold log cannot describe its boundary
// the snapshot is raft.ErrSnapshotTemporarilyUnavailable: raft then sends
// the follower nothing and tries again at its next heartbeat response, and
// the follower catches up once the boundary is known again. Either
// snapshot goes with its ConfState admitting every current member
// (admitMembers), or a learner added after it would refuse it.
func (s *tieredStorage) Snapshot() (*pb.Snapshot, error) {
	snap, err := s.MemoryStorage.Snapshot()
	if err != nil {
		return nil, err
	}
	md := snap.GetMetadata()
	index, term, ok := s.cold.Boundary()
	if ok && index > 0 && index < md.GetIndex() {
		if data, cs, ok := s.cold.BoundarySnapshot(); ok {
			s.sending()
			return &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{
				Index: new(index), Term: new(term), ConfState: admitMembers(cs, s.conf()),
			}}, nil
		}
	}
	if c := s.cold.FirstIndex(); c > 0 && c <= md.GetIndex() {
		reason, wayOut := withheldUnknown, wayOutUnknown
		if ok {
			reason, wayOut = withheldUndescribable, wayOutUndescribable
		}
		s.withhold(reason, wayOut, c, md.GetIndex())
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	s.sending()
	return admitting(snap, s.conf()), nil
}

// withhold records a snapshot request withheld for reason, and warns of it
// at most once every withheldWarnEvery (the first request at once). A cold log
// can stay unable to describe its boundary for good (a partition whose
// checkpoint an older version wrote: docs/decisions.md, "A replica behind
// retention"), and the follower (a reassignment's new replica) then waits
// for ever: the warning says what ends it.
func (s *tieredStorage) withhold(reason, wayOut string, coldFirst, snapIndex uint64) {
	now := s.clock()
	w := s.w
	w.total++
	if w.reason == "" || now.Sub(w.last) >= withheldShownFor {
		w.since = now
	}
	w.reason, w.last = reason, now
	if !w.warned.IsZero() && now.Sub(w.warned) < withheldWarnEvery {
		return
	}
	w.warned = now
	s.log.Warn().Str("reason", reason).Uint64("cold_first_index", coldFirst).Uint64("snapshot_index", snapIndex).
		Dur("waiting_ms", now.Sub(w.since)).Uint64("withheld", w.total).
		Str("way_out", wayOut).
		Msg("a follower behind the log start waits for a snapshot: the cold log cannot describe its boundary, and the latest snapshot would skip the entries after it")
}

// sending notes that Snapshot hands raft a snapshot again.
func (s *tieredStorage) sending() {
	if s.w.reason != "" {
		s.w.reason = ""
		s.log.Info().Uint64("withheld", s.w.total).Msg("snapshots for followers behind the log start are sent again")
	}
}

// report puts the snapshots withheld into a group's status: why while
// requests are being withheld, on a leader (raft asks only there).
func (s *tieredStorage) report(gs *GroupStatus, leader bool) {
	gs.SnapshotsWithheld = s.w.total
	if leader && s.w.reason != "" && s.clock().Sub(s.w.last) < withheldShownFor {
		gs.SnapshotWithheld = s.w.reason
	}
}

func (s *tieredStorage) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// admittingStorage is the raft.Storage of a group without a cold log (the
// controller, an offsets-topic partition): the snapshots it gives raft to
// send admit every current member (admitMembers).
type admittingStorage struct {
	*raft.MemoryStorage
	conf func() *pb.ConfState
}

// Snapshot implements raft.Storage.
func (s *admittingStorage) Snapshot() (*pb.Snapshot, error) {
	snap, err := s.MemoryStorage.Snapshot()
	if err != nil {
		return nil, err
	}
	return admitting(snap, s.conf()), nil
}

// admitting returns a copy of snap (MemoryStorage's snapshot is its own)
// whose ConfState admits every member of now.
func admitting(snap *pb.Snapshot, now *pb.ConfState) *pb.Snapshot {
	if raft.IsEmptySnap(snap) {
		return snap
	}
	md := snap.GetMetadata()
	return &pb.Snapshot{Data: snap.GetData(), Metadata: &pb.SnapshotMetadata{
		Index: new(md.GetIndex()), Term: new(md.GetTerm()), ConfState: admitMembers(md.GetConfState(), now),
	}}
}

// admitMembers returns the configuration at, the one at a snapshot's index,
// with every member of now that at does not name added as a learner.
//
// A follower installs a snapshot only if its ConfState names it (raft's
// restore), and then applies the conf changes that follow the snapshot in
// the log. A learner added after the snapshot's index is named only by
// now, so it needs the addition. It is exact: each conf change sets one
// node's role whatever its role was, so the conf changes after the
// snapshot (every node of now that at does not name was set by one of
// them) end with the same configuration from at and from the result; and
// a learner has no vote, so every configuration on the way has the voters
// it had in the log, and quorums are what they were.
func admitMembers(at, now *pb.ConfState) *pb.ConfState {
	named := map[uint64]bool{}
	for _, set := range [][]uint64{at.GetVoters(), at.GetLearners(), at.GetVotersOutgoing(), at.GetLearnersNext()} {
		for _, id := range set {
			named[id] = true
		}
	}
	out := &pb.ConfState{}
	if at != nil {
		out = proto.Clone(at).(*pb.ConfState)
	}
	pb.EnsureConfState(out)
	for _, set := range [][]uint64{now.GetVoters(), now.GetLearners(), now.GetVotersOutgoing(), now.GetLearnersNext()} {
		for _, id := range set {
			if !named[id] {
				named[id] = true
				out.Learners = append(out.Learners, id)
			}
		}
	}
	return out
}

// Entries implements raft.Storage: [lo, hi) from the cold log below the
// memory tail and from memory above it, at most maxSize bytes (but at least
// one entry, as raft requires).
func (s *tieredStorage) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	memFirst, _ := s.MemoryStorage.FirstIndex()
	if lo >= memFirst || !s.inCold(lo) {
		return s.MemoryStorage.Entries(lo, hi, maxSize)
	}
	var out []*pb.Entry
	var size uint64
	i := lo
	for ; i < hi && i < memFirst; i++ {
		e, err := s.cold.Entry(i)
		if err != nil {
			return nil, raft.ErrCompacted
		}
		size += uint64(proto.Size(e))
		if len(out) > 0 && size > maxSize {
			return out, nil
		}
		out = append(out, e)
	}
	if i < hi && size < maxSize {
		more, err := s.MemoryStorage.Entries(i, hi, maxSize-size)
		if err != nil && !errors.Is(err, raft.ErrCompacted) {
			return nil, err
		}
		// MemoryStorage returns at least one entry, however large: after
		// entries from the cold log that one would break maxSize, and
		// raft sends all of them in one append, which the transport
		// drops if it outgrows a frame.
		if len(more) == 1 && size+uint64(proto.Size(more[0])) > maxSize {
			more = nil
		}
		out = append(out, more...)
	}
	return out, nil
}

// inCold reports whether the cold log serves entry i. An entry it should
// serve and cannot is reported as plain raft.ErrCompacted (raft compares
// errors with ==, and panics on any other): raft sends the snapshot instead.
func (s *tieredStorage) inCold(i uint64) bool {
	c := s.cold.FirstIndex()
	return c > 0 && i >= c
}
