package netactor

import (
	pb "go.etcd.io/raft/v3/raftpb"
)

// Outbound hands a group's messages for one peer to that peer's PeerSender.
type Outbound struct {
	Group uint64
	Msgs  []*pb.Message
}
