package partition

import (
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/storage"
	"github.com/flotilla/flotilla/netactor"
	"github.com/flotilla/flotilla/raftactor"
)

// instantStorage answers every Persist at once.
type instantStorage struct{}

func (instantStorage) Receive(ctx actor.Context) {
	if p, ok := ctx.Message().(*storage.Persist); ok {
		ctx.Send(p.ReplyTo, &storage.Persisted{Group: p.Group, Incarnation: p.Incarnation, Seq: p.Seq})
	}
}

// nopTransport drops every message: the group has no other replica.
type nopTransport struct{}

func (nopTransport) Send(actor.SenderContext, uint64, []*pb.Message) {}

// TestLeaderAnnouncesWhenItServes: a replica that begins to serve as its
// partition's leader (it has applied an entry of its term) tells every
// broker at once (Announce) with its term and ISR, and not before: a
// broker told of it sends clients there, and CreateTopics answers once
// every new partition's leader has said so.
func TestLeaderAnnouncesWhenItServes(t *testing.T) {
	sys := actors.NewSystem(zerolog.Nop())
	t.Cleanup(sys.Shutdown)
	announced := make(chan []netactor.LeaderInfo, 16)
	var m *Machine
	m, err := NewMachine(MachineOptions{
		Topic: "t", Dir: t.TempDir(), Replicas: []uint64{1}, Group: 9,
		Settings: Settings{RetentionMs: -1, RetentionBytes: -1, SegmentBytes: 2048, MaxMessageBytes: 1 << 20, MinInsyncReplicas: 1},
		Log:      zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Announce: func(_ actor.SenderContext, infos []netactor.LeaderInfo) {
			if v := m.View(); !v.Leader {
				t.Errorf("announced %+v while the view says it does not serve", infos)
			}
			announced <- infos
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	st, err := sys.Spawn("storage", "storage", func() actor.Actor { return instantStorage{} })
	if err != nil {
		t.Fatal(err)
	}
	rs := RaftSettings{ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 64}
	cfg := rs.Config(controller.Partition{Group: 9, Replicas: []uint64{1}}, "t/0", 1)
	cfg.StateMachine, cfg.Storage, cfg.Transport = m, st, nopTransport{}
	cfg.Board, cfg.Log = raftactor.NewStatusBoard(), zerolog.Nop()
	prod, err := raftactor.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := sys.Spawn("raft", "raft/t/0", prod)
	if err != nil {
		t.Fatal(err)
	}
	ticker := raftactor.NewTicker(sys.Root, time.Millisecond)
	t.Cleanup(ticker.Stop)
	ticker.Subscribe(pid)
	select {
	case infos := <-announced:
		v := m.View()
		if len(infos) != 1 || infos[0].Group != 9 || infos[0].Leader != 1 || infos[0].Term != uint64(v.Epoch) || !slices.Equal(infos[0].ISR, []uint64{1}) {
			t.Fatalf("announced %+v; want group 9 led by 1 in term %d, ISR [1]", infos, v.Epoch)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the leader never announced that it serves")
	}
}
