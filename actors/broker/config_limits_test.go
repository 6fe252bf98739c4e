package broker

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/flotilla/flotilla/actors"
	"github.com/flotilla/flotilla/configs"
	"github.com/flotilla/flotilla/netactor"
)

// TestValidateCoversTransportOptions: a config that configs.Validate
// accepts starts the raft transport's peer senders, and one the senders
// refuse is refused by Validate first, naming its key, so that a broker
// never fails after binding its ports and creating its WAL for a limit it
// could have refused up front (exit code 2, and a refused reload).
func TestValidateCoversTransportOptions(t *testing.T) {
	tests := []struct {
		name              string
		frame, queue, msg int
	}{
		{"defaults", 64 << 20, 64 << 20, 1 << 20},
		{"queue below frame", 64 << 20, 1 << 20, 1 << 10},
		{"queue equal to frame", 1 << 20, 1 << 20, 1 << 10},
		{"smallest frame", netactor.MinFrameBytes, netactor.MinFrameBytes, 0},
		{"frame below the framing of a message", netactor.MinFrameBytes - 1, 1 << 20, 0},
		{"queue one byte short", 4096, 4095, 0},
	}
	log := zerolog.Nop()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := configs.Default()
			cfg.Raft.MaxFrameBytes, cfg.Raft.PeerQueueBytes, cfg.Raft.MaxSizePerMsg = tt.frame, tt.queue, uint64(tt.msg)
			verr := cfg.Validate()

			sys := actors.NewSystem(log)
			defer sys.Shutdown()
			peers, serr := netactor.StartPeers(sys, cfg.NodeID, map[uint64]string{2: "127.0.0.1:1"}, netactor.NewRouter(), senderOptions(&cfg, nil, nil, log))
			if serr == nil {
				peers.Stop()
			}
			if (verr == nil) != (serr == nil) {
				t.Fatalf("configs.Validate: %v\nnetactor.StartPeers: %v\nwant both to accept or both to refuse", verr, serr)
			}
		})
	}
}
