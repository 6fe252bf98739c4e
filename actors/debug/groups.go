package debug

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/flotilla/flotilla/actors/group"
	"github.com/flotilla/flotilla/actors/partition"
)

// GroupView is a group as /debug/groups shows it: what its coordinator
// knows, with each committed offset's lag behind the partition's high
// watermark where this broker hosts a replica of that partition.
type GroupView struct {
	group.GroupInfo
	Offsets []OffsetView `json:"offsets"`
}

// OffsetView is one committed offset and its lag. LogEnd and Lag are null
// when this broker hosts no replica of the partition (a replica's applied
// end lags its leader's high watermark by at most a few entries).
type OffsetView struct {
	group.CommittedInfo
	LogEnd *int64 `json:"log_end"`
	Lag    *int64 `json:"lag"`
}

// groupsWithin bounds how long /debug/groups waits for the coordinators'
// views: one whose actor is stopped (or stuck) is named as unanswered.
const groupsWithin = 2 * time.Second

// groupsAnswer is what /debug/groups shows: the groups this broker
// coordinates, by name, and the offsets partitions hosted here that did
// not answer within groupsWithin, whose groups are missing from Groups.
type groupsAnswer struct {
	Groups     []GroupView
	Unanswered []int32
}

// groupsView asks every offsets partition hosted here for its groups.
// Each builds its share when asked (group.ViewGroups), on its actor, so
// the view is current and costs nothing while nobody looks.
func groupsView(src Sources) groupsAnswer {
	out := groupsAnswer{Groups: []GroupView{}, Unanswered: []int32{}}
	if src.Coordinators == nil {
		return out
	}
	cos := src.Coordinators.All()
	deadline := time.Now().Add(groupsWithin)
	replies := make(map[int32]chan []group.GroupInfo, len(cos))
	for p, co := range cos {
		replies[p] = make(chan []group.GroupInfo, 1)
		src.Actors.Root.Send(co.PID, &group.ViewGroups{Reply: replies[p], Deadline: deadline})
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for _, p := range slices.Sorted(maps.Keys(replies)) {
		view, ok := answer(ctx, replies[p])
		if !ok {
			out.Unanswered = append(out.Unanswered, p)
			continue
		}
		for _, gi := range view {
			out.Groups = append(out.Groups, withLag(src, gi))
		}
	}
	if len(out.Unanswered) > 0 {
		// The answer names them; a page polled every second would
		// repeat a warning every second.
		src.Log.Debug().Ints32("offsets_partitions", out.Unanswered).Dur("within_ms", groupsWithin).
			Msg("/debug/groups: offsets partitions did not answer; their groups are not shown")
	}
	slices.SortFunc(out.Groups, func(a, b GroupView) int { return strings.Compare(a.Group, b.Group) })
	return out
}

// answer waits for a reply on c until ctx is done, and takes one that
// came in time even when ctx is done by now.
func answer(ctx context.Context, c <-chan []group.GroupInfo) ([]group.GroupInfo, bool) {
	select {
	case view := <-c:
		return view, true
	case <-ctx.Done():
	}
	select {
	case view := <-c:
		return view, true
	default:
		return nil, false
	}
}

// withLag is gi with each committed offset's lag, where this broker hosts
// the partition.
func withLag(src Sources, gi group.GroupInfo) GroupView {
	gv := GroupView{GroupInfo: gi, Offsets: make([]OffsetView, 0, len(gi.Offsets))}
	for _, o := range gi.Offsets {
		ov := OffsetView{CommittedInfo: o}
		if src.Replicas == nil {
			gv.Offsets = append(gv.Offsets, ov)
			continue
		}
		if r := src.Replicas.Get(partition.TopicPartition{Topic: o.Topic, Partition: o.Partition}); r != nil {
			end := r.Machine.View().HighWatermark
			lag := max(0, end-o.Offset)
			ov.LogEnd, ov.Lag = &end, &lag
		}
		gv.Offsets = append(gv.Offsets, ov)
	}
	gv.GroupInfo.Offsets = nil // shown with their lag above
	return gv
}

// TotalLag is a group's lag summed over the partitions whose lag is known
// (the debug page shows it).
func (g GroupView) TotalLag() int64 {
	var n int64
	for _, o := range g.Offsets {
		if o.Lag != nil {
			n += *o.Lag
		}
	}
	return n
}
