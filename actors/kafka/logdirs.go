package kafka

import (
	"cmp"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flotilla/flotilla/actors/controller"
	"github.com/flotilla/flotilla/actors/partition"
)

// describeLogDirs answers DescribeLogDirs as Kafka's
// ReplicaManager.describeLogDirs does, for this broker's one log dir, its
// data directory: every partition replica it hosts (of the topics asked
// for; null asks for all), with the bytes of its segments and its
// end-offset lag, and (v4) the size and the usable space of the
// filesystem. The offsets topic's partitions are no Kafka log here (their
// state lives in the WAL and its checkpoints) and are not listed.
func (s *Service) describeLogDirs(req *kmsg.DescribeLogDirsRequest) *kmsg.DescribeLogDirsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	dir := kmsg.NewDescribeLogDirsResponseDir()
	dir.Dir = s.LogDir
	dir.TotalBytes, dir.UsableBytes = -1, -1
	if s.Space != nil {
		total, usable, err := s.Space.Usage()
		if err != nil {
			// Kafka answers a log dir it cannot read with
			// KAFKA_STORAGE_ERROR and no partitions.
			s.Log.Warn().Err(err).Msg("describe log dirs")
			dir.ErrorCode = kerr.KafkaStorageError.Code
			resp.Dirs = append(resp.Dirs, dir)
			return resp
		}
		dir.TotalBytes, dir.UsableBytes = total, usable
	}
	var asked map[string][]int32 // nil: every topic
	if req.Topics != nil {
		asked = make(map[string][]int32, len(req.Topics))
		for _, t := range req.Topics {
			asked[t.Topic] = append(asked[t.Topic], t.Partitions...)
		}
	}
	view := s.Machine.View()
	byTopic := map[string][]kmsg.DescribeLogDirsResponseDirTopicPartition{}
	for tp := range s.Replicas.All() {
		if asked != nil && !slices.Contains(asked[tp.Topic], tp.Partition) {
			continue
		}
		r := partition.Current(s.Replicas, view, tp)
		if r == nil || tp.Topic == controller.OffsetsTopic {
			continue // a deleted topic's replica, not yet stopped
		}
		v := r.Machine.View()
		p := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
		p.Partition = tp.Partition
		p.Size = v.Log.Size()
		p.OffsetLag = offsetLag(v)
		byTopic[tp.Topic] = append(byTopic[tp.Topic], p)
	}
	for name, parts := range byTopic {
		t := kmsg.NewDescribeLogDirsResponseDirTopic()
		t.Topic = name
		t.Partitions = parts
		slices.SortFunc(t.Partitions, func(a, b kmsg.DescribeLogDirsResponseDirTopicPartition) int {
			return cmp.Compare(a.Partition, b.Partition)
		})
		dir.Topics = append(dir.Topics, t)
	}
	slices.SortFunc(dir.Topics, func(a, b kmsg.DescribeLogDirsResponseDirTopic) int { return cmp.Compare(a.Topic, b.Topic) })
	resp.Dirs = append(resp.Dirs, dir)
	return resp
}

// offsetLag is a replica's OffsetLag, Kafka's
// ReplicaManager.getLogEndOffsetLag for a replica that is not a future
// one: how far its log end is behind its high watermark, at least 0. The
// leader's is 0.
func offsetLag(v *partition.View) int64 {
	if v.Leader {
		return 0
	}
	return max(v.HighWatermark-v.Log.WrittenEnd(), 0)
}
