package partition

import (
	"sync"

	"github.com/flotilla/flotilla/netactor"
)

// Leaders is what this broker knows of every partition's leadership, from
// its own replicas and from what its peers say they lead (dissemination,
// not the controller log): Metadata answers from it for partitions this
// broker does not host or does not lead. Per group the highest term wins.
// Safe for concurrent use.
type Leaders struct {
	m sync.Map // group → netactor.LeaderInfo
}

// NewLeaders returns an empty board.
func NewLeaders() *Leaders { return &Leaders{} }

// Get returns what is known of group's leadership.
func (l *Leaders) Get(group uint64) (netactor.LeaderInfo, bool) {
	v, ok := l.m.Load(group)
	if !ok {
		return netactor.LeaderInfo{}, false
	}
	return v.(netactor.LeaderInfo), true
}

// Note records infos, each unless a higher term is already known (an equal
// term replaces: the ISR changes within a term).
func (l *Leaders) Note(infos []netactor.LeaderInfo) {
	for _, li := range infos {
		if cur, ok := l.Get(li.Group); ok && cur.Term > li.Term {
			continue
		}
		l.m.Store(li.Group, li)
	}
}

// forget drops a deleted partition's group.
func (l *Leaders) forget(group uint64) { l.m.Delete(group) }

// leadersEveryTicks paces the broadcast of this broker's leaderships
// (10 ticks: 500 ms at 50 ms), the longest a non-hosting broker's Metadata
// lags a leader change.
const leadersEveryTicks = 10
