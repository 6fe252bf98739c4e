package configs_test

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/netactor"
)

// TestMaxSizePerMsgFitsAFrame: every raft.max_size_per_msg that Validate
// accepts for a raft.max_frame_bytes lets raft build only append messages
// that the PeerSender sends, whatever the entries' size. raft fills a
// MsgApp with entries while the sum of their proto sizes stays within
// MaxSizePerMsg (limitSize in raft's util.go), and the message adds a tag
// and a length per entry and its own fields: with small entries such a
// MsgApp is up to half as large again as MaxSizePerMsg. The PeerSender
// drops a message whose frame is above max_frame_bytes every time raft
// sends it, and the follower never catches up. The first value above the
// limit is refused, naming the key and the limit.
func TestMaxSizePerMsgFitsAFrame(t *testing.T) {
	for _, frame := range []int{200, 4096, 1 << 20} {
		for _, data := range []int{0, 1, 100, 1000} {
			t.Run(fmt.Sprintf("frame %d, entries of %d bytes", frame, data), func(t *testing.T) {
				valid := func(perMsg uint64) error {
					cfg := configs.Default()
					cfg.Raft.MaxFrameBytes, cfg.Raft.PeerQueueBytes, cfg.Raft.MaxSnapshotBytes = frame, frame, frame
					cfg.Raft.MaxSizePerMsg = perMsg
					return cfg.Validate()
				}
				// The largest max_size_per_msg Validate accepts.
				most := uint64(sort.Search(frame+1, func(n int) bool { return valid(uint64(n)) != nil }) - 1)
				if err := valid(most + 1); err == nil || !strings.Contains(err.Error(), "raft.max_size_per_msg: must be at most "+fmt.Sprint(most)) {
					t.Errorf("max_size_per_msg %d: %v; want an error naming the key and the limit %d", most+1, err, most)
				}
				if frame >= 4096 && most < uint64(frame)/2 {
					t.Errorf("max_size_per_msg at most %d with max_frame_bytes %d: stricter than a frame needs", most, frame)
				}

				// What raft puts in one MsgApp: as many entries as
				// limitSize takes, with the largest fields a message
				// has and the smallest an entry has (term and index
				// below 128; a real log's indexes grow, which only
				// makes its entries larger and their framing less).
				big := uint64(math.MaxUint64)
				m := &pb.Message{Type: pb.MessageType_MsgApp.Enum(), To: proto.Uint64(big), From: proto.Uint64(big),
					Term: proto.Uint64(big), LogTerm: proto.Uint64(big), Index: proto.Uint64(big), Commit: proto.Uint64(big)}
				one := &pb.Entry{Term: proto.Uint64(1), Index: proto.Uint64(1), Data: make([]byte, data)}
				if uint64(proto.Size(one)) > most {
					// raft sends such an entry alone: the brokers bound
					// it when it is proposed (netactor.MaxEntryBytes).
					return
				}
				var size uint64
				for {
					e := &pb.Entry{Term: proto.Uint64(1), Index: proto.Uint64(1)}
					if data > 0 {
						e.Data = make([]byte, data)
					}
					if len(m.Entries) > 0 && size+uint64(proto.Size(e)) > most {
						break
					}
					size += uint64(proto.Size(e))
					m.Entries = append(m.Entries, e)
					if len(m.Entries) > frame {
						t.Fatal("runaway loop")
					}
				}
				if n := netactor.MinFrameBytes + proto.Size(m); n > frame {
					t.Fatalf("max_size_per_msg %d lets raft build a MsgApp of %d entries whose frame is %d bytes, above max_frame_bytes %d: the PeerSender drops it every time",
						most, len(m.Entries), n, frame)
				}
			})
		}
	}
}
