package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/flotilla/flotilla/actors/controller"
)

// DataLostError is why a broker whose data dir holds no data refuses to
// start: a peer knows its node id as a broker of the peer's cluster, which
// counts on the data (the log, the votes, the writes acknowledged) that
// this broker no longer has. Kafka refuses a log dir that was not
// formatted for the same reason.
type DataLostError struct {
	NodeID    uint64
	DataDir   string
	Peer      uint64 // the broker that knows the id
	ClusterID string
	Removed   bool // the id was removed from the cluster, not registered in it
}

func (e *DataLostError) Error() string {
	if e.Removed {
		return fmt.Sprintf("data_dir %s holds no data, and broker %d says node %d was removed from cluster %s: "+
			"node ids are never reused; to bring this machine back, give it a new node_id and bootstrap: false",
			e.DataDir, e.Peer, e.NodeID, e.ClusterID)
	}
	return fmt.Sprintf("data_dir %s holds no data, but broker %d knows node %d as a registered broker of cluster %s: "+
		"a broker that lost its data must not rejoin as a voter, since with the writes it acknowledged and its votes forgotten "+
		"it could help elect a leader that lacks acknowledged writes. Restore the data_dir (or mount it again) and restart; "+
		"or remove node %d from the cluster (drop it from the other brokers' peers and send them SIGHUP) and add this machine "+
		"as a new broker, with a new node_id and bootstrap: false",
		e.DataDir, e.Peer, e.NodeID, e.ClusterID, e.NodeID)
}

// awaitPeers asks peers, the config's peers besides this broker, whether
// they know a cluster in which this broker's node id is registered
// (controller.NewProbe), and returns once a majority of the configured
// voters know of none. It fails with a *DataLostError as soon as one does,
// with a *DuplicateIDError as soon as a peer refuses this process as a
// second one of its node id, and with ctx's error if ctx ends first. The raft transport must be
// running; no raft group may be.
func (b *Broker) awaitPeers(ctx context.Context, raftAddr string, peers []uint64) error {
	done := make(chan *controller.Refusal, 1)
	pid, err := b.sys.Spawn("probe", "probe", controller.NewProbe(controller.ProbeOptions{
		NodeID:     b.cfg.NodeID,
		RaftAddr:   raftAddr,
		Peers:      peers,
		Voters:     len(b.cfg.Peers),
		Network:    b.peers,
		Router:     b.router,
		EveryTicks: uint64(max(1, time.Second/b.cfg.TickInterval())),
		Done:       done,
		Log:        b.log.With().Str("actor", "probe").Logger(),
	}))
	if err != nil {
		return err
	}
	b.ticker.Subscribe(pid)
	defer func() {
		b.ticker.Unsubscribe(pid)
		// Stopped before the controller actor starts: the probe leaves the
		// control sink to it.
		_ = b.sys.Root.StopFuture(pid).Wait()
	}()
	select {
	case r := <-done:
		if r == nil {
			return nil
		}
		return &DataLostError{NodeID: b.cfg.NodeID, DataDir: b.cfg.DataDir, Peer: r.Peer, ClusterID: r.ClusterID, Removed: r.Removed}
	case err := <-b.duplicate:
		// Their answers go to the process that holds the id, not here.
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for peers to say whether node %d is a registered broker: %w", b.cfg.NodeID, ctx.Err())
	}
}
