package debug

import (
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
// views: one whose actor is stopped (or stuck) is left out.
const groupsWithin = 2 * time.Second

// groupsView lists the groups this broker coordinates, by name. Each
// offsets partition builds its share when asked (group.ViewGroups), on its
// actor, so the view is current and costs nothing while nobody looks.
func groupsView(src Sources) []GroupView {
	out := []GroupView{}
	if src.Coordinators == nil {
		return out
	}
	cos := src.Coordinators.All()
	replies := make(chan []group.GroupInfo, len(cos))
	for _, co := range cos {
		src.Actors.Root.Send(co.PID, &group.ViewGroups{Reply: replies})
	}
	timeout := time.NewTimer(groupsWithin)
	defer timeout.Stop()
	for answered := range len(cos) {
		var view []group.GroupInfo
		select {
		case view = <-replies:
		case <-timeout.C:
			src.Log.Warn().Int("offsets_partitions", len(cos)-answered).Dur("within", groupsWithin).
				Msg("/debug/groups left out offsets partitions that did not answer")
			return sortedViews(out)
		}
		for _, gi := range view {
			gv := GroupView{GroupInfo: gi, Offsets: make([]OffsetView, 0, len(gi.Offsets))}
			for _, o := range gi.Offsets {
				ov := OffsetView{CommittedInfo: o}
				if r := src.Replicas.Get(partition.TopicPartition{Topic: o.Topic, Partition: o.Partition}); r != nil {
					end := r.Machine.View().HighWatermark
					lag := max(0, end-o.Offset)
					ov.LogEnd, ov.Lag = &end, &lag
				}
				gv.Offsets = append(gv.Offsets, ov)
			}
			gv.GroupInfo.Offsets = nil // shown with their lag above
			out = append(out, gv)
		}
	}
	return sortedViews(out)
}

func sortedViews(views []GroupView) []GroupView {
	slices.SortFunc(views, func(a, b GroupView) int { return strings.Compare(a.Group, b.Group) })
	return views
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
