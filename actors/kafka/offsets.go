package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Special ListOffsets timestamps.
const (
	latestTimestamp   = -1 // the high watermark (read_committed: the last stable offset, the same here)
	earliestTimestamp = -2 // the log start
	maxTimestamp      = -3 // the record with the largest timestamp (KIP-734)
)

func (s *Service) listOffsets(req *kmsg.ListOffsetsRequest) *kmsg.ListOffsetsResponse {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	dup := duplicatePartitions(req)
	for _, t := range req.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition = p.Partition
			rp.Timestamp, rp.Offset, rp.LeaderEpoch = -1, -1, -1
			if dup[topicPartition{t.Topic, p.Partition}] {
				rp.ErrorCode = kerr.InvalidRequest.Code
				rt.Partitions = append(rt.Partitions, rp)
				continue
			}
			v, errCode := s.leaderView(t.Topic, [16]byte{}, p.Partition, p.CurrentLeaderEpoch)
			if errCode != 0 {
				rp.ErrorCode = errCode
				rt.Partitions = append(rt.Partitions, rp)
				continue
			}
			// The leader epoch is that of the batch found, as Kafka
			// answers, so that a client can check it for truncation;
			// the latest offset's is the current epoch.
			switch p.Timestamp {
			case latestTimestamp:
				rp.Offset, rp.LeaderEpoch = v.HighWatermark, v.Epoch
			case earliestTimestamp:
				rp.Offset, rp.LeaderEpoch = v.LogStart, v.EpochAt(v.LogStart)
			case maxTimestamp:
				to, ok, err := v.Log.MaxTimestamp()
				switch {
				case err != nil:
					rp.ErrorCode = kerr.KafkaStorageError.Code
				case ok && to.Offset < v.HighWatermark:
					rp.Timestamp, rp.Offset, rp.LeaderEpoch = to.Timestamp, to.Offset, v.EpochAt(to.Offset)
				}
			default:
				if p.Timestamp < 0 {
					rp.ErrorCode = kerr.UnsupportedVersion.Code // -4/-5 are tiered-storage timestamps
					break
				}
				to, ok, err := v.Log.OffsetForTimestamp(p.Timestamp)
				switch {
				case err != nil:
					rp.ErrorCode = kerr.KafkaStorageError.Code
				case ok && to.Offset < v.HighWatermark:
					rp.Timestamp, rp.Offset, rp.LeaderEpoch = to.Timestamp, to.Offset, v.EpochAt(to.Offset)
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// topicPartition names a partition in a request.
type topicPartition struct {
	topic     string
	partition int32
}

// duplicatePartitions returns the partitions a ListOffsets request names
// more than once, each of which Kafka answers INVALID_REQUEST wherever it
// appears (KafkaApis.handleListOffsetRequestV1AndAbove): there is no
// telling which of the asks the client wants.
func duplicatePartitions(req *kmsg.ListOffsetsRequest) map[topicPartition]bool {
	seen := map[topicPartition]bool{}
	var dup map[topicPartition]bool
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			k := topicPartition{t.Topic, p.Partition}
			if !seen[k] {
				seen[k] = true
				continue
			}
			if dup == nil {
				dup = map[topicPartition]bool{}
			}
			dup[k] = true
		}
	}
	return dup
}

// offsetForLeaderEpoch lets a client check, after a leader change, whether
// the log it read was truncated: for each epoch it asks about, the largest
// epoch at most that one and where it ends.
func (s *Service) offsetForLeaderEpoch(req *kmsg.OffsetForLeaderEpochRequest) *kmsg.OffsetForLeaderEpochResponse {
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetForLeaderEpochResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			rp.Partition = p.Partition
			rp.LeaderEpoch, rp.EndOffset = -1, -1
			v, errCode := s.leaderView(t.Topic, [16]byte{}, p.Partition, p.CurrentLeaderEpoch)
			if errCode != 0 {
				rp.ErrorCode = errCode
			} else if epoch, end, ok := v.EndOffsetForEpoch(p.LeaderEpoch); ok {
				rp.LeaderEpoch, rp.EndOffset = epoch, end
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
