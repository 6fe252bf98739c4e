package partition

import "testing"

// TestEndOffsetForEpoch answers OffsetForLeaderEpoch as Kafka's leader
// epoch cache does (LeaderEpochFileCache.endOffsetFor), on a log whose
// epochs are 2 from offset 0, 4 from 10 and 7 from 25.
func TestEndOffsetForEpoch(t *testing.T) {
	epochs := []EpochStart{{Epoch: 2, StartOffset: 0}, {Epoch: 4, StartOffset: 10}, {Epoch: 7, StartOffset: 25}}
	leader := &View{Leader: true, Epoch: 9, HighWatermark: 40, Epochs: epochs}
	follower := &View{Epoch: 7, HighWatermark: 40, Epochs: epochs}
	trimmed := &View{Leader: true, Epoch: 9, HighWatermark: 40, LogStart: 15, Epochs: epochs}
	tests := []struct {
		name      string
		v         *View
		e         int32
		wantEpoch int32
		wantEnd   int64
		wantOK    bool
	}{
		{"current epoch ends at the high watermark", leader, 9, 9, 40, true},
		{"epoch above the current one is unknown", leader, 10, -1, -1, false},
		{"current epoch with no record yet, below the latest logged", leader, 8, 7, 40, true},
		{"an epoch of the log ends where the next starts", leader, 4, 4, 25, true},
		{"an epoch between two ends at the next one's start", leader, 5, 4, 25, true},
		{"the first epoch", leader, 2, 2, 10, true},
		{"older than the first epoch: itself, at the first one's start", leader, 1, 1, 0, true},
		{"epoch 0", leader, 0, 0, 0, true},
		{"follower: latest logged epoch ends at the high watermark", follower, 7, 7, 40, true},
		{"leader with an empty log", &View{Leader: true, Epoch: 3, HighWatermark: 0}, 1, 1, 0, true},
		{"follower with no epochs", &View{Epoch: 3}, 1, -1, -1, false},
		{"no epoch asked", leader, -1, -1, -1, false},
		{"no epoch asked, empty log", &View{Leader: true, Epoch: 3}, -1, -1, -1, false},
		// Retention moved the log start to 15: epoch 2 is gone and 4
		// starts there, as in Kafka's trimmed cache.
		{"log start past the first epoch: older", trimmed, 2, 2, 15, true},
		{"log start past the first epoch: between", trimmed, 3, 3, 15, true},
		{"log start past the first epoch: the trimmed one", trimmed, 4, 4, 25, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			epoch, end, ok := tt.v.EndOffsetForEpoch(tt.e)
			if epoch != tt.wantEpoch || end != tt.wantEnd || ok != tt.wantOK {
				t.Fatalf("EndOffsetForEpoch(%d) = %d, %d, %v; want %d, %d, %v", tt.e, epoch, end, ok, tt.wantEpoch, tt.wantEnd, tt.wantOK)
			}
		})
	}
}

// TestEpochAt: the epoch of the batch holding an offset, from the same
// epochs as above.
func TestEpochAt(t *testing.T) {
	v := &View{Epochs: []EpochStart{{Epoch: 2, StartOffset: 0}, {Epoch: 4, StartOffset: 10}, {Epoch: 7, StartOffset: 25}}}
	for _, tt := range []struct {
		offset int64
		want   int32
	}{{0, 2}, {9, 2}, {10, 4}, {24, 4}, {25, 7}, {1000, 7}, {-1, -1}} {
		if got := v.EpochAt(tt.offset); got != tt.want {
			t.Errorf("EpochAt(%d) = %d, want %d", tt.offset, got, tt.want)
		}
	}
	if got := (&View{}).EpochAt(0); got != -1 {
		t.Errorf("EpochAt on a log with no epochs = %d, want -1", got)
	}
}
