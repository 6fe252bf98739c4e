package debug

import (
	"slices"
	"strings"

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

// groupsView lists the groups this broker coordinates, by name.
func groupsView(src Sources) []GroupView {
	out := []GroupView{}
	if src.Coordinators == nil {
		return out
	}
	for _, co := range src.Coordinators.All() {
		for _, gi := range co.Machine.Groups() {
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
	slices.SortFunc(out, func(a, b GroupView) int { return strings.Compare(a.Group, b.Group) })
	return out
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
