package raftactor

import (
	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Transport carries a group's outgoing messages to their peers. Send must not
// block: it hands the messages to the peers' sender actors and returns. A
// message it cannot deliver is reported back to the group as Unreachable (or
// SnapshotStatus for MsgSnap).
type Transport interface {
	Send(ctx actor.SenderContext, group uint64, msgs []*pb.Message)
}
